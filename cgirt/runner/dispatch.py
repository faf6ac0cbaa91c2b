"""URL path (or a web server's SCRIPT_FILENAME) → a script inside the site's cgi roots.

PATH_INFO is split as Apache does: walk the path from the cgi root, segment by segment;
the first segment that is a regular file is the script, the rest is PATH_INFO. Nothing
outside a cgi root is ever chosen: dot segments, dot files and directories are refused,
and the script's real path (symlinks resolved) must lie inside the root's real path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote

from ..errors import BadRequest, Forbidden, ScriptNotFound
from . import freshness


@dataclass(frozen=True)
class CgiRoot:
    url: str  # "/cgi-bin", no trailing slash
    path: str  # real path of the directory


@dataclass(slots=True)  # not frozen, as Work: a frozen dataclass's __init__ costs more, per request
class Target:
    path: str  # real path of the script file
    script_name: str  # the script's URL path
    path_info: str
    root: CgiRoot
    stat: os.stat_result | None = None  # the script's, taken while resolving this request
    found: str = ""  # the script's path as requested (through any symlinks): what `stat` is of


class Dispatcher:
    def __init__(self, site: Path, roots: tuple[tuple[str, str], ...]) -> None:
        self.site = site
        # Longest prefix first, so /cgi-bin/admin can be its own root inside /cgi-bin.
        self.roots = sorted(
            (CgiRoot(url.rstrip("/"), os.path.realpath(site / directory)) for url, directory in roots),
            key=lambda r: -len(r.url),
        )
        self._resolved: dict[tuple[str, str, str], Target] = {}

    def forget(self) -> None:
        self._resolved.clear()

    def resolve(self, params: Mapping[str, str]) -> Target:
        """The request's script. An answer is remembered while the path it was found at still
        leads to the same regular file (one stat, instead of a walk over the path)."""
        filename = params.get("SCRIPT_FILENAME", "")
        by_file = filename.startswith("/")
        key = ((filename, params.get("SCRIPT_NAME", ""), params.get("PATH_INFO", "")) if by_file
               else ("", _url_path(params), ""))
        known = self._resolved.get(key)
        if known is not None:
            try:
                st = freshness.stat(known.found)
            except OSError:
                st = None
            if st is not None and known.stat is not None and stat.S_ISREG(st.st_mode) \
                    and st.st_ino == known.stat.st_ino and st.st_dev == known.stat.st_dev:
                return Target(known.path, known.script_name, known.path_info, known.root, st,
                              known.found)
        if by_file:
            target = self._from_filename(filename, params)
            if target is None:  # not in a cgi root: the URL decides, and is not in the key
                return self.resolve_url(_url_path(params))
        else:
            target = self.resolve_url(key[1])
        if len(self._resolved) >= _REMEMBERED:
            self._resolved.clear()
        self._resolved[key] = target
        return target

    def resolve_url(self, url_path: str) -> Target:
        if "\x00" in url_path:
            raise BadRequest(log="NUL byte in the request path")
        for root in self.roots:
            if url_path == root.url or url_path.startswith(root.url + "/"):
                return self._walk(root, url_path[len(root.url) :], root.url)
        raise ScriptNotFound(log=f"no cgi root serves {url_path!r}")

    def _from_filename(self, filename: str, params: Mapping[str, str]) -> Target | None:
        """Honour a web server's SCRIPT_FILENAME only inside a cgi root; else map the URL."""
        if "\x00" in filename:
            raise BadRequest(log="NUL byte in SCRIPT_FILENAME")
        for root in self.roots:
            if filename.startswith(root.path + "/"):
                rest = filename[len(root.path) :]
                script_name = params.get("SCRIPT_NAME", "")
                target = self._walk(root, rest, None)
                extra = rest[len(target.script_name) :]
                if extra and script_name.endswith(extra):
                    script_name = script_name[: -len(extra)]
                path_info = params.get("PATH_INFO") or target.path_info
                return Target(target.path, script_name or root.url + target.script_name,
                              path_info, root, target.stat, target.found)
        return None

    def _walk(self, root: CgiRoot, rest: str, url_base: str | None) -> Target:
        """Find the script in `rest` ("/a/b.py/extra") below `root`."""
        segments = rest.split("/")
        current = root.path
        consumed = ""
        for i, segment in enumerate(segments):
            if segment == "":
                if i == len(segments) - 1 and i > 0:
                    break  # trailing slash after a directory
                consumed += "/" if i else ""
                continue
            if segment in (".", ".."):
                raise ScriptNotFound(log=f"dot segment in {rest!r}")
            if segment.startswith("."):
                raise Forbidden(log=f"dot file in {rest!r}")
            current = current + "/" + segment
            consumed = consumed.rstrip("/") + "/" + segment
            try:
                st = freshness.stat(current)
            except (FileNotFoundError, NotADirectoryError):
                raise ScriptNotFound(log=f"no such script: {current}") from None
            except OSError as exc:
                raise Forbidden(log=f"cannot stat {current}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Forbidden(log=f"not a regular file: {current}")
            real = _real_path(current)
            if not real.startswith(root.path + "/"):
                raise Forbidden(log=f"{current} leads outside the cgi root")
            if any(part.startswith(".") for part in real[len(root.path) + 1 :].split("/")):
                raise Forbidden(log=f"{current} leads to a dot file")
            path_info = "/".join(segments[i + 1 :])
            path_info = "/" + path_info if i + 1 < len(segments) else ""
            base = url_base if url_base is not None else ""
            return Target(real, base + consumed, path_info, root, st, current)
        raise Forbidden(log=f"{root.path}{rest} is a directory")


_O_PATH = getattr(os, "O_PATH", 0)
_REMEMBERED = 10_000  # answers kept; beyond it, the memory starts again empty


def _real_path(path: str) -> str:
    """os.path.realpath, as the kernel resolved it: open without reading (O_PATH) and read the
    link /proc keeps for the descriptor. One lookup instead of an lstat per path component
    in Python (2 us instead of 10 for a script two directories down); realpath where /proc
    or O_PATH is missing."""
    if _O_PATH:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return os.path.realpath(path)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = ""
        finally:
            os.close(fd)
        if real.startswith("/") and not real.endswith(" (deleted)"):
            return real
    return os.path.realpath(path)


def _url_path(params: Mapping[str, str]) -> str:
    """The request's decoded URL path, from SCRIPT_NAME + PATH_INFO or REQUEST_URI."""
    script_name = params.get("SCRIPT_NAME")
    if script_name:
        return script_name + params.get("PATH_INFO", "")
    uri = params.get("REQUEST_URI", "")
    if uri:
        return unquote(uri.split("?", 1)[0], errors="surrogateescape")
    return params.get("PATH_INFO", "")
