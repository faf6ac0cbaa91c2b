"""The spare's copy ahead: pages a child copied are found, and copied in another child unchanged."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterator

import pytest

from cgirt.host import prefault
from cgirt.host.prefault import PAGE, copied_pages, copy_ahead, private_ranges, runs

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


def in_child(work: Callable[[], bool]) -> tuple[int, int, int]:
    """Fork a child that runs `work`, then waits: (pid, its exit pipe, our end to release it)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            ok = work()
            os.write(ready_w, b"1" if ok else b"0")
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    return pid, ready_r, go_w


def finish(pid: int, ready_r: int, go_w: int) -> int:
    os.close(go_w)
    os.close(ready_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_pages_a_child_wrote_are_the_ones_it_copied(region: tuple[mmap.mmap, int]) -> None:
    m, base = region
    assert (base, base + PAGES * PAGE) in private_ranges()

    def write() -> bool:
        m[3 * PAGE] = 99
        m[7 * PAGE + 100] = 99
        return True

    pid, ready_r, go_w = in_child(write)
    try:
        assert os.read(ready_r, 1) == b"1"
        copied = copied_pages(pid, [(base, base + PAGES * PAGE)])
        assert copied == [base + 3 * PAGE, base + 7 * PAGE]
    finally:
        assert finish(pid, ready_r, go_w) == 0


def test_copy_ahead_makes_the_pages_a_childs_own_and_changes_nothing(
        region: tuple[mmap.mmap, int]) -> None:
    m, base = region
    wanted = [base + i * PAGE for i in (2, 3, 4, 9)]
    before = bytes(m)

    def copy() -> bool:
        return copy_ahead(runs(wanted), lambda: False) == 4 and bytes(m) == before

    pid, ready_r, go_w = in_child(copy)
    try:
        assert os.read(ready_r, 1) == b"1", "the child's memory changed"
        assert copied_pages(pid, [(base, base + PAGES * PAGE)]) == wanted
        assert bytes(m) == before
    finally:
        assert finish(pid, ready_r, go_w) == 0


def test_copy_ahead_stops_as_soon_as_an_order_waits(region: tuple[mmap.mmap, int]) -> None:
    _, base = region

    def interrupted() -> bool:
        return copy_ahead(runs([base + PAGE]), lambda: True) == 0

    pid, ready_r, go_w = in_child(interrupted)
    try:
        assert os.read(ready_r, 1) == b"1"
        assert copied_pages(pid, [(base, base + PAGES * PAGE)]) == []
    finally:
        assert finish(pid, ready_r, go_w) == 0


def test_a_worker_gone_teaches_nothing(region: tuple[mmap.mmap, int]) -> None:
    _, base = region
    pid, ready_r, go_w = in_child(lambda: True)
    assert os.read(ready_r, 1) == b"1"
    assert finish(pid, ready_r, go_w) == 0
    assert copied_pages(pid, [(base, base + PAGE)]) == []


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
