"""`cgirt reopen-logs` and `cgirt reload` against a real `cgirt host` master serving several
sites (logrotate's recipe against `cgirt serve` runners: test_logs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.integration.test_cli import cgirt
from tests.integration.test_host import Stack, stack  # noqa: F401 - the fixture
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration


def test_a_host_master_reopens_its_logs_and_reloads_only_the_sites_given(
        stack: Callable[..., Stack]) -> None:
    s = stack("", a='pm = "static"\nworkers = 1', b='pm = "static"\nworkers = 1')
    assert s.host is not None
    old_a = wait_for(lambda: len(s.workers("a")) == 1 and set(s.workers("a")), 30, "a's workers")
    old_b = wait_for(lambda: len(s.workers("b")) == 1 and set(s.workers("b")), 30, "b's workers")
    for name in "ab":
        assert (s.sites[name] / ".cgirt" / "runner.pid").read_text() == f"{s.host.pid}\n"
    reopened = cgirt("reopen-logs", str(s.sites["a"]), str(s.sites["b"]))
    assert (reopened.returncode, reopened.stdout, reopened.stderr) == (0, "", "")
    wait_for(lambda: "SIGUSR1: log files reopened" in s.log(), 30, "the host to reopen logs")
    # An edit the admin has not applied yet (b's): `cgirt reload a` must not apply it.
    s.config.write_text(s.config.read_text().replace("workers = 1", "workers = 1\n"
                                                     "max_requests = 777", 2))
    reloaded = cgirt("reload", str(s.sites["a"]))
    assert (reloaded.returncode, reloaded.stdout, reloaded.stderr) == (0, "", "")
    wait_for(lambda: len(new := set(s.workers("a"))) == 1 and not new & old_a, 30,
             "a's worker replaced")
    assert "site a: reload asked; replacing its workers" in s.log()
    assert set(s.workers("b")) == old_b
    assert "SIGHUP" not in s.log()


def test_a_fork_of_a_host_master_is_not_taken_for_it(stack: Callable[..., Stack]) -> None:
    """Its zygote, and the workers forked from that, have the master's command line and run
    as root until they drop to the site's owner (for good here: the sites are root's), a
    worker with SIGUSR1's default action: to end. A tenant of b naming one of a's workers
    in b's runner.pid must not have root end it."""
    s = stack("", a='pm = "static"\nworkers = 1', b='pm = "static"\nworkers = 1')
    assert s.host is not None
    old_a = wait_for(lambda: len(s.workers("a")) == 1 and set(s.workers("a")), 30, "a's workers")
    (worker,) = old_a
    pid_file = s.sites["b"] / ".cgirt" / "runner.pid"
    for pid in (worker, s.host.zygote):
        pid_file.write_text(f"{pid}\n")
        done = cgirt("reopen-logs", str(s.sites["b"]))
        assert (done.returncode, done.stdout) == (5, "")
        assert done.stderr == (f"cgirt: {s.sites['b']}: not signalled: runner.pid names pid "
                               f"{pid}, which is a fork of a runner, not its master\n")
    assert set(s.workers("a")) == old_a
    assert Path(f"/proc/{worker}").exists() and Path(f"/proc/{s.host.zygote}").exists()
