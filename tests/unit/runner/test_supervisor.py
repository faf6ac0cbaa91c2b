"""The master's decisions with injected time and real (stand-in) children, no forking."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from cgirt.runner.supervisor import Supervisor, SupervisorSettings, _Worker
from tests.support.procs import wait_for


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    listener = socket.socket()
    s = Supervisor(listener, lambda *a: None, SupervisorSettings(
        workers=2, request_kill_after=5.0, graceful_timeout=10.0, quick_timeout=1.0))
    yield s
    listener.close()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def adopt(sup: Supervisor, procs: list[subprocess.Popen[bytes]]) -> None:
    for slot, p in enumerate(procs):
        sup.workers[p.pid] = _Worker(pid=p.pid, slot=slot, booted=True)
        sup._slots.set(slot, 0.0, 1)


def test_a_request_past_its_deadline_gets_its_worker_killed(sup: Supervisor, children: list) -> None:
    adopt(sup, children)
    sup._slots.set(0, 1000.0, 1)  # worker 0 began a request at t=1000
    sup._enforce_deadlines(1004.0)
    assert children[0].poll() is None
    sup._enforce_deadlines(1005.5)
    assert children[0].wait(timeout=5) == -signal.SIGKILL
    assert children[1].poll() is None  # idle: untouched


def test_sighup_retires_every_worker_gracefully(sup: Supervisor, children: list) -> None:
    adopt(sup, children)
    sup._on_signal(signal.SIGHUP, 50.0)
    assert all(w.retiring_since == 50.0 for w in sup.workers.values())
    assert [p.wait(timeout=5) for p in children] == [-signal.SIGTERM, -signal.SIGTERM]


def test_a_retiring_worker_is_killed_after_the_graceful_bound(sup: Supervisor) -> None:
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60"])
    try:
        sup.workers[stubborn.pid] = _Worker(pid=stubborn.pid, slot=0, booted=True, retiring_since=100.0)
        sup._enforce_deadlines(109.0)
        assert stubborn.poll() is None
        sup._enforce_deadlines(110.5)
        assert stubborn.wait(timeout=5) == -signal.SIGKILL
    finally:
        stubborn.kill()
        stubborn.wait()


def test_sigint_bounds_the_stop_tighter_than_sigterm(sup: Supervisor, children: list) -> None:
    adopt(sup, children)
    sup._on_signal(signal.SIGTERM, 0.0)
    assert sup._stop_deadline == 10.0
    sup._on_signal(signal.SIGINT, 1.0)
    assert sup._stop_deadline == 2.0
    sup._enforce_deadlines(2.5)
    assert [p.wait(timeout=5) for p in children] in ([-signal.SIGTERM] * 2, [-signal.SIGKILL] * 2)


def test_a_slow_request_is_signalled_once(children: list) -> None:
    listener = socket.socket()
    sup = Supervisor(listener, lambda *a: None, SupervisorSettings(
        workers=2, request_kill_after=50.0, slow_after=2.0, slow_signal=signal.SIGUSR2))
    try:
        adopt(sup, children)
        sup._slots.set(0, 1000.0, 1)
        sup._enforce_deadlines(1001.9)
        assert children[0].poll() is None and sup.slow_requests == 0
        sup._enforce_deadlines(1002.1)
        assert children[0].wait(timeout=5) == -signal.SIGUSR2  # `sleep` dies of it: it was sent
        assert sup.slow_requests == 1
        sup._enforce_deadlines(1003.0)  # the same request: not again
        assert sup.slow_requests == 1
        sup._slots.set(1, 1010.0, 1)
        sup._enforce_deadlines(1012.5)
        assert children[1].wait(timeout=5) == -signal.SIGUSR2 and sup.slow_requests == 2
    finally:
        listener.close()


def test_requests_of_a_reaped_worker_still_count(sup: Supervisor) -> None:
    child = subprocess.Popen(["sleep", "60"])
    sup.workers[child.pid] = _Worker(pid=child.pid, slot=0, booted=True)
    writer = sup.scoreboard.writer(0)
    for _ in range(3):
        writer.request_started("GET", "/a", "/a.py")
        writer.request_finished()
    child.kill()
    wait_for(lambda: (sup._reap(), child.pid not in sup.workers)[1], 10, "the reaping")
    child.returncode = -signal.SIGKILL  # reaped by the supervisor, not by Popen
    assert sup.retired_requests == 3 and sup.scoreboard.read(0).requests == 0
