"""The master's decisions, driven through `step()` with injected time and stand-in children.

The supervisor spawns `sleep` processes instead of forking workers (its `spawn` seam); signals
go in through `queue_signal`, as its handlers put them; a worker's request clock is set in the
shared slot table, as a worker's WorkerControl does. Only time is not real.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cgirt.runner.scoreboard import Scoreboard
from cgirt.runner.supervisor import (
    WORKER_BOOT_ERROR, Supervisor, SupervisorSettings, WorkerControl,
)
from tests.support.procs import wait_for


class StandIns:
    """Children for the supervisor: a command per slot, booted at once (as a worker whose
    child_init succeeded) unless `boots` is False. `stubborn` ones block SIGTERM, so only
    SIGKILL ends them (a blocked signal survives exec; no race with a shell's trap)."""

    def __init__(self) -> None:
        self.sup: Supervisor | None = None
        self.command = ["sleep", "60"]
        self.boots = True
        self.stubborn = False
        self.pids: list[int] = []

    def __call__(self, slot: int) -> int:
        assert self.sup is not None
        mask = {signal.SIGTERM} if self.stubborn else set()
        pid = os.posix_spawnp(self.command[0], self.command, os.environ, setsigmask=mask)
        self.pids.append(pid)
        if self.boots:
            self.sup.scoreboard.set(slot, 0.0, 1)
        return pid

    def stop_all(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass  # already reaped by the supervisor


@pytest.fixture
def children() -> Iterator[StandIns]:
    stand_ins = StandIns()
    yield stand_ins
    stand_ins.stop_all()


@pytest.fixture
def sup(children: StandIns) -> Iterator[Supervisor]:
    listener = socket.socket()
    s = Supervisor(listener, lambda *a: None, SupervisorSettings(
        workers=2, request_kill_after=5.0, graceful_timeout=10.0, quick_timeout=1.0),
        spawn=children)
    children.sup = s
    yield s
    listener.close()


def alive(pid: int) -> bool:
    """True until the supervisor has reaped it (a zombie still counts as alive)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def step_until(sup: Supervisor, now: float, condition: Callable[[], bool], what: str) -> None:
    """Turn the master's loop at `now` until `condition()` holds: the kernel needs a moment
    to end a signalled child, and only a step reaps it."""
    def turn() -> bool:
        sup.step(now)
        return condition()
    wait_for(turn, 15, what)


def test_the_first_step_starts_every_worker(sup: Supervisor, children: StandIns) -> None:
    sup.step(0.0)
    assert sorted(sup.workers) == sorted(children.pids) and len(children.pids) == 2
    assert all(alive(pid) for pid in children.pids)
    sup.step(1.0)
    assert len(children.pids) == 2  # nothing more to start


def test_a_request_past_its_deadline_gets_its_worker_killed_and_replaced(
        sup: Supervisor, children: StandIns) -> None:
    sup.step(0.0)
    busy, idle = sorted(sup.workers, key=lambda pid: sup.workers[pid].slot)
    sup.scoreboard.set(sup.workers[busy].slot, 1000.0, 1)  # its request began at t=1000
    sup.step(1004.0)
    assert alive(busy)
    step_until(sup, 1005.5, lambda: busy not in sup.workers, "the busy worker's end")
    assert not alive(busy) and alive(idle)
    assert len(sup.workers) == 2 and len(children.pids) == 3  # replaced
    assert sup.running


def test_sighup_replaces_every_worker_gracefully(sup: Supervisor, children: StandIns) -> None:
    sup.step(0.0)
    old = set(sup.workers)
    sup.queue_signal(signal.SIGHUP)
    sup.step(50.0)
    assert all(sup.workers[pid].retiring_since == 50.0 for pid in old)
    assert len(sup.workers) == 4  # the new ones start before the old ones have gone
    step_until(sup, 50.1, lambda: not old & set(sup.workers), "the old workers' end")
    assert len(sup.workers) == 2 and sup.running


def test_a_retiring_worker_is_killed_after_the_graceful_bound(sup: Supervisor, children: StandIns) -> None:
    children.stubborn = True
    sup.step(100.0)
    old = set(sup.workers)
    sup.queue_signal(signal.SIGHUP)
    sup.step(100.0)
    sup.step(109.0)
    assert all(alive(pid) for pid in old)  # SIGTERM was sent, and is ignored
    step_until(sup, 110.5, lambda: not old & set(sup.workers), "SIGKILL after 10 s")


def test_sigint_bounds_the_stop_tighter_than_sigterm(sup: Supervisor, children: StandIns) -> None:
    children.stubborn = True
    sup.step(0.0)
    workers = set(sup.workers)
    sup.queue_signal(signal.SIGTERM)  # graceful: 10 s
    sup.step(0.0)
    sup.queue_signal(signal.SIGINT)  # quick: 1 s from now
    sup.step(1.0)
    sup.step(1.9)
    assert all(alive(pid) for pid in workers) and sup.running
    step_until(sup, 2.5, lambda: not sup.running, "the stop")
    assert not sup.workers and not any(alive(pid) for pid in workers)
    assert len(children.pids) == 2 and sup.exit_status == 0  # nothing started while stopping


def test_workers_that_fail_at_boot_halt_the_master(sup: Supervisor, children: StandIns) -> None:
    children.command = ["sh", "-c", f"exit {WORKER_BOOT_ERROR}"]
    children.boots = False
    sup.step(0.0)
    step_until(sup, 0.1, lambda: not sup.running, "the halt")
    assert sup.exit_status == WORKER_BOOT_ERROR and "boot" in sup.halt_reason
    started = len(children.pids)
    sup.step(0.2)
    assert len(children.pids) == started  # no respawning forever


def test_a_booted_worker_that_dies_is_replaced_without_halting(
        sup: Supervisor, children: StandIns) -> None:
    children.command = ["sh", "-c", f"exit {WORKER_BOOT_ERROR}"]  # as a script's os._exit(3)
    sup.step(0.0)
    step_until(sup, 0.1, lambda: len(children.pids) >= 6, "replacements")
    assert sup.running and sup.exit_status == 0


def test_a_slow_request_is_signalled_once(children: StandIns) -> None:
    listener = socket.socket()
    sup = Supervisor(listener, lambda *a: None, SupervisorSettings(
        workers=2, request_kill_after=50.0, slow_after=2.0, slow_signal=signal.SIGUSR2),
        spawn=children)
    children.sup = sup
    try:
        sup.step(0.0)
        busy, idle = sorted(sup.workers, key=lambda pid: sup.workers[pid].slot)
        sup.scoreboard.set(sup.workers[busy].slot, 1000.0, 1)
        sup.step(1001.9)
        assert alive(busy) and sup.slow_requests == 0
        sup.step(1002.1)
        assert sup.slow_requests == 1
        sup.step(1003.0)  # the same request: not again
        assert sup.slow_requests == 1
        # `sleep` dies of SIGUSR2, so the signal was sent (nothing else ends it before t=1050)
        step_until(sup, 1003.0, lambda: busy not in sup.workers, "the signalled worker's end")
        assert alive(idle)
    finally:
        listener.close()


def test_requests_of_a_reaped_worker_still_count(sup: Supervisor, children: StandIns) -> None:
    sup.step(0.0)
    pid = min(sup.workers, key=lambda p: sup.workers[p].slot)
    slot = sup.workers[pid].slot
    writer = sup.scoreboard.writer(slot)
    for _ in range(3):
        writer.request_started("GET", "/a", "/a.py")
        writer.request_finished()
    os.kill(pid, signal.SIGKILL)
    step_until(sup, 1.0, lambda: pid not in sup.workers, "the reaping")
    assert sup.retired_requests == 3


def test_sigttin_and_sigttou_move_the_worker_target_within_bounds(
        sup: Supervisor, children: StandIns) -> None:
    sup.step(0.0)
    sup.queue_signal(signal.SIGTTIN)
    sup.step(10.0)
    assert sup.target == 3 and len(sup.workers) == 3
    assert not any(w.retiring_since for w in sup.workers.values())
    sup.queue_signal(signal.SIGTTOU)
    sup.step(11.0)
    sup.queue_signal(signal.SIGTTOU)
    sup.step(12.0)
    assert sup.target == 1
    step_until(sup, 12.1, lambda: len(sup.workers) == 1, "two workers retired")
    sup.queue_signal(signal.SIGTTOU)
    sup.step(13.0)
    assert sup.target == 1 and len(sup.workers) == 1  # never below one worker
    sup.target = sup.max_workers
    sup.queue_signal(signal.SIGTTIN)
    sup.step(14.0)
    assert sup.target == sup.max_workers


def test_sigusr1_calls_on_reopen_and_other_signals_are_only_logged(
        sup: Supervisor, children: StandIns, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cgirt")
    sup.step(0.0)
    calls: list[str] = []
    sup.on_reopen = lambda: calls.append("reopen")
    sup.queue_signal(signal.SIGUSR1)
    sup.step(1.0)
    assert calls == ["reopen"]
    for s in (signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR, signal.SIGRTMIN + 3):
        sup.queue_signal(s)
    sup.step(2.0)
    assert calls == ["reopen"] and sup.running
    assert not any(w.retiring_since for w in sup.workers.values()) and len(sup.workers) == 2
    assert "signal SIGUSR2 ignored" in caplog.text
    assert f"signal {signal.SIGRTMIN + 3} ignored" in caplog.text


def test_the_harmless_signals_leave_out_faults_and_job_control() -> None:
    from cgirt.runner.supervisor import HARMLESS_SIGNALS
    assert signal.SIGUSR2 in HARMLESS_SIGNALS and signal.SIGRTMAX in HARMLESS_SIGNALS
    for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL, signal.SIGSTOP,
              signal.SIGTSTP, signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR1):
        assert s not in HARMLESS_SIGNALS


def test_run_worker_serves_in_another_masters_slot(tmp_path: Path) -> None:
    """A real worker, in a process forked by someone else (`cgirt host`'s zygote): it boots,
    serves and counts its requests in the slot the other master chose, of its scoreboard."""
    slots = Scoreboard(4)
    path = str(tmp_path / "listener")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def handle(conn: socket.socket, addr: object, control: WorkerControl) -> None:
        control.request_started("GET", "/x")
        conn.sendall(str(os.getpid()).encode())
        control.request_finished()

    worker = Supervisor(listener, handle, SupervisorSettings(workers=1))
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            worker.run_worker(slots, 2, parent)
        finally:
            os._exit(1)  # never into pytest's code
    listener.close()
    try:
        wait_for(lambda: slots.read(2).booted, 15, "the worker to boot in slot 2")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            assert client.recv(64) == str(pid).encode()
        assert [slots.read(i).requests for i in range(4)] == [0, 0, 1, 0]
        assert slots.read(2).uri == "/x"
    finally:
        os.kill(pid, signal.SIGTERM)  # a worker's graceful stop
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
