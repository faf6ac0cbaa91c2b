"""SITE RELOAD reaches a site served by `cgirt host`: that site's workers are replaced
gracefully, the other sites' are not. Real host master, nginx, gateway and ftplib."""

from __future__ import annotations

import concurrent.futures
import ftplib
import json
import os
import signal
from typing import Callable

import pytest
from ftp_harness import Gateway

from tests.integration.test_host import Stack, stack  # noqa: F401 - the fixture
from tests.support.http import fetch
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration


def test_site_reload_replaces_only_that_sites_workers_under_cgirt_host(
        stack: Callable[..., Stack], gateway_factory: Callable[..., Gateway]) -> None:
    s = stack("", a='pm = "static"\nworkers = 2', b='pm = "static"\nworkers = 1')
    assert s.host is not None
    old_a = wait_for(lambda: len(s.workers("a")) == 2 and set(s.workers("a")), 30, "a's workers")
    old_b = wait_for(lambda: len(s.workers("b")) == 1 and set(s.workers("b")), 30, "b's workers")
    pid_file = s.sites["a"] / ".cgirt" / "runner.pid"
    assert pid_file.read_text() == f"{s.host.pid}\n"  # the master of every site
    # An edit the admin has not applied yet (b's): the tenant's reload must not apply it
    # (a SIGHUP would, replacing b's workers and saying so).
    s.config.write_text(s.config.read_text().replace("workers = 1", "workers = 1\n"
                                                     "max_requests = 777"))
    gw = gateway_factory(site=s.sites["a"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(s.get, "a", "/cgi-bin/hold.py?r")
        wait_for(lambda: _active(s, "a") == 1, 30, "the request running")  # the host's status
        client = gw.ftp()
        try:
            reply = client.sendcmd("SITE RELOAD")
        finally:
            client.quit()
        assert f"Runner (pid {s.host.pid}) asked to reload" in reply
        wait_for(lambda: len(set(s.workers("a")) - old_a) == 2, 30, "a's new workers")
        # The request in flight finishes on its old worker.
        (s.sites["a"] / "cgi-bin" / "release-r").touch()
        resp = held.result()
        assert resp.status == 200 and int(resp.body.split()[1]) in old_a
    wait_for(lambda: len(new := set(s.workers("a"))) == 2 and not new & old_a, 30,
             "a's workers replaced")
    assert set(s.workers("b")) == old_b
    assert "SIGHUP" not in s.log()
    assert int(s.get("a", "/cgi-bin/pid.py").body) not in old_a
    assert "site a: reload asked; replacing its workers" in s.log()
    assert not (s.sites["a"] / ".cgirt" / "reload").exists()
    s.stop()
    assert not pid_file.exists()  # the master removes the pid files it wrote


def test_site_reload_of_a_site_the_host_does_not_serve_signals_no_host(
        stack: Callable[..., Stack], gateway_factory: Callable[..., Gateway]) -> None:
    s = stack("", unconfigured=("c",), a='pm = "static"\nworkers = 1')
    assert s.host is not None
    old_a = wait_for(lambda: len(s.workers("a")) == 1 and set(s.workers("a")), 30, "a's workers")
    # An edit the admin has not applied yet: a SIGHUP would apply it (and say so).
    s.config.write_text(s.config.read_text().replace("workers = 1", "workers = 1\n"
                                                     "max_requests = 777"))
    gw = gateway_factory(site=s.sites["c"])
    (s.sites["c"] / ".cgirt").mkdir(exist_ok=True)
    (s.sites["c"] / ".cgirt" / "runner.pid").write_text(f"{s.host.pid}\n")  # c's owner wrote it
    client = gw.ftp()
    try:
        with pytest.raises(ftplib.error_perm, match=rf"^550 SITE RELOAD refused: runner.pid "
                           rf"names pid {s.host.pid}, which is a cgirt runner of another site"):
            client.sendcmd("SITE RELOAD")
    finally:
        client.quit()
    assert not (s.sites["c"] / ".cgirt" / "reload").exists()
    # A signal sent after any SIGHUP is handled after it: once its line is logged, a
    # SIGHUP (a reload of the host's whole configuration) would have been too.
    os.kill(s.host.pid, signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: log files reopened" in s.log(), 30, "SIGUSR1 handled")
    assert "SIGHUP: site a changed" not in s.log()
    assert set(s.workers("a")) == old_a


def _active(s: Stack, name: str) -> int:
    resp = fetch(f"unix:{s.tmp}/.cgirt-host/status.sock", f"/status?json&pool={name}", timeout=10)
    return int(json.loads(resp.body)["pools"][0]["active processes"])
