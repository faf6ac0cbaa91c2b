"""Static files of a site's ``htdocs/`` for the development front end.

Only regular files inside the document root are served: no dot files or dot directories
(``.htaccess``, ``.git``, ``..``), and no symlink that resolves outside the root or onto a
dot file. Content types come from the standard library's built-in table only, so the same
file gets the same type on every machine (``/etc/mime.types`` differs between hosts).
"""

from __future__ import annotations

import mimetypes
import os
import stat
from dataclasses import dataclass
from urllib.parse import quote, unquote

INDEX = "index.html"
# MimeTypes() built without filenames uses the built-in defaults, never the host's files.
_TYPES = mimetypes.MimeTypes()
_TEXT_CHARSET = ("text/html", "text/plain", "text/css", "text/javascript", "application/json")


class StaticError(Exception):
    status = 500


class ForbiddenPath(StaticError):
    status = 403


class NotFound(StaticError):
    status = 404


class BadPath(StaticError):
    status = 400


@dataclass(frozen=True)
class Redirect:
    """A directory asked for without its trailing slash: relative links need the slash."""

    location: str


@dataclass(frozen=True)
class StaticFile:
    path: str
    size: int
    mtime: float
    content_type: str


def decode_path(raw: str) -> str:
    """Percent-decode a URL path; bytes that are not UTF-8 survive as surrogate escapes."""
    path = unquote(raw, encoding="utf-8", errors="surrogateescape")
    if "\0" in path:
        raise BadPath("NUL in the request path")
    return path


def normalise(path: str) -> str:
    """A decoded URL path as nginx normalises it before choosing a location: runs of
    slashes merged (`merge_slashes on`), "." and ".." segments resolved, a trailing slash
    kept. Decoding first, as nginx does, makes %2F a slash and %2E%2E a "..". A path that
    climbs above the root is a 400, as in nginx.
    """
    segments = path.split("/")[1:]
    kept: list[str] = []
    trailing = False
    for segment in segments:
        trailing = segment in ("", ".", "..")
        if segment == "..":
            if not kept:
                raise BadPath("the path climbs above the root")
            kept.pop()
        elif not trailing:
            kept.append(segment)
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if trailing else "")


def has_dot_segment(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/") if part)


def has_traversal(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def content_type(path: str) -> str:
    guessed, encoding = _TYPES.guess_type(path, strict=False)
    if guessed is None or encoding is not None:
        # A .gz file served as text/html would make browsers show garbage.
        return "application/octet-stream"
    if guessed in _TEXT_CHARSET:
        return f"{guessed}; charset=utf-8"
    return guessed


def lookup(docroot: str, url_path: str) -> StaticFile | Redirect:
    """The file to serve for a decoded URL path, or raise NotFound/ForbiddenPath.

    ``docroot`` must already be a resolved real path.
    """
    if has_dot_segment(url_path):
        raise ForbiddenPath("dot files and dot directories are never served")
    parts = [p for p in url_path.split("/") if p]
    candidate = os.path.join(docroot, *parts)
    st = _stat(candidate)
    if stat.S_ISDIR(st.st_mode):
        if not url_path.endswith("/"):
            return Redirect(quote(url_path + "/", safe="/", errors="surrogateescape"))
        candidate = os.path.join(candidate, INDEX)
        st = _stat(candidate)
    real = os.path.realpath(candidate)
    check_inside(docroot, real)
    if not stat.S_ISREG(st.st_mode):
        raise ForbiddenPath("not a regular file")
    return StaticFile(real, st.st_size, st.st_mtime, content_type(real))


def check_inside(docroot: str, real: str) -> None:
    if os.path.commonpath([docroot, real]) != docroot:
        raise ForbiddenPath("the path leads outside the document root")
    if has_dot_segment(os.path.relpath(real, docroot)):
        raise ForbiddenPath("the path resolves to a dot file")


def open_file(found: StaticFile) -> int:
    """Open without following a symlink swapped in since :func:`lookup` resolved the path."""
    try:
        fd = os.open(found.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    except OSError as exc:
        raise ForbiddenPath(str(exc)) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ForbiddenPath("not a regular file")
    return fd


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFound(str(exc)) from exc
    except OSError as exc:
        raise ForbiddenPath(str(exc)) from exc
