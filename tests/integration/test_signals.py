"""README's signal table, sent to a live runner master (HUP, TERM and INT: test_faults.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable

import pytest

from tests.support.fcgi import cgi_params, request
from tests.support.procs import group_members, wait_for
from tests.support.servers import Runner

pytestmark = pytest.mark.integration


def serves(runner: Runner) -> None:
    for _ in range(runner.workers * 2):
        resp = request(runner.address, cgi_params("/cgi-bin/hello.py"))
        assert (resp.status, resp.body) == (200, b"Hello, world!\n")


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR, signal.SIGXCPU,
                                 signal.SIGVTALRM, signal.SIGRTMIN + 2])
def test_other_signals_are_ignored_never_fatal(
        site: Path, start_runner: Callable[..., Runner], sig: int) -> None:
    runner = start_runner(site, workers=2)
    workers = sorted(runner.worker_pids())
    os.kill(runner.pid, sig)
    name = signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)
    wait_for(lambda: f"signal {name} ignored" in runner.proc.output(), 20, f"{name} noticed")
    assert runner.proc.alive() and Path(runner.address[5:]).is_socket()
    assert sorted(runner.worker_pids()) == workers
    serves(runner)


def test_sigttin_and_sigttou_add_and_retire_workers(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    first = set(runner.worker_pids())

    def resize(sig: int, expected: int) -> None:
        # One at a time: the kernel merges a signal sent while the same one is pending.
        os.kill(runner.pid, sig)
        wait_for(lambda: len(runner.worker_pids()) == expected, 30, f"{expected} workers")

    resize(signal.SIGTTIN, 3)
    resize(signal.SIGTTIN, 4)
    assert first < set(runner.worker_pids())  # added, none replaced
    serves(runner)
    for expected in (3, 2, 1):
        resize(signal.SIGTTOU, expected)
    os.kill(runner.pid, signal.SIGTTOU)  # never fewer than one
    wait_for(lambda: "workers stay at 1" in runner.proc.output(), 20, "the refusal")
    assert len(runner.worker_pids()) == 1
    runner.workers = 1
    serves(runner)


def test_sigquit_stops_at_once_and_removes_the_socket(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    assert runner.proc.stop(signal.SIGQUIT, timeout=10) == 0
    assert not group_members(runner.pid)
    assert not os.path.exists(runner.address[5:])
