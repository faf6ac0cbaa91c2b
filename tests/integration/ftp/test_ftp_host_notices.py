"""A `cgirt host` as the FTP gateway's runner host: its status address takes the gateway's
signed notices for each of its sites, checked with that site's secret.

Real host master (sites and status on unix sockets), nginx, gateway and ftplib. Whether a
worker stats past the attribute cache is asked of the worker itself: a script reads the
runner's own forced-stat window (runner/freshness.py) in the process that serves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from ftp_harness import Gateway, store

from cgirt.notice import request
from tests.integration.test_host import Stack
from tests.support.http import fetch
from tests.support.procs import wait_for
from tests.support.servers import REPO

pytestmark = pytest.mark.integration

FORCED = ("import os, time\nfrom cgirt.runner import freshness\n"
          'print("Content-Type: text/plain")\nprint()\n'
          "print(freshness._strict_until > time.monotonic(), os.getpid())\n")
NEW = b'print("Content-Type: text/plain")\nprint()\nprint("new")\n'


class NoticeStack(Stack):
    """Each site's directory named for the site (a notice names the directory), a secret
    per site, the status on the host's default unix socket."""

    def __init__(self, tmp_path: Path, host_table: str, sites: dict[str, str]) -> None:
        super().__init__(tmp_path, host_table, sites)
        text = self.config.read_text()
        for name, site in list(self.sites.items()):
            named = site.rename(site.with_name(name))
            (named / "cgi-bin" / "forced.py").write_text(FORCED)
            text = text.replace(f'site = "{site}"', f'site = "{named}"')
            text = text.replace(f"@{name}.secret@", str(self.secret(name)))
            self.sites[name] = named
            secret = self.secret(name)
            secret.write_text(f"{name}-{os.urandom(16).hex()}\n")
            secret.chmod(0o600)
        self.config.write_text(text)

    def secret(self, name: str) -> Path:
        return self.tmp / f"{name}.secret"

    @property
    def status(self) -> str:
        return f"unix:{self.tmp}/.cgirt-host/status.sock"

    def forced(self, name: str) -> tuple[bool, int]:
        resp = self.get(name, "/cgi-bin/forced.py")
        assert resp.status == 200, resp.body
        flag, pid = resp.body.split()
        return flag == b"True", int(pid)


@pytest.fixture
def notice_stack(tmp_path: Path) -> Iterator[Callable[..., NoticeStack]]:
    made: list[NoticeStack] = []

    def make(host_table: str, **sites: str) -> NoticeStack:
        s = NoticeStack(tmp_path, host_table, sites)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def with_secret(name: str, extra: str = "") -> str:
    """A site's settings with its own publish_secret."""
    return f'publish_secret = "@{name}.secret@"\n{extra}'


def test_a_publish_is_acknowledged_by_the_host_before_the_226_and_forces_that_sites_stats(
        notice_stack: Callable[..., NoticeStack],
        gateway_factory: Callable[..., Gateway]) -> None:
    window = 'publish_window = "5m"'
    s = notice_stack("idle_timeout = 2", a=with_secret("a", window),
                     b=with_secret("b", f'pm = "static"\nworkers = 1\n{window}')).start()
    assert s.host is not None
    assert s.forced("a")[0] is False and s.forced("b")[0] is False
    gw = gateway_factory("--runners", f"a={s.status}", "--publish-secret", str(s.secret("a")),
                         "--notify-timeout", "2s", site=s.sites["a"])
    client = gw.ftp()
    try:
        reply = store(client, "cgi-bin/new.py", NEW)
        # The host had acknowledged when the client got its 226: its log says so already.
        assert "site a: publish notice 1" in s.log(), s.log()
        assert reply.startswith("226 Transfer complete"), reply
        assert s.forced("a")[0] is True  # that site's worker: its stats now ask the server
        assert s.forced("b")[0] is False  # another site's: untouched
        assert s.get("a", "/cgi-bin/new.py").body == b"new\n"
        # A worker started later (on demand) within publish_window forces its stats too.
        _, first = s.forced("a")
        wait_for(lambda: not s.workers("a"), 30, "a's idle worker to exit")
        forced, later = s.forced("a")
        assert later != first and forced is True
        # And after a SIGHUP that gives the site a new pool (its socket made anew).
        s.config.write_text(s.config.read_text().replace(
            f'listen = "{s.backend("a")}"', f'listen = "{s.backend("a")}"\nsocket_mode = "666"'))
        s.reload()
        wait_for(lambda: later not in s.workers("a"), 30, "a's worker replaced")
        forced, newest = s.forced("a")
        assert newest != later and forced is True
        # The negative control: a host that does not answer holds the 226 for notify_timeout
        # and is named in it.
        os.kill(s.host.pid, signal.SIGSTOP)
        try:
            reply = store(client, "cgi-bin/new2.py", NEW)
        finally:
            os.kill(s.host.pid, signal.SIGCONT)
        assert reply.startswith("226-") and "NOT yet live on every runner host" in reply, reply
        assert f"{s.status}: no answer within 2 s" in reply, reply
    finally:
        client.quit()


