"""After a publish on another host: stats that bypass a network mount's attribute cache.

A network filesystem's client (sshfs, GlusterFS, NFS) answers `stat` from its attribute
cache for a while after another machine changed the file, so the stat signature that the
script cache and the remembered dispatch trust can be stale. When the FTP gateway tells this
runner that it published (`PublishEpoch`, bumped by the master), each worker drops what it
remembered and, for `publish_window` seconds, stats with Linux `statx(AT_STATX_FORCE_SYNC)`,
which makes the client ask the server. Outside that window `stat` is the plain, cached one:
between publishes the mount keeps its speed.

`os.statx` only arrives in Python 3.15, hence the call through ctypes; where statx is
missing (not Linux, glibc before 2.28), the forced stat falls back to `os.stat` and the
runner logs once that publishes may be seen late on a network mount.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import signal
import struct
import time
from typing import Any, Callable

from ..errors import Forbidden
from ..notice import NoticeRefused, Verifier

log = logging.getLogger("cgirt.error")

AT_FDCWD = -100
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF


class _Timestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32),
                ("_reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [
        ("stx_mask", ctypes.c_uint32), ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64), ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32), ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16), ("_spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64), ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64), ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp), ("stx_btime", _Timestamp),
        ("stx_ctime", _Timestamp), ("stx_mtime", _Timestamp),
        ("stx_rdev_major", ctypes.c_uint32), ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32), ("stx_dev_minor", ctypes.c_uint32),
        ("_spare", ctypes.c_uint64 * 14),
    ]


def _load_statx() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.statx
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                   ctypes.POINTER(_Statx)]
    fn.restype = ctypes.c_int
    result: Callable[..., int] = fn
    return result


_statx = _load_statx()
_warned = False


def _ns(ts: _Timestamp) -> int:
    return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)


def forced_stat(path: str) -> os.stat_result:
    """`os.stat(path)` asked of the file's server, never of the client's attribute cache."""
    global _warned
    if _statx is None:
        if not _warned:
            _warned = True
            log.warning("cgirt: statx is not available here; on a network mount a publish "
                        "may be seen only when the mount's attribute cache expires")
        return os.stat(path)
    buf = _Statx()
    status: int = _statx(AT_FDCWD, os.fsencode(path), AT_STATX_FORCE_SYNC, STATX_BASIC_STATS,
                         ctypes.byref(buf))
    if status != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    atime, mtime, ctime = _ns(buf.stx_atime), _ns(buf.stx_mtime), _ns(buf.stx_ctime)
    # os.stat_result's sequence: the 10 classic fields, then the float times and the _ns ones.
    fields: list[Any] = [
        buf.stx_mode, buf.stx_ino, os.makedev(buf.stx_dev_major, buf.stx_dev_minor),
        buf.stx_nlink, buf.stx_uid, buf.stx_gid, buf.stx_size,
        atime // 1_000_000_000, mtime // 1_000_000_000, ctime // 1_000_000_000,
        atime / 1e9, mtime / 1e9, ctime / 1e9, atime, mtime, ctime,
        buf.stx_blksize, buf.stx_blocks, os.makedev(buf.stx_rdev_major, buf.stx_rdev_minor),
    ]
    return os.stat_result(fields)


_strict_until = 0.0


def stat(path: str) -> os.stat_result:
    """The stat the runner's change detection uses: forced during a publish window."""
    if _strict_until and time.monotonic() < _strict_until:
        return forced_stat(path)
    return os.stat(path)


def fstat_of(path: str, fd: int) -> os.stat_result:
    """An open file's stat for its cache signature; by path when forced, for the same reason."""
    if _strict_until and time.monotonic() < _strict_until:
        return forced_stat(path)
    return os.fstat(fd)


def strict_for(seconds: float) -> None:
    """Force stats for the next `seconds` (a new publish extends the window, never shortens)."""
    global _strict_until
    _strict_until = max(_strict_until, time.monotonic() + seconds)


class PublishEpoch:
    """A counter in memory shared by the master and its workers (made before the fork).

    The master bumps it when a publish notification arrives; a worker compares it once per
    request, a read of eight bytes. `cgirt host` keeps one per worker slot in one shared
    table (`memory`, the counter at `slot`): its workers are forked long after the master
    made the table, and each site's notices reach only that site's workers.
    """

    SIZE = 8

    def __init__(self, memory: mmap.mmap | None = None, slot: int = 0) -> None:
        self._map = mmap.mmap(-1, self.SIZE) if memory is None else memory
        self._at = slot * self.SIZE

    def read(self) -> int:
        value: int = struct.unpack_from("Q", self._map, self._at)[0]
        return value

    def bump(self) -> int:
        value = self.read() + 1
        struct.pack_into("Q", self._map, self._at, value)  # only the master writes
        return value

    def set(self, value: int) -> None:
        """The master, before a worker takes the slot: what its first request compares with
        the 0 it starts from."""
        struct.pack_into("Q", self._map, self._at, value)


class PublishNotices:
    """The master's answer to a notice (`cgirt.notice`): verified, then a publish bumps the
    epoch and a reload replaces the workers (the master's own SIGHUP, handled in its loop)."""

    def __init__(self, verifier: Verifier, epoch: PublishEpoch) -> None:
        self.verifier = verifier
        self.epoch = epoch

    def __call__(self, action: str, query: str, authorization: str) -> bytes:
        try:
            self.verifier.check(query, authorization, action=action)
        except NoticeRefused as exc:
            log.warning("cgirt: %s notice refused: %s", action, exc)
            raise Forbidden(f"{action} notice refused: {exc}") from None
        if action == "reload":
            log.info("cgirt: reload notice for %s", self.verifier.site)
            os.kill(os.getpid(), signal.SIGHUP)
            return b"reloading\n"
        epoch = self.epoch.bump()
        log.info("cgirt: publish notice %d for %s", epoch, self.verifier.site)
        return b"published %d\n" % epoch
