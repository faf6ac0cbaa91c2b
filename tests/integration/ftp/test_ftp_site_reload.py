"""SITE RELOAD signals this site's runner master and nothing else, whatever pid the site's
owner writes into runner.pid. Real gateway, ftplib, `cgirt serve` runners and processes."""

from __future__ import annotations

import ftplib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ftp_harness import Gateway, make_site

from tests.support.procs import SIGNAL_NOTER, SignalNoter, wait_for
from tests.support.servers import Runner

pytestmark = pytest.mark.integration


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Callable[[Path], Runner]]:
    started: list[Runner] = []

    def start(site: Path) -> Runner:
        workdir = tmp_path / f"run-{len(started)}"
        workdir.mkdir()
        runner = Runner(site, workdir)
        started.append(runner)
        pid_file = site / ".cgirt" / "runner.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text() == f"{runner.pid}\n", 30,
                 "the runner's pid file")
        return runner

    yield start
    for runner in started:
        runner.stop()


def reload(gw: Gateway) -> str:
    client = gw.ftp()
    try:
        return client.sendcmd("SITE RELOAD")
    finally:
        client.quit()


def refused(gw: Gateway, pid: int) -> str:
    """The reply to SITE RELOAD with runner.pid naming `pid`: a refusal."""
    (gw.site / ".cgirt").mkdir(exist_ok=True)
    (gw.site / ".cgirt" / "runner.pid").write_text(f"{pid}\n")
    with pytest.raises(ftplib.error_perm) as caught:
        reload(gw)
    reply = str(caught.value)
    assert reply.startswith(f"550 SITE RELOAD refused: runner.pid names pid {pid}, "), reply
    assert reply.endswith("nothing was signalled."), reply
    return reply


def test_the_sites_own_runner_replaces_its_workers(
        gateway_factory: Callable[..., Gateway], runners: Callable[[Path], Runner]) -> None:
    gw = gateway_factory()
    runner = runners(gw.site)
    old = set(runner.worker_pids())
    assert f"200 Runner (pid {runner.pid}) asked to reload its workers." == reload(gw)
    wait_for(lambda: len(new := set(runner.worker_pids())) == 2 and not new & old, 30,
             "every worker replaced")
    assert "SIGHUP: replacing all workers" in runner.proc.output()
    assert not (gw.site / ".cgirt" / "reload").exists()  # a request for a master of many only


def test_another_sites_runner_is_not_signalled(
        gateway_factory: Callable[..., Gateway], runners: Callable[[Path], Runner],
        tmp_path: Path) -> None:
    gw = gateway_factory()
    other = runners(make_site(tmp_path / "other-site"))
    workers = set(other.worker_pids())
    assert "which is a cgirt runner of another site" in refused(gw, other.pid)
    # A signal sent after any SIGHUP is handled after it: once its line is in the log, a
    # SIGHUP from the gateway would have been too.
    os.kill(other.pid, signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: log files reopened" in other.proc.output(), 30, "SIGUSR1 handled")
    assert "SIGHUP" not in other.proc.output()
    assert set(other.worker_pids()) == workers
    assert "SITE RELOAD refused" in gw.log()  # the admin's log says who tried what


@pytest.mark.parametrize("started_as", ["python -c", "a link named cgirt"])
def test_a_process_whose_command_line_names_cgirt_is_not_signalled(
        gateway_factory: Callable[..., Gateway], tmp_path: Path, started_as: str) -> None:
    gw = gateway_factory()
    program = sys.executable
    if started_as == "a link named cgirt":
        (tmp_path / "bin").mkdir()
        program = str(tmp_path / "bin" / "cgirt")
        os.symlink(sys.executable, program)
    # Its command line even says `cgirt serve --site` this very site.
    noter = SignalNoter(tmp_path / "noter", [program, "-c", SIGNAL_NOTER, "cgirt", "serve",
                                             "--site", str(gw.site)])
    try:
        assert "which is not a cgirt runner" in refused(gw, noter.pid)
        assert noter.settle() == []
    finally:
        noter.stop()


def test_a_dead_pid_is_refused(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait(timeout=30)
    assert "which is not running" in refused(gw, gone.pid)


def test_a_pid_file_without_a_pid_is_refused(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory()
    (gw.site / ".cgirt").mkdir(exist_ok=True)
    (gw.site / ".cgirt" / "runner.pid").write_text("1\n")  # init: never a runner's
    with pytest.raises(ftplib.error_perm, match="550 SITE RELOAD refused: runner.pid holds "
                                                "no process id; nothing was signalled."):
        reload(gw)
