"""The master's decisions with injected time and real (stand-in) children, no forking."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from cgirt.runner.supervisor import Supervisor, SupervisorSettings, _Worker


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


def test_sigttin_and_sigttou_move_the_worker_target_within_bounds(sup: Supervisor, children: list) -> None:
    adopt(sup, children)
    sup._on_signal(signal.SIGTTIN, 10.0)
    assert sup.target == 3 and not any(w.retiring_since for w in sup.workers.values())
    sup._on_signal(signal.SIGTTOU, 11.0)
    sup._on_signal(signal.SIGTTOU, 12.0)
    assert sup.target == 1
    retiring = [w for w in sup.workers.values() if w.retiring_since == 12.0]
    assert [w.pid for w in retiring] == [max(p.pid for p in children)]  # one, the newest
    sup._on_signal(signal.SIGTTOU, 13.0)
    assert sup.target == 1  # never below one worker
    sup.target = sup.max_workers
    sup._on_signal(signal.SIGTTIN, 14.0)
    assert sup.target == sup.max_workers


def test_sigusr1_calls_on_reopen_and_other_signals_are_only_logged(
        sup: Supervisor, children: list, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cgirt")
    adopt(sup, children)
    calls: list[str] = []
    sup.on_reopen = lambda: calls.append("reopen")
    sup._on_signal(signal.SIGUSR1, 1.0)
    assert calls == ["reopen"]
    for s in (signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR, signal.SIGRTMIN + 3):
        sup._on_signal(s, 2.0)
    assert calls == ["reopen"] and sup._stop_deadline is None
    assert not any(w.retiring_since for w in sup.workers.values())
    assert "signal SIGUSR2 ignored" in caplog.text and f"signal {signal.SIGRTMIN + 3} ignored" in caplog.text


def test_the_harmless_signals_leave_out_faults_and_job_control() -> None:
    from cgirt.runner.supervisor import HARMLESS_SIGNALS
    assert signal.SIGUSR2 in HARMLESS_SIGNALS and signal.SIGRTMAX in HARMLESS_SIGNALS
    for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL, signal.SIGSTOP,
              signal.SIGTSTP, signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR1):
        assert s not in HARMLESS_SIGNALS
