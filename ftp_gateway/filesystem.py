"""The FTP view of one site: confined, state hidden, a read-only logs/ folder, staged writes.

pyftpdlib hands every method a "real" path made by `ftp2fs` (root + virtual path). This
class decides what that path means before touching the disk:

* `/.cgirt/...` (the runtime state) does not exist, for reading and for writing;
* `/logs` is a virtual read-only folder showing `.cgirt/logs/error.log`,
  `deploy.log` and `slow.log`, and each runner host's `error.HOST.log` when several
  serve the site (a real `logs` entry at the site root is shadowed);
* anything else is the site itself, provided its resolved path (symlinks followed)
  stays inside the site and outside the state directory;
* uploads never write the final path: `open(..., 'wb')` returns a `StagedUpload`.

The gateway is root, and the site's owner (whose scripts run as that user) can plant or
swap in a symbolic link anywhere in the site, the state directory included, at any
moment. So the logs are reached through `cgirt.sitefiles`, which follows no link
(`logs/error.log -> /etc/shadow` is refused), and each change is made in its folder as
resolved now (links inside the site are the site's own), opened through no link: a folder
swapped for a link between the check and the change refuses it.

The process working directory is never changed (pyftpdlib issue #475: `os.chdir` races
between the threads of ThreadedFTPServer).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

from pyftpdlib.filesystems import AbstractedFS

from cgirt import sitefiles
from cgirt.site import HOST_NAME, RUNNER_LOGS, SITE_LOGS, STATE_DIR, logs_dir

from . import quota
from .errors import CommandRefused, PathRefused, ReadOnlyPath
from .publish import StagedUpload, record_change

LOGS = "logs"
# The site's logs and their rotated copies (error.log.1, or error.log.2.gz from logrotate).
# Several runner hosts write their own error.HOST.log (cgirt.site.per_host).
_LOG_NAME = re.compile(r"(?:%s|(?:%s)\.%s\.log)(?:\.\d{1,4}(?:\.gz)?)?" % (
    "|".join(re.escape(n) for n in SITE_LOGS),
    "|".join(re.escape(n.rpartition(".")[0]) for n in RUNNER_LOGS), HOST_NAME.pattern))
_log = logging.getLogger("cgirt.ftp")
READ_ONLY = "logs/ is read-only: it shows the site's logs (error, access, slow, deploy)."


class Zone(enum.Enum):
    SITE = "site"
    LOGS_DIR = "logs-dir"
    LOG_FILE = "log-file"
    HIDDEN = "hidden"


def _missing(path: str) -> OSError:
    # Hidden things must look absent, not forbidden: no oracle for what exists.
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


class SiteFS(AbstractedFS):  # type: ignore[misc]
    # No symlink targets in LIST output: pyftpdlib prints "name -> target" only when the
    # filesystem has a readlink method.
    readlink = None

    def __init__(self, root: str, cmd_channel: Any) -> None:
        super().__init__(os.path.realpath(root), cmd_channel)
        self.site = Path(self.root)
        self._state = os.path.join(self.root, STATE_DIR)

    # --- classification -------------------------------------------------------------

    def zone(self, path: str) -> tuple[Zone, str]:
        """What a root-joined path means, and where it lives on disk."""
        rel = os.path.relpath(os.path.normpath(path), self.root)
        if rel == os.curdir:
            return Zone.SITE, self.root
        parts = rel.split(os.sep)
        if parts[0] in (os.pardir, STATE_DIR):
            return Zone.HIDDEN, path
        if parts[0] == LOGS:
            return self._logs_zone(parts[1:], path)
        if not self._resolves_inside(path):
            return Zone.HIDDEN, path
        return Zone.SITE, path

    def _logs_zone(self, rest: list[str], path: str) -> tuple[Zone, str]:
        if not rest:
            return Zone.LOGS_DIR, str(logs_dir(self.site))
        if len(rest) == 1 and _LOG_NAME.fullmatch(rest[0]):
            return Zone.LOG_FILE, str(logs_dir(self.site) / rest[0])
        return Zone.HIDDEN, path

    def _resolves_inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        root = self.root.rstrip(os.sep) + os.sep
        state = self._state + os.sep
        return (real + os.sep).startswith(root) and not (real + os.sep).startswith(state)

    def readable(self, path: str) -> str:
        zone, disk = self.zone(path)
        if zone is Zone.HIDDEN:
            raise _missing(self.fs2ftp(path))
        return disk

    def writable(self, path: str) -> str:
        zone, disk = self.zone(path)
        if zone is Zone.HIDDEN:
            raise _missing(self.fs2ftp(path))
        if zone is not Zone.SITE:
            raise ReadOnlyPath(READ_ONLY)
        if disk == self.root:
            raise PathRefused("The site root itself cannot be changed.")
        return disk

    # --- path conversion --------------------------------------------------------------

    def realpath(self, path: str) -> str:
        zone, _disk = self.zone(path)
        if zone in (Zone.LOGS_DIR, Zone.LOG_FILE):
            return os.path.normpath(path)  # the virtual location, inside the root
        return os.path.realpath(path)

    # --- reading ----------------------------------------------------------------------

    def _in_logs(self, path: str) -> str | None:
        """The disk path of a logs/ zone, else None."""
        zone, disk = self.zone(path)
        return disk if zone in (Zone.LOGS_DIR, Zone.LOG_FILE) else None

    @contextlib.contextmanager
    def _no_links(self, path: str) -> Iterator[None]:
        """A link planted in the logs is refused: said to the client and in the log."""
        try:
            yield
        except sitefiles.SymlinkRefused as exc:
            _log.warning("%s", exc.strerror)
            raise PathRefused(f"{self.fs2ftp(path)}: refused: a symbolic link (or one swapped "
                              "in meanwhile) is never followed here.") from None

    @contextlib.contextmanager
    def _folder(self, path: str, disk: str, resolve: bool = False) -> Iterator[tuple[int, str]]:
        """The folder of `disk` as it resolves now (a link inside the site is the site's
        own) reached through no link, and the name in it. The gateway is root: a folder
        the owner swaps for a link after `writable` checked it must not lead it elsewhere
        (a rename into /etc/profile.d, a chown of /etc/passwd)."""
        if resolve:
            disk = os.path.realpath(disk)
        parent = os.path.realpath(os.path.dirname(disk))
        with self._no_links(path):
            if not self._resolves_inside(parent):
                raise sitefiles.SymlinkRefused(Path(disk), "reached through a link out of "
                                                           "the site's own files")
            fd = sitefiles.open_dir(self.site, Path(parent))
        try:
            with self._no_links(path):
                yield fd, os.path.basename(disk)
        finally:
            os.close(fd)

    def _log_stat(self, disk: str) -> os.stat_result:
        st = sitefiles.lstat(self.site, Path(disk))
        if stat.S_ISLNK(st.st_mode):
            raise sitefiles.SymlinkRefused(Path(disk), "a symbolic link")
        return st

    def open(self, filename: str, mode: str) -> Any:
        if mode == "rb":
            disk = self.readable(filename)
            if self._in_logs(filename) is None:
                # As resolved now, then opened through no link: a file swapped for a link
                # to /etc/shadow after the check is not read (as root) for the owner.
                disk = os.path.realpath(disk)
                if not self._resolves_inside(disk):
                    raise _missing(self.fs2ftp(filename))
            with self._no_links(filename):
                return open(disk, "rb", opener=lambda path, flags: sitefiles.open_file(
                    self.site, Path(path), flags))
        if mode == "wb":
            return self._staged_upload(filename)
        # APPE and REST+STOR are refused by the handler before they get here.
        raise CommandRefused("Only whole-file uploads (STOR) are supported.")

    def listdir(self, path: str) -> list[str]:
        zone, disk = self.zone(path)
        if zone is Zone.HIDDEN:
            raise _missing(self.fs2ftp(path))
        if zone is Zone.LOGS_DIR:
            with self._no_links(path):
                fd = sitefiles.open_dir(self.site, Path(disk))
            try:
                return sorted(n for n in os.listdir(fd) if _LOG_NAME.fullmatch(n) and stat.S_ISREG(
                    os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode))
            finally:
                os.close(fd)
        if zone is Zone.LOG_FILE:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        # Through the folder as resolved now, reached through no link: by path, one the
        # owner swaps for a link after the check would have root list /root for them.
        real = os.path.realpath(disk)
        with self._no_links(path):
            if not self._resolves_inside(real):
                raise sitefiles.SymlinkRefused(Path(disk), "reached through a link out of "
                                                           "the site's own files")
            fd = sitefiles.open_dir(self.site, Path(real))
        try:
            listed = os.listdir(fd)
        finally:
            os.close(fd)
        names = [n for n in listed if self._listable(path, n)]
        if disk == self.root:
            names.append(LOGS)
        return names

    listdirinfo = listdir

    def _listable(self, parent: str, name: str) -> bool:
        """Hide the state dir, the shadowed logs entry and symlinks leading out."""
        child = os.path.join(parent, name)
        if os.path.normpath(parent) == self.root and name in (STATE_DIR, LOGS):
            return False
        return self.zone(child)[0] is Zone.SITE

    def chdir(self, path: str) -> None:
        if not os.path.isdir(self.readable(path)):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        self.cwd = self.fs2ftp(path)

    def stat(self, path: str) -> os.stat_result:
        disk = self.readable(path)
        if self._in_logs(path) is None:
            return os.stat(disk)
        with self._no_links(path):
            return self._log_stat(disk)

    def lstat(self, path: str) -> os.stat_result:
        disk = self.readable(path)
        if self._in_logs(path) is None:
            return os.lstat(disk)
        with self._no_links(path):
            return self._log_stat(disk)

    def isfile(self, path: str) -> bool:
        zone, disk = self.zone(path)
        if zone in (Zone.LOGS_DIR, Zone.LOG_FILE):
            return self._is(disk, stat.S_ISREG)
        return zone is not Zone.HIDDEN and os.path.isfile(disk)

    def isdir(self, path: str) -> bool:
        zone, disk = self.zone(path)
        if zone in (Zone.LOGS_DIR, Zone.LOG_FILE):
            return self._is(disk, stat.S_ISDIR)
        return zone is not Zone.HIDDEN and os.path.isdir(disk)

    def _is(self, disk: str, kind: Callable[[int], bool]) -> bool:
        try:
            return kind(self._log_stat(disk).st_mode)
        except (OSError, ValueError):
            return False

    def islink(self, path: str) -> bool:
        zone, disk = self.zone(path)
        return zone is Zone.SITE and os.path.islink(disk)

    def lexists(self, path: str) -> bool:
        zone, disk = self.zone(path)
        return zone is not Zone.HIDDEN and os.path.lexists(disk)

    def getsize(self, path: str) -> int:
        return self.stat(path).st_size

    def getmtime(self, path: str) -> float:
        return self.stat(path).st_mtime

    # --- writing ----------------------------------------------------------------------

    def _staged_upload(self, filename: str) -> StagedUpload:
        disk = self.writable(filename)
        if os.path.isdir(disk):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        parent = os.path.dirname(disk)
        if not os.path.isdir(parent):
            raise _missing(self.fs2ftp(os.path.dirname(filename)))
        if len(os.fsencode(os.path.basename(disk))) > os.pathconf(parent, "PC_NAME_MAX"):
            # Refuse before receiving the data, not at os.replace after it.
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        virtual = self.fs2ftp(filename)
        config = self.cmd_channel.gateway.config
        room = quota.room_for(self.site, Path(disk), config.quota_bytes,
                              config.quota_files, virtual)
        with self._no_links(filename):  # a linked .cgirt/ or staging folder
            return StagedUpload(self.site, Path(disk), virtual,
                                max_size=config.max_file_size or None, quota_room=room)

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise CommandRefused("STOU is not supported; upload with STOR.")

    def mkdir(self, path: str) -> None:
        disk = self.writable(path)
        with self._folder(path, disk) as (fd, name):
            os.mkdir(name, 0o755, dir_fd=fd)
            st = os.stat(self.site)
            if os.geteuid() == 0 and st.st_uid != 0:  # the site's owner's, as own_like_site
                os.chown(name, st.st_uid, st.st_gid, dir_fd=fd, follow_symlinks=False)
        self._changed(f"created directory {self.fs2ftp(path)}", disk)

    def rmdir(self, path: str) -> None:
        disk = self.writable(path)
        with self._folder(path, disk) as (fd, name):
            os.rmdir(name, dir_fd=fd)
        self._changed(f"removed directory {self.fs2ftp(path)}", disk)

    def remove(self, path: str) -> None:
        disk = self.writable(path)
        with self._folder(path, disk) as (fd, name):
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            os.unlink(name, dir_fd=fd)
        self._changed(f"deleted {self.fs2ftp(path)}", disk)

    def rename(self, src: str, dst: str) -> None:
        disk_src, disk_dst = self.writable(src), self.writable(dst)
        with self._folder(src, disk_src) as (src_fd, src_name), \
                self._folder(dst, disk_dst) as (dst_fd, dst_name):
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            if os.path.dirname(disk_src) != os.path.dirname(disk_dst):
                # Both directories changed; each must be durable before the bump.
                os.fsync(src_fd)
        self._changed(f"renamed {self.fs2ftp(src)} to {self.fs2ftp(dst)}", disk_dst)

    def chmod(self, path: str, mode: int) -> None:
        disk = self.writable(path)
        with self._folder(path, disk, resolve=True) as (fd, name):
            # setuid, setgid and sticky bits are never set over FTP.
            sitefiles.chmod(Path(name), mode & 0o777, dir_fd=fd)

    def utime(self, path: str, timeval: float) -> None:
        disk = self.writable(path)
        with self._folder(path, disk, resolve=True) as (fd, name):
            sitefiles.utime(Path(name), (timeval, timeval), dir_fd=fd)

    def _changed(self, what: str, disk: str) -> None:
        user = self.cmd_channel.username if self.cmd_channel is not None else "?"
        record_change(self.site, user, what, Path(os.path.dirname(disk)))
