"""The scoreboard's slots (written by a worker, read by the master) and the listen queue."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from cgirt.runner.listenqueue import listen_queue
from cgirt.runner.scoreboard import LABEL_SIZE, SLOT_SIZE, Scoreboard


def test_a_request_is_seen_running_then_idle_with_its_cost() -> None:
    board = Scoreboard(2)
    w = board.writer(1)
    w.booted()
    assert board.get(1) == (0.0, 1)
    started = w.request_started("GET", "/cgi-bin/a.py?x=1", "/srv/site/cgi-bin/a.py")
    v = board.read(1)
    assert (v.started, v.requests, v.method, v.uri, v.script) == (
        started, 1, "GET", "/cgi-bin/a.py?x=1", "/srv/site/cgi-bin/a.py")
    assert board.get(1) == (started, 1)  # what the master's deadline check reads
    sum(range(200_000))  # some CPU for the request
    w.request_finished()
    v = board.read(1)
    assert v.started == 0.0 and v.requests == 1
    assert v.uri == "/cgi-bin/a.py?x=1"  # the last request stays shown while idle
    assert v.last_cpu > 0 and v.last_duration > 0 and v.peak_rss_kib > 1000
    assert board.read(0).requests == 0  # the other slot untouched


def test_a_long_label_is_cut_and_still_decodes() -> None:
    board = Scoreboard(1)
    w = board.writer(0)
    w.request_started("GET", "/" + "é" * LABEL_SIZE, "/s.py")
    v = board.read(0)
    assert v.uri.startswith("/éé") and v.script == ""
    assert len(v.uri.encode()) <= LABEL_SIZE


def test_a_reader_waits_out_a_write_in_progress() -> None:
    """While the sequence number is odd the fields are mid-write: the reader retries, and a
    writer that died mid-write (odd for good) does not hang it."""
    board = Scoreboard(1)
    w = board.writer(0)
    w.request_started("GET", "/a", "/a.py")
    mem = board._mem
    seq = int.from_bytes(mem[0:8], "little")
    mem[0:8] = (seq + 1).to_bytes(8, "little")  # as a writer killed between its two writes
    assert board.read(0).uri == "/a"


def test_clearing_a_slot_forgets_its_worker() -> None:
    board = Scoreboard(1)
    w = board.writer(0)
    w.request_started("GET", "/a", "/a.py")
    board.set(0, 0.0, 0)
    v = board.read(0)
    assert (v.started, v.booted, v.requests, v.uri) == (0.0, False, 0, "")
    assert SLOT_SIZE * 1 == len(board._mem)


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_listen_queue_counts_exactly_what_waits(family: str, tmp_path: Path) -> None:
    if family == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        address: Any = listener.getsockname()
    else:
        listener = socket.socket(socket.AF_UNIX)
        address = str(tmp_path / "s")
        listener.bind(address)
    listener.listen(7)
    clients = []
    try:
        assert listen_queue(listener) == (0, 7)
        for _ in range(3):
            c = socket.socket(listener.family)
            c.connect(address)
            clients.append(c)
        assert listen_queue(listener) == (3, 7)
        conn, _ = listener.accept()
        conn.close()
        assert listen_queue(listener) == (2, 7)
    finally:
        for c in clients:
            c.close()
        listener.close()


def test_listen_queue_of_something_else_is_unknown() -> None:
    a, b = socket.socketpair()
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert listen_queue(udp) is None
        udp.close()
        assert listen_queue(a) is None  # a connected unix socket is not listening
    finally:
        a.close()
        b.close()


def test_listen_queue_of_a_unix_socket_is_answered_without_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The master samples every turn of its loop: the kernel's answer is read as soon as the
    request is sent, with no wait (the wait exists only as a safeguard)."""
    import cgirt.runner.listenqueue as lq

    def no_wait(*args: object) -> object:
        raise AssertionError("listen_queue waited for the kernel's answer")

    monkeypatch.setattr(lq.select, "select", no_wait)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(tmp_path / "s"))
        listener.listen(5)
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(tmp_path / "s"))
        assert listen_queue(listener) == (1, 5)
        client.close()
    finally:
        listener.close()
