"""The pages a worker copies from the zygote, learned from the last one and copied by the spare.

After a fork every page is shared copy-on-write, and a worker's boot and first request write
to some 1,500 of the zygote's pages (reference counts, the interpreter's specialised
bytecode): each first write is a page fault and a copy, about half of a cold start's time.
Which pages those are is read from a worker that has served (/proc/PID/pagemap: present and
no longer shared), and the next spare copies the same pages while it waits for its order
(madvise MADV_POPULATE_WRITE: the copy a write would make, without writing). The worker it
becomes finds them its own already. The memory is what that worker would have copied anyway;
only the waiting spare holds it early.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _EXCLUSIVE = 1 << 63, 1 << 56  # pagemap bits (Documentation/admin-guide/mm/pagemap)
_MADV_POPULATE_WRITE = 23  # Linux 5.14; not in Python's mmap module
_NOT_HEAP = ("[stack", "[vvar", "[vdso", "[vsyscall", "[uprobes")
# A mapping this large is a reservation, not the interpreter's heap: reading its pagemap
# would cost more than the copies it could save.
_LARGEST = 256 * 1024 * 1024
_CHUNK = 64  # pages copied between two looks for an order

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.madvise.restype = ctypes.c_int


def private_ranges(maps: str = "/proc/self/maps") -> list[tuple[int, int]]:
    """(start, end) of each private writable mapping: what a child shares copy-on-write.
    [] where /proc cannot tell: only the speed-up is lost, the zygote must not fail."""
    ranges: list[tuple[int, int]] = []
    try:
        with open(maps) as f:
            for line in f:
                fields = line.split(maxsplit=5)
                perms, name = fields[1], fields[5].strip() if len(fields) > 5 else ""
                if (perms[0] != "r" or perms[1] != "w" or perms[3] != "p"
                        or name.startswith(_NOT_HEAP)):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if end - start <= _LARGEST:
                    ranges.append((start, end))
    except OSError:
        return []
    return ranges


def open_pagemap(pid: int) -> int:
    """A descriptor on the page map of `pid`, -1 if it cannot be read. Opened while the
    child is still ours: read later through it, it follows the child past its change of owner
    (opened then, it would need CAP_SYS_PTRACE, which the master does not keep)."""
    try:
        return os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def copied_pages(pagemap: int, ranges: list[tuple[int, int]]) -> list[int]:
    """The pages of `ranges` (the zygote's; its children inherit the layout) that the
    process of `pagemap` now holds alone: the ones it copied. [] once it is gone."""
    pages: list[int] = []
    copied = _PRESENT | _EXCLUSIVE
    try:
        for start, end in ranges:
            data = os.pread(pagemap, (end - start) // PAGE * 8, start // PAGE * 8)
            entries = memoryview(data)[:len(data) // 8 * 8].cast("Q")
            pages += [start + i * PAGE for i, entry in enumerate(entries)
                      if entry & copied == copied]
    except OSError:
        return []
    return pages


class Learner:
    """The zygote's side: the pages its workers copy, read through the page maps of its last
    two spares (the newest has just taken an order; the one before became a worker at the
    cold start before, and has served since, most likely). Which pages a boot copies changes
    little: they are read again only every `every` spares (a read costs about a millisecond
    of CPU, while a worker boots)."""

    def __init__(self, every: int = 32) -> None:
        self.pages: list[tuple[int, int]] = []  # runs, for the next spare
        self._maps: list[int] = []  # page map descriptors of the last spares, oldest first
        self._forked = 0
        self._every = every

    def fds(self) -> list[int]:
        """Descriptors a child must close: no site may read another process's page map."""
        return [fd for fd in self._maps if fd >= 0]

    def forked(self, pid: int) -> None:
        self._maps.append(open_pagemap(pid))
        while len(self._maps) > 2:
            old = self._maps.pop(0)
            if old >= 0:
                os.close(old)
        self._forked += 1

    def for_next_spare(self) -> list[tuple[int, int]]:
        """The pages the spare about to be forked copies ahead: none if it is the one the next
        relearning reads. A worker that was given pages holds them alone whether it needed
        them or not, so what is learned from it is never less than what it was given: the
        pages would only grow, with whatever any worker once wrote, in every later worker."""
        if self.pages and (self._forked + 2) % self._every == 0:
            return []
        return self.pages

    def taken(self) -> None:
        """The newest spare took an order: learn from the one before, when due."""
        if len(self._maps) == 2 and self._maps[0] >= 0 and (
                not self.pages or self._forked % self._every == 0):
            self.pages = runs(copied_pages(self._maps[0], private_ranges())) or self.pages

    def close(self) -> None:
        for fd in self.fds():
            os.close(fd)
        self._maps = []


def runs(pages: list[int]) -> list[tuple[int, int]]:
    """Sorted pages as (start, length) runs of adjacent ones: one system call each."""
    out: list[tuple[int, int]] = []
    for page in sorted(pages):
        if out and out[-1][0] + out[-1][1] == page:
            out[-1] = (out[-1][0], out[-1][1] + PAGE)
        else:
            out.append((page, PAGE))
    return out


def copy_ahead(pages: list[tuple[int, int]], interrupted: Callable[[], bool]) -> int:
    """Make `pages` (runs: start, length) this process's own without changing them; stops
    early when `interrupted()` says an order is waiting. Returns how many were asked for."""
    done = next_look = 0
    for start, length in pages:
        while length > 0:
            # Most runs are a page or two: a look per run would double the system calls.
            if done >= next_look:
                if interrupted():
                    return done
                next_look = done + _CHUNK
            size = min(length, _CHUNK * PAGE)
            # Fails on a kernel before 5.14 (EINVAL), or for a page unmapped since it was
            # learned: only this speed-up is lost.
            if _libc.madvise(start, size, _MADV_POPULATE_WRITE) != 0:
                if ctypes.get_errno() == 22 and done == 0:
                    return 0  # EINVAL at once: the kernel does not know the advice
            start, length, done = start + size, length - size, done + size // PAGE
    return done
