"""Log files that several processes append to, bounded in size, reopened on demand.

Who does what, and why it is race-free:

- Writers (workers, fork-mode children) append whole lines with one `os.write` on an
  O_APPEND descriptor, so lines of different processes never interleave, whatever the
  file's name is by then.
- Only the runner's master renames: on SIGUSR1 (after logrotate has renamed the files) and
  when a file has grown past `log_max_size` (checked once a tick: a `stat` per file). It
  then creates the new empty file (owned like the site, so workers running as the site's
  owner can reopen it) and bumps a counter in memory shared with every process it forked.
- Before each write a writer compares that counter with the value it last saw (a memory
  read, no system call) and reopens the file by its path when it moved. A line is never
  lost: until the reopen it goes to the renamed file, whose inode the old descriptor still
  holds; every write that starts after the bump goes to the new file.

A writer that cannot reopen (a worker whose privileges no longer reach the logs folder)
keeps its descriptor and reports `stale`, so its owner can be recycled: a new worker opens
the files before it drops privileges. A writer that has written the size limit since its
last reopen pokes the master through a pipe, so rotation follows at once; should the master
still fall behind (or the writer be stale), the writer stops appending at twice the limit
and says how many lines it dropped when it can write again: no script can fill the disk,
whatever it prints.

Every timestamp of cgirt's own logs is `iso_stamp()`: ISO 8601, local time, milliseconds
and the UTC offset. (An access log keeps the Combined Log Format's own stamp, which every log
analyser expects.)
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterable

from .sitefiles import open_dir, open_file

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW

_stamp_cache: tuple[int, str, str] = (-1, "", "")  # one tuple: threads see it whole


def iso_stamp(when: float | None = None) -> str:
    """`2026-11-30T09:29:05.123+01:00`: one format for every log cgirt writes."""
    global _stamp_cache
    if when is None:
        when = time.time()
    second = int(when)
    cache = _stamp_cache
    if cache[0] != second:  # strftime costs microseconds: once a second is enough
        tm = time.localtime(second)
        zone = time.strftime("%z", tm)
        cache = _stamp_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", tm),
                                f"{zone[:3]}:{zone[3:]}")
    return f"{cache[1]}.{int((when - second) * 1000):03d}{cache[2]}"


class StampFormatter(logging.Formatter):
    """A logging formatter whose %(asctime)s is `iso_stamp()`."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_stamp(record.created)


class ReopenCounter:
    """A number in anonymous shared memory: created in the master before any fork, bumped
    only by the master, read by every descendant. With it, a pipe on which a writer pokes
    the master when a file has outgrown its bound, so that the master rotates at once
    rather than at its next tick (a flood fills megabytes in a tenth of a second)."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, ctypes.sizeof(ctypes.c_uint64))
        self._value = ctypes.c_uint64.from_buffer(self._mem)
        self.poke_r, self._poke_w = os.pipe()
        os.set_blocking(self.poke_r, False)
        os.set_blocking(self._poke_w, False)

    def poke(self) -> None:
        try:
            os.write(self._poke_w, b"!")
        except OSError:
            pass  # full: the master has been poked already

    @property
    def value(self) -> int:
        return int(self._value.value)

    def bump(self) -> None:
        self._value.value += 1


_shared_counter: ReopenCounter | None = None


def shared_counter() -> ReopenCounter:
    """The runner's one reopen counter; first asked for in the master, before any fork."""
    global _shared_counter
    if _shared_counter is None:
        _shared_counter = ReopenCounter()
    return _shared_counter


