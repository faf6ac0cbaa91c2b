"""Files in a site's tree opened by root (gateway, runner master) without following the owner's symlinks.

The site's owner controls every directory of the site, `.cgirt/` included (the scripts run
as that user), so any name there may be a symbolic link planted to make root read, append
to, truncate or create a file elsewhere (`logs/error.log -> /etc/shadow`). Every component
below the site directory is therefore opened with O_NOFOLLOW, one `openat` at a time from
the site's own descriptor; the site directory itself is the admin's configuration and may
be reached through links.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkRefused(OSError):
    """A name in a site's tree that cgirt opens as root is a symbolic link (or not what it
    must be): refused, nothing opened. `strerror` is the message for the log or the reply."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(errno.ELOOP, f"{path} is {what}: refused, cgirt does not follow "
                                      "links in a site's own files", str(path))
        self.path, self.what = path, what

    def below(self, site: Path) -> str:
        """The message as the site's owner may read it: the path relative to the site,
        never the server's disk path."""
        for anchor in (site, Path(os.path.realpath(site))):
            try:
                shown = f"/{self.path.relative_to(anchor).as_posix()} is {self.what}"
                break
            except ValueError:
                continue
        else:
            shown = "a link leads out of the site"
        return f"{shown}: refused, links in the site's own files are not followed"


def _parts(anchor: Path, path: Path) -> list[str]:
    try:
        parts = list(path.relative_to(anchor).parts)
    except ValueError:  # e.g. a resolved path that a link took out of the site
        raise SymlinkRefused(path, "outside the site") from None
    if not parts or ".." in parts:
        raise SymlinkRefused(path, "outside the site")
    return parts


def _refusal(dir_fd: int, name: str, path: Path, want_dir: bool) -> SymlinkRefused | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return SymlinkRefused(path, "a symbolic link")
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return SymlinkRefused(path, "not a directory")
    return None


def _open_child_dir(dir_fd: int, name: str, path: Path, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass  # made meanwhile by another process: opened (and checked) below
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(dir_fd, name, path, True) or exc from None


def open_dir(anchor: Path, path: Path, create: bool = False) -> int:
    """A descriptor of the directory `path` below `anchor`, no component a link (missing
    ones made 0700 when `create`)."""
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = anchor
    try:
        for name in (_parts(anchor, path) if path != anchor else []):
            here = here / name
            try:
                child = _open_child_dir(fd, name, here, create)
            except OSError as exc:
                if isinstance(exc, SymlinkRefused):
                    raise
                raise _refusal(fd, name, here, True) or exc from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(anchor: Path, path: Path, flags: int, mode: int = 0o600,
              create_dirs: bool = False) -> int:
    """`os.open(path, flags, mode)` for a file below `anchor`, following no link on the way
    nor at the end. A read never blocks on a FIFO planted there: only regular files open."""
    parent = open_dir(anchor, path.parent, create_dirs)
    try:
        try:
            fd = os.open(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         mode, dir_fd=parent)
        except OSError as exc:
            raise _refusal(parent, path.name, path, False) or exc from None
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SymlinkRefused(path, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lstat(anchor: Path, path: Path) -> os.stat_result:
    """The status of `path` itself, reached through no link."""
    parent = open_dir(anchor, path.parent)
    try:
        return os.stat(path.name, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def write_pid(anchor: Path, path: Path) -> None:
    """This process's pid in a new file renamed into place over `path` (which may be a
    link the owner planted: the rename replaces the link, never its target)."""
    parent = open_dir(anchor, path.parent)
    try:
        temp = f".{path.name}.{os.getpid()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=parent)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        try:
            os.rename(temp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError:
            os.unlink(temp, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def remove_pid(anchor: Path, path: Path) -> None:
    """Remove `path` if it still names this process (another runner may have taken over)."""
    parent = open_dir(anchor, path.parent)
    try:
        fd = open_file(anchor, path, os.O_RDONLY)
        try:
            mine = os.read(fd, 32).strip() == str(os.getpid()).encode()
        finally:
            os.close(fd)
        if mine:
            os.unlink(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def unlink(anchor: Path, path: Path) -> None:
    """Remove the name `path` (a link itself, never its target) from a folder reached
    through no link."""
    parent = open_dir(anchor, path.parent)
    try:
        os.unlink(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def chmod(path: Path, mode: int, dir_fd: int | None = None) -> None:
    """chmod of `path` itself (relative to `dir_fd` if given), refused when it is a link
    (os.chmod cannot refuse one on Linux: without following it raises
    NotImplementedError). Through an O_PATH descriptor and its /proc entry, which names
    that inode whatever is renamed meanwhile."""
    fd = _inode(path, dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def utime(path: Path, times: tuple[float, float], dir_fd: int | None = None) -> None:
    """utime of `path` itself, as `chmod`."""
    fd = _inode(path, dir_fd)
    try:
        os.utime(f"/proc/self/fd/{fd}", times)
    finally:
        os.close(fd)


def _inode(path: Path, dir_fd: int | None) -> int:
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise SymlinkRefused(path, "a symbolic link")
    return fd
