"""The spare's copy ahead: pages a child copied are found, and copied in another child unchanged."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterator

import pytest

from cgirt.host import prefault
from cgirt.host.prefault import (PAGE, Learner, copied_pages, copy_ahead, open_pagemap,
                                  private_ranges, runs)

PAGES = 16


@pytest.fixture
def region() -> Iterator[tuple[mmap.mmap, int]]:
    """Private anonymous memory, every page present (as a zygote's heap is) and numbered."""
    m = mmap.mmap(-1, PAGES * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(PAGES):
        m[i * PAGE:(i + 1) * PAGE] = bytes([i + 1]) * PAGE
    view = ctypes.c_char.from_buffer(m)
    yield m, ctypes.addressof(view)
    del view
    m.close()


class Child:
    """A forked child whose page map we open first; then it runs `work` and waits to be let go."""

    def __init__(self, work: Callable[[], bool]) -> None:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                os.read(go_r, 1)  # the page map is open
                os.write(ready_w, b"1" if work() else b"0")
                os.read(go_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        self.ready_r, self.go_w = ready_r, go_w
        self.pagemap = open_pagemap(self.pid)
        os.write(go_w, b"g")

    def worked(self) -> bool:
        return os.read(self.ready_r, 1) == b"1"

    def finish(self) -> int:
        os.write(self.go_w, b"x")  # not the end of file: a later child holds this pipe too
        os.close(self.go_w)
        os.close(self.ready_r)
        _, status = os.waitpid(self.pid, 0)
        if self.pagemap >= 0:
            os.close(self.pagemap)
        return os.waitstatus_to_exitcode(status)


def test_the_pages_a_child_wrote_are_the_ones_it_copied(region: tuple[mmap.mmap, int]) -> None:
    m, base = region
    # Within one range (the kernel may merge it with a neighbouring mapping).
    assert any(s <= base and base + PAGES * PAGE <= e for s, e in private_ranges())

    def write() -> bool:
        m[3 * PAGE] = 99
        m[7 * PAGE + 100] = 99
        return True

    child = Child(write)
    try:
        assert child.worked()
        copied = copied_pages(child.pagemap, [(base, base + PAGES * PAGE)])
        assert copied == [base + 3 * PAGE, base + 7 * PAGE]
    finally:
        assert child.finish() == 0


def test_copy_ahead_makes_the_pages_a_childs_own_and_changes_nothing(
        region: tuple[mmap.mmap, int]) -> None:
    m, base = region
    wanted = [base + i * PAGE for i in (2, 3, 4, 9)]
    before = bytes(m)

    def copy() -> bool:
        return copy_ahead(runs(wanted), lambda: False) == 4 and bytes(m) == before

    child = Child(copy)
    try:
        assert child.worked(), "the child's memory changed"
        assert copied_pages(child.pagemap, [(base, base + PAGES * PAGE)]) == wanted
        assert bytes(m) == before
    finally:
        assert child.finish() == 0


def test_copy_ahead_stops_as_soon_as_an_order_waits(region: tuple[mmap.mmap, int]) -> None:
    _, base = region

    def interrupted() -> bool:
        return copy_ahead(runs([base + PAGE]), lambda: True) == 0

    child = Child(interrupted)
    try:
        assert child.worked()
        assert copied_pages(child.pagemap, [(base, base + PAGES * PAGE)]) == []
    finally:
        assert child.finish() == 0


def test_a_worker_gone_teaches_nothing(region: tuple[mmap.mmap, int]) -> None:
    _, base = region
    child = Child(lambda: True)
    assert child.worked()
    pagemap, child.pagemap = child.pagemap, -1
    assert child.finish() == 0
    try:
        assert copied_pages(pagemap, [(base, base + PAGE)]) == []
    finally:
        os.close(pagemap)


def test_a_page_no_longer_mapped_is_skipped() -> None:
    m = mmap.mmap(-1, 2 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = ctypes.c_char.from_buffer(m)
    gone = ctypes.addressof(view)
    del view
    m.close()
    assert copy_ahead([(gone, 2 * PAGE)], lambda: False) == 2  # asked, and no harm done


def test_adjacent_pages_go_in_one_call() -> None:
    pages = [5 * PAGE, 3 * PAGE, 4 * PAGE, 9 * PAGE]
    assert runs(pages) == [(3 * PAGE, 3 * PAGE), (9 * PAGE, PAGE)]
    assert runs([]) == []


def test_a_mapping_too_large_to_read_is_left_out(tmp_path: os.PathLike[str]) -> None:
    maps = os.path.join(tmp_path, "maps")
    huge = prefault._LARGEST + PAGE
    with open(maps, "w") as f:
        f.write("00001000-00003000 rw-p 00000000 00:00 0 \n"
                f"00010000-{0x10000 + huge:08x} rw-p 00000000 00:00 0 \n"
                "7f0000000000-7f0000001000 r--p 00000000 08:01 12 /usr/lib/libc.so.6\n"
                "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
                "7f0000002000-7f0000003000 rw-s 00000000 00:01 5    /dev/zero (deleted)\n")
    assert private_ranges(maps) == [(0x1000, 0x3000)]


def test_without_proc_there_is_nothing_to_learn_and_nothing_fails(
        tmp_path: os.PathLike[str]) -> None:
    assert private_ranges(os.path.join(tmp_path, "no-proc", "maps")) == []
    learner = Learner()
    learner.forked(2 ** 22 + 1)  # above the largest pid: no page map to open
    learner.forked(2 ** 22 + 2)
    learner.taken()
    assert learner.pages == [] and learner.fds() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a change of owner needs root")
def test_a_page_map_opened_at_the_fork_is_read_after_the_child_became_another_user(
        region: tuple[mmap.mmap, int]) -> None:
    m, base = region

    def become_nobody_and_write() -> bool:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        m[4 * PAGE] = 42
        return True

    child = Child(become_nobody_and_write)
    try:
        assert child.worked()
        assert copied_pages(child.pagemap, [(base, base + PAGES * PAGE)]) == [base + 4 * PAGE]
    finally:
        assert child.finish() == 0


def test_the_learner_reads_the_spare_before_the_newest_and_its_children_get_no_page_map(
        region: tuple[mmap.mmap, int]) -> None:
    m, base = region

    def write() -> bool:
        m[6 * PAGE] = 7
        return True

    older, newer = Child(write), Child(lambda: True)
    learner = Learner(every=32)
    try:
        assert older.worked() and newer.worked()
        learner.forked(older.pid)
        learner.taken()  # one spare so far: nothing to learn from
        assert learner.pages == []
        learner.forked(newer.pid)
        fds = learner.fds()
        assert len(fds) == 2
        learner.taken()
        assert (base + 6 * PAGE, PAGE) in learner.pages  # what `older` copied
        assert (base + 6 * PAGE, PAGE) not in runs(
            copied_pages(newer.pagemap, [(base, base + PAGES * PAGE)]))
        learner.forked(os.getpid())  # a third: the oldest's descriptor is closed
        assert fds[0] not in learner.fds() and len(learner.fds()) == 2
    finally:
        learner.close()
        assert older.finish() == 0 and newer.finish() == 0


def test_the_spare_learned_from_copies_nothing_ahead_so_the_pages_can_shrink(
        region: tuple[mmap.mmap, int]) -> None:
    """Page 6 was learned once; the workers now write page 9 only. A worker that copied
    page 6 ahead holds it alone as if it had written it: learned from such a worker, page 6
    would stay in every later worker for good."""
    m, base = region
    learner = Learner(every=4)
    learner.pages = [(base + 6 * PAGE, PAGE)]
    given: list[list[tuple[int, int]]] = []
    children: list[Child] = []

    def spare(pages: list[tuple[int, int]]) -> Callable[[], bool]:
        def work() -> bool:
            copy_ahead(pages, lambda: False)
            m[9 * PAGE] = 9  # the worker's own write
            return True
        return work

    try:
        for _ in range(4):
            pages = learner.for_next_spare()
            given.append(pages)
            children.append(Child(spare(pages)))
            assert children[-1].worked()
            learner.forked(children[-1].pid)
            learner.taken()
        assert given == [[(base + 6 * PAGE, PAGE)]] * 2 + [[]] + [[(base + 6 * PAGE, PAGE)]]
        assert [(start, length) for start, length in learner.pages
                if base <= start < base + PAGES * PAGE] == [(base + 9 * PAGE, PAGE)]
    finally:
        learner.close()
        assert [c.finish() for c in children] == [0] * len(children)


def test_a_kernel_without_the_advice_costs_one_call_and_changes_nothing(
        region: tuple[mmap.mmap, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Linux 5.14 madvise refuses MADV_POPULATE_WRITE (EINVAL) whatever the range: an
    advice no kernel knows stands in for it."""
    m, base = region
    calls: list[int] = []
    real = prefault._libc

    class Counting:
        def madvise(self, start: int, size: int, advice: int) -> int:
            calls.append(start)
            result: int = real.madvise(start, size, advice)
            return result

    monkeypatch.setattr(prefault, "_libc", Counting())
    monkeypatch.setattr(prefault, "_MADV_POPULATE_WRITE", 0x7FFF)
    spread = [(base + i * PAGE, PAGE) for i in range(0, PAGES, 2)]  # runs of a page each
    before = bytes(m)

    def nothing_copied() -> bool:
        return copy_ahead(spread, lambda: False) == 0 and len(calls) == 1

    child = Child(nothing_copied)
    try:
        assert child.worked()
        assert copied_pages(child.pagemap, [(base, base + PAGES * PAGE)]) == []
        assert bytes(m) == before
    finally:
        assert child.finish() == 0