class LogFile:
    """One log file as a writer sees it: an O_APPEND descriptor, reopened when told."""

    def __init__(self, path: Path, counter: ReopenCounter | None = None,
                 max_bytes: int = 0, anchor: Path | None = None) -> None:
        self.path = path
        # A site's log: opened below the site without following links (a worker opens it
        # as root, before its privilege drop).
        self._anchor = anchor
        self._counter = counter
        self._max_bytes = max_bytes
        self._limit = 2 * max_bytes  # past this since the last reopen the master is behind
        self._poked = False
        self._fd = -1
        self._seen = 0
        self._written = 0
        self._dropped = 0
        self.stale = False  # could not reopen: the holder should be replaced

    def open(self, strict: bool = False) -> None:
        """Open (again) by path; the old descriptor is closed only once the new one works.
        A reopen that fails marks the file stale, or with `strict` raises, the old
        descriptor still in use either way."""
        if self._counter is not None:
            self._seen = self._counter.value
        try:
            if self._anchor is not None:
                self._anchor.mkdir(parents=True, exist_ok=True)  # the admin's: may be a link
                fd = open_file(self._anchor, self.path, _OPEN_FLAGS, 0o640, create_dirs=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, _OPEN_FLAGS, 0o640)
        except OSError:
            if self._fd < 0 or strict:
                raise
            self.stale = True
            return
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._written = 0
        self._poked = False
        self.stale = False
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self.write(f"[{iso_stamp()}] [pid {os.getpid()}] cgirt: {dropped} lines dropped: "
                       f"{self.path.name} grew faster than it could be rotated\n".encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write(self, data: bytes) -> None:
        """Append `data` (whole lines) in one system call."""
        if self._counter is not None and self._counter.value != self._seen:
            self.open()
        elif self._fd < 0:
            self.open()
        if self._limit and self._written > self._max_bytes:
            if not self._poked and self._counter is not None:
                self._counter.poke()
                self._poked = True
            if self._written > self._limit:
                self._dropped += data.count(b"\n") or 1
                return
        self._written += os.write(self._fd, data)


class Rotator:
    """The master's side: bounds the files of a logs folder by size, and reopens on demand.

    `names` are the files it looks after; each keeps `backups` rotated files
    (`error.log.1` the newest). With `max_bytes` 0 nothing is rotated by size (logrotate's
    job then), but `reopen()` still works.
    """

    def __init__(self, folder: Path, names: Iterable[str], counter: ReopenCounter,
                 max_bytes: int, backups: int, owner: Callable[[int], None] = lambda fd: None,
                 always: Iterable[str] = (), anchor: Path | None = None) -> None:
        self.folder = folder
        self.anchor = anchor  # the site: no link is followed from it to the folder either
        self.names = tuple(names)
        self.counter = counter
        self.max_bytes = max_bytes
        self.backups = backups
        self._owner = owner
        self._always = frozenset(always)  # written by the runner: created even if never seen
        self._complained = False

    def tick(self, now: float) -> None:
        """Every master loop turn (each tick, and when a writer pokes): rotate what has
        outgrown its bound. A stat per file."""
        if not self.max_bytes:
            return
        rotated = False
        with _Folder(self.folder, self.anchor) as folder:
            if not self._usable(folder):
                return
            for name in self.names:
                st = folder.lstat(name)
                if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > self.max_bytes:
                    folder.rotate(name, self.backups)
                    folder.create(name, self._owner)
                    rotated = True
        if rotated:
            self.counter.bump()

    def reopen(self) -> None:
        """SIGUSR1: every writer reopens its files by name (after logrotate renamed them).
        A file that logrotate renamed is created again here, owned like the site, so that
        writers without the right to create it can reopen it."""
        with _Folder(self.folder, self.anchor) as folder:
            if self._usable(folder):
                for name in self.names:
                    if folder.lstat(name) is None and (
                            name in self._always or folder.lstat(f"{name}.1") is not None):
                        folder.create(name, self._owner)
        self.counter.bump()

    def _usable(self, folder: "_Folder") -> bool:
        """Say once, not every tick, that the folder cannot be used."""
        if folder.fd >= 0:
            self._complained = False
            return True
        if not self._complained:
            logging.getLogger("cgirt.error").error("cannot open the logs folder %s: %s",
                                                   folder.path, folder.error)
            self._complained = True
        return False


class _Folder:
    """The logs folder through one descriptor, never following a symlink: the master may run
    as root in a folder whose files a site's scripts can reach."""

    def __init__(self, path: Path, anchor: Path | None = None) -> None:
        self.path = path
        self.anchor = anchor
        self.fd = -1
        self.error = ""

    def __enter__(self) -> "_Folder":
        try:
            if self.anchor is not None:
                self.fd = open_dir(self.anchor, self.path)
            else:
                self.fd = os.open(self.path,
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.error = exc.strerror or str(exc)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def rotate(self, name: str, backups: int) -> None:
        """name.(k) → name.(k+1), name → name.1; the oldest beyond `backups` goes."""
        if backups < 1:
            self._unlink(name)
            return
        self._unlink(f"{name}.{backups}")
        for k in range(backups - 1, 0, -1):
            self._rename(f"{name}.{k}", f"{name}.{k + 1}")
        self._rename(name, f"{name}.1")

    def create(self, name: str, owner: Callable[[int], None]) -> None:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o640, dir_fd=self.fd)
        except FileExistsError:
            return  # a writer reopened first: it created the file itself
        try:
            owner(fd)
        finally:
            os.close(fd)

    def _rename(self, old: str, new: str) -> None:
        try:
            os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise OSError(errno.EISDIR, f"{name} is a directory") from None


def owned_like(site: Path) -> Callable[[int], None]:
    """For a master running as root: new log files belong to the site's owner, whose
    workers reopen them after dropping privileges."""
    def chown(fd: int) -> None:
        if os.geteuid() != 0:
            return
        st = os.stat(site)
        if st.st_uid != 0:
            os.fchown(fd, st.st_uid, st.st_gid)
    return chown


class LogFileHandler(logging.Handler):
    """The runner's own log in a file: a line per record, reopened with the site logs
    (without a counter, by `file.open()`: the FTP gateway's)."""

    def __init__(self, path: Path, counter: ReopenCounter | None) -> None:
        super().__init__()
        self.file = LogFile(path, counter)
        self.file.open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write((self.format(record) + "\n").encode("utf-8", "backslashreplace"))
        except Exception:  # noqa: BLE001 - logging must never take the process down
            self.handleError(record)

    def close(self) -> None:
        self.file.close()
        super().close()
