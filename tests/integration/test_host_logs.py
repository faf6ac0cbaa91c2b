"""Site logs under `cgirt host`: bounded and rotated as under `cgirt serve`, reopened on SIGUSR1
with the host's own log, behind a real nginx."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

import pytest

from tests.integration.test_host import Stack, stack  # noqa: F401 - the fixture
from tests.integration.test_logs import FLOOD
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

LOGGED = """\
import os, sys
sys.stderr.write("request %s\\n" % os.environ["QUERY_STRING"])
print("Content-Type: text/plain")
print()
print(os.getpid())
"""


def logs(s: Stack, name: str) -> Path:
    return s.sites[name] / ".cgirt" / "logs"


def test_a_stderr_flood_stays_within_the_bound_and_its_site(stack: Callable[..., Stack]) -> None:
    # A bound the master can follow on a loaded machine: a writer has a whole bound of
    # output (tens of milliseconds of a flood) to be told to reopen before it drops lines.
    max_bytes, backups, lines = 1_000_000, 2, 300_000  # 30 MB of stderr
    s = stack("", a=f"log_max_size = {max_bytes}\nlog_backups = {backups}\ntimeout = 120", b="")
    (s.sites["a"] / "cgi-bin" / "flood.py").write_text(FLOOD)
    resp = s.get("a", f"/cgi-bin/flood.py?{lines}")
    assert resp.status == 200 and resp.body == b"flooded\n"
    names = sorted(p.name for p in logs(s, "a").iterdir() if p.name.startswith("error.log"))
    assert names == ["error.log", "error.log.1", "error.log.2"]
    sizes = {n: (logs(s, "a") / n).stat().st_size for n in names}
    assert all(size <= 2 * max_bytes + 1000 for size in sizes.values()), sizes
    # Far below what was printed: the bound holds for the flood as a whole.
    assert sum(sizes.values()) <= (backups + 1) * (2 * max_bytes + 1000) < lines * 100 / 4
    text = "".join((logs(s, "a") / n).read_text() for n in names)
    assert "flood done" in text and "lines dropped" not in text
    # The other site's logs never saw it.
    assert s.get("b", "/cgi-bin/hello.py").status == 200
    assert not (logs(s, "b") / "error.log.1").exists()
    assert "x" * 99 not in (logs(s, "b") / "error.log").read_text()


def test_sigusr1_reopens_every_sites_logs_and_the_hosts_own(stack: Callable[..., Stack],
                                                           tmp_path: Path) -> None:
    own = tmp_path / "master.log"
    static = 'pm = "static"\nworkers = 1'
    s = stack(f'log_file = "{own}"', a=static, b=static)
    assert s.host is not None
    wait_for(lambda: len(s.workers("a")) == 1 and len(s.workers("b")) == 1, 30, "the workers")
    for name in ("a", "b"):
        (s.sites[name] / "cgi-bin" / "logged.py").write_text(LOGGED)
    first = {n: s.get(n, f"/cgi-bin/logged.py?{n}-before").body for n in ("a", "b")}
    assert "cgirt host: 2 sites" in own.read_text()
    # What logrotate does: rename, then SIGUSR1.
    for name in ("a", "b"):
        for log in ("error.log", "access.log"):
            (logs(s, name) / log).rename(logs(s, name) / f"{log}.1")
    own.rename(tmp_path / "master.log.1")
    s.host.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: own.exists() and "SIGUSR1: log files reopened" in own.read_text(), 30,
             "the host's own log reopened")
    for name in ("a", "b"):
        resp = s.get(name, f"/cgi-bin/logged.py?{name}-after")
        assert resp.status == 200 and resp.body == first[name]  # the same worker, never restarted
        old = (logs(s, name) / "error.log.1").read_text()
        new = (logs(s, name) / "error.log").read_text()
        assert f"request {name}-before" in old and f"request {name}-after" not in old
        assert f"request {name}-after" in new and f"request {name}-before" not in new
        access = logs(s, name) / "access.log"  # written once the response has ended
        wait_for(lambda: f"{name}-after" in access.read_text(), 30, f"{name}'s access line")
        assert f"{name}-after" not in (logs(s, name) / "access.log.1").read_text()
    assert s.host.proc.alive()