def test_a_forged_or_foreign_notice_is_refused_and_changes_nothing(
        notice_stack: Callable[..., NoticeStack],
        gateway_factory: Callable[..., Gateway]) -> None:
    s = notice_stack("", a=with_secret("a", 'pm = "static"\nworkers = 1'),
                     c='pm = "static"\nworkers = 1').start()
    assert s.forced("a")[0] is False

    def post(notice: bytes) -> tuple[int, str]:
        line, auth = notice.split(b"\r\n")[:2]
        resp = fetch(s.status, line.split()[1].decode(), method="POST",
                     headers={"Authorization": auth.decode().partition(": ")[2]}, timeout=10)
        return resp.status, resp.body.decode()

    forged = request(b"not the secret of site a", "a")
    assert post(forged) == (403, "publish notice refused: bad or missing signature\n")
    secret_a = s.secret("a").read_bytes().strip()
    status, body = post(request(secret_a, "c"))  # served, but takes no notices
    assert status == 404 and "this host serves no site 'c' that takes notices" in body, body
    status, body = post(request(secret_a, "elsewhere"))
    assert status == 404 and "serves no site 'elsewhere'" in body, body
    assert s.forced("a")[0] is False and s.forced("c")[0] is False
    assert ": publish notice 1" not in s.log()  # the master's line for a notice taken
    assert "publish notice for site a refused: bad or missing signature" in s.log()
    # Through the gateway: the refusal is named in the FTP reply.
    gw = gateway_factory("--runners", s.status, "--publish-secret", str(s.secret("a")),
                         site=s.sites["c"])
    client = gw.ftp()
    try:
        reply = store(client, "cgi-bin/new.py", NEW)
    finally:
        client.quit()
    assert reply.startswith("226-") and "NOT yet live on every runner host" in reply, reply
    assert "refused (404 Not Found: publish notice refused: this host serves no site 'c'" \
        in reply, reply


def test_site_reload_over_ftp_replaces_that_sites_workers_only(
        notice_stack: Callable[..., NoticeStack],
        gateway_factory: Callable[..., Gateway]) -> None:
    s = notice_stack("", a=with_secret("a", 'pm = "static"\nworkers = 2'),
                     b=with_secret("b", 'pm = "static"\nworkers = 1')).start()
    old_a = wait_for(lambda: len(s.workers("a")) == 2 and set(s.workers("a")), 30, "a's workers")
    old_b = wait_for(lambda: len(s.workers("b")) == 1 and set(s.workers("b")), 30, "b's workers")
    gw = gateway_factory("--runners", f"a={s.status}", "--publish-secret", str(s.secret("a")),
                         site=s.sites["a"])
    client = gw.ftp()
    try:
        reply = client.sendcmd("SITE RELOAD")
    finally:
        client.quit()
    assert reply == "200 Runners on 1 of 1 hosts asked to reload their workers.", reply
    wait_for(lambda: len(new := set(s.workers("a"))) == 2 and not new & old_a, 30,
             "a's workers replaced")
    assert set(s.workers("b")) == old_b
    assert "site a: reload notice; replacing its workers" in s.log()
    assert not (s.sites["a"] / ".cgirt" / "reload").exists()  # the notice, not the file


def test_one_status_shows_every_host(
        tmp_path: Path, notice_stack: Callable[..., NoticeStack]) -> None:
    hosts = []
    for k in (1, 2):
        (tmp_path / f"h{k}").mkdir()
        s = NoticeStack(tmp_path / f"h{k}", "", {"a": 'pm = "static"\nworkers = 1'})
        hosts.append(s)
        s.start()
    try:
        workers = [wait_for(lambda: s.workers("a"), 30, "a worker") for s in hosts]
        both = ",".join(s.status for s in hosts)
        out = subprocess.run([sys.executable, "-m", "cgirt", "status", "--address", both,
                              "--full"], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert out.returncode == 0, out.stderr
        for s, pids in zip(hosts, workers):
            assert f"pool:                 a@{s.status}\n" in out.stdout, out.stdout
            for pid in pids:
                assert f"pid:                      {pid}\n" in out.stdout
    finally:
        for s in hosts:
            s.stop()
