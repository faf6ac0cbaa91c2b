"""README's signal table, sent to a live runner master (HUP, TERM and INT: test_faults.py)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import make_site
from tests.support.fcgi import cgi_params, connect, request, send_request
from tests.support.procs import group_members, running, wait_for
from tests.support.servers import Runner, make_traversable

pytestmark = pytest.mark.integration


def serves(runner: Runner) -> None:
    for _ in range(runner.workers * 2):
        resp = request(runner.address, cgi_params("/cgi-bin/hello.py"))
        assert (resp.status, resp.body) == (200, b"Hello, world!\n")


def test_sigusr1_reopens_the_logs_and_keeps_serving(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    workers = sorted(runner.worker_pids())
    logs = site / ".cgirt" / "logs"
    serves(runner)
    # Each line is written after its response: wait for the last one before renaming.
    wait_for(lambda: len((logs / "access.log").read_text().splitlines()) == 4, 10, "4 lines")
    os.rename(logs / "access.log", logs / "access.old")
    os.rename(logs / "error.log", logs / "error.old")
    os.kill(runner.pid, signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: log files reopened" in runner.proc.output(), 20, "the reopen")
    assert request(runner.address, cgi_params("/cgi-bin/crash.py")).status == 500
    serves(runner)
    assert len((logs / "access.old").read_text().splitlines()) == 4
    wait_for(lambda: len((logs / "access.log").read_text().splitlines()) == 5, 10, "new lines")
    assert "ZeroDivisionError" in (logs / "error.log").read_text()
    assert "ZeroDivisionError" not in (logs / "error.old").read_text()
    assert sorted(runner.worker_pids()) == workers  # reopened in place, no restart


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


@pytest.fixture
def owned_site() -> Iterator[Path]:
    """A site owned by nobody, outside pytest's own temporary root: a pytest starting
    meanwhile (other runs share the machine) makes that root private again."""
    root = Path(tempfile.mkdtemp(prefix="cgirt-owned-"))
    try:
        os.chmod(root, 0o711)
        make_traversable(Path(os.path.realpath(sys.executable)))
        site = make_site(root)
        for path in [site, *site.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
        yield site
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: workers drop to the site's owner")
def test_workers_that_cannot_reach_the_logs_are_replaced_after_sigusr1(
        owned_site: Path, start_runner: Callable[..., Runner]) -> None:
    # Started as root for a site owned by someone else, workers run as that owner and
    # cannot reopen files in the root-only .cgirt/logs: they finish the request on the old
    # file and are replaced by workers that open the new files before dropping privileges.
    site = owned_site
    runner = start_runner(site, workers=1)
    logs = site / ".cgirt" / "logs"
    wait_for(lambda: (logs / "access.log").exists(), 20, "the worker to open its logs")
    assert (logs / "access.log").stat().st_uid == 0 and (site / ".cgirt").stat().st_mode & 0o077 == 0
    runner.workers = 1
    serves(runner)
    wait_for(lambda: len((logs / "access.log").read_text().splitlines()) == 2, 10, "2 lines")
    before = runner.worker_pids()
    os.rename(logs / "access.log", logs / "access.old")
    os.kill(runner.pid, signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: log files reopened" in runner.proc.output(), 20, "the reopen")
    assert (logs / "access.log").stat().st_uid == 65534  # created for the workers, by the master
    serves(runner)  # the first goes to the old file, then its worker is replaced
    wait_for(lambda: runner.worker_pids() and runner.worker_pids() != before, 20, "a new worker")
    serves(runner)
    wait_for(lambda: len((logs / "access.log").read_text().splitlines()) >= 2, 10, "new lines")
    assert len((logs / "access.old").read_text().splitlines()) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: workers drop to the site's owner")
def test_kill_9_of_the_master_leaves_no_worker_that_dropped_privileges(
        owned_site: Path, start_runner: Callable[..., Runner]) -> None:
    # The uid change clears the parent-death signal; a worker busy in a script (so not
    # polling for its master) must still die with it.
    site = owned_site
    script = site / "cgi-bin" / "busy.py"
    script.write_text("import os, time\n"
                      "open(os.path.join(os.path.dirname(__file__), 'started'), 'w').close()\n"
                      "time.sleep(600)\n")
    os.chown(script, 65534, 65534)
    runner = start_runner(site, "--timeout", "600", workers=2)
    workers = runner.worker_pids()
    assert all(Path(f"/proc/{p}").stat().st_uid == 65534 for p in workers)
    conns = [connect(runner.address) for _ in workers]
    try:
        for conn in conns:
            send_request(conn, cgi_params("/cgi-bin/busy.py"))
        wait_for(lambda: (site / "cgi-bin" / "started").exists(), 20, "a script to start")
        os.kill(runner.pid, signal.SIGKILL)
        wait_for(lambda: not any(running(p) for p in workers), 20,
                 "workers to die with their master")
    finally:
        for conn in conns:
            conn.close()
