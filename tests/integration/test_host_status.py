"""The status of `cgirt host`: one admin-only address, every site a pool, behind a real nginx.

Workers are counted from /proc (the Stack helper of test_host), never from the status itself.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.integration.test_host import Stack, stack  # noqa: F401 - the fixture
from tests.support.http import HttpResponse, fetch
from tests.support.procs import wait_for
from tests.support.servers import REPO

pytestmark = pytest.mark.integration


def address(s: Stack) -> str:
    return f"unix:{s.tmp}/.cgirt-host/status.sock"  # beside cgirt.toml, by default


def pools(s: Stack, query: str = "") -> dict[str, dict[str, Any]]:
    resp = fetch(address(s), "/status?json&full" + query, timeout=10)
    assert resp.status == 200 and resp.header("Content-Type") == "application/json", resp.body
    return {p["pool"]: p for p in json.loads(resp.body)["pools"]}


def metrics(s: Stack) -> dict[tuple[str, str], float]:
    resp = fetch(address(s), "/status?openmetrics", timeout=10)
    assert (resp.header("Content-Type") or "").startswith("application/openmetrics-text")
    return {(m.name, m.labels["pool"]): m.value
            for family in text_string_to_metric_families(resp.body.decode()) for m in family.samples}


def cgirt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgirt", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_every_site_is_a_pool_of_the_hosts_status_under_load(stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 3", a="max_workers = 2", b='pm = "static"\nworkers = 2',
              c='pm = "dynamic"\nmin_spare = 1\nmax_workers = 2\nslowlog_timeout = 1')
    assert stat.S_IMODE(os.stat(address(s)[5:]).st_mode) == 0o600
    assert fetch(address(s), "/ping", timeout=10).body == b"pong\n"
    wait_for(lambda: (p := pools(s))["b"]["idle processes"] == 2 and p["c"]["idle processes"] == 1,
             30, "b's static and c's spare workers booted")
    before = pools(s)
    assert list(before) == ["a", "b", "c"]
    assert [p["process manager"] for p in before.values()] == ["ondemand", "static", "dynamic"]
    assert before["a"]["total processes"] == 0 and before["a"]["processes"] == []
    assert sorted(w["pid"] for w in before["b"]["processes"]) == sorted(s.workers("b"))

    # Three requests to a: its two workers (its max_workers) busy, the third queued on its socket.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        held = [pool.submit(s.get, "a", "/cgi-bin/hold.py?a") for _ in range(3)]
        slow = pool.submit(s.get, "c", "/cgi-bin/slowpid.py?2")  # past c's slowlog_timeout
        try:
            wait_for(lambda: (p := pools(s)["a"])["active processes"] == 2 and p["listen queue"] == 1,
                     30, "two of a's requests running and one queued")
            now = pools(s)
            assert sorted(w["pid"] for w in now["a"]["processes"]) == sorted(s.workers("a"))
            assert {w["request URI"] for w in now["a"]["processes"]} == {"/cgi-bin/hold.py?a"}
            assert now["a"]["max children reached"] >= 1 and now["a"]["listen queue len"] == 256
            assert now["b"]["active processes"] == 0 and now["b"]["max children reached"] == 0
            text = fetch(address(s), "/status", timeout=10).body.decode()
            assert "pool:                 a\nprocess manager:      ondemand\n" in text
            assert "pool:                 b\n" in text and "pool:                 c\n" in text
            m = metrics(s)
            assert m[("cgirt_active_processes", "a")] == 2 and m[("cgirt_listen_queue", "a")] == 1
            assert m[("cgirt_total_processes", "b")] == 2
            only_b = pools(s, "&pool=b")
            assert list(only_b) == ["b"]
        finally:
            (s.sites["a"] / "cgi-bin" / "release-a").touch()
        assert [f.result().status for f in held] == [200, 200, 200]
        assert slow.result().status == 200
    after = pools(s)
    assert after["a"]["accepted conn"] == 3 and after["c"]["slow requests"] == 1
    assert "slowpid.py" in (s.sites["c"] / ".cgirt" / "logs" / "slow.log").read_text()
    # a's workers exit when idle; what they served still counts.
    wait_for(lambda: not s.workers("a"), 30, "a's idle workers to exit")
    assert pools(s)["a"]["accepted conn"] == 3 and pools(s)["a"]["total processes"] == 0
    assert metrics(s)[("cgirt_accepted_connections_total", "a")] == 3

    # Bad input: a clear answer.
    missing = fetch(address(s), "/status?pool=nowhere", timeout=10)
    assert missing.status == 404 and b"no pool 'nowhere'" in missing.body


def test_cgirt_status_finds_the_hosts_address_in_its_config(stack: Callable[..., Stack]) -> None:
    s = stack("", a="", b="")
    assert s.get("a", "/cgi-bin/pid.py").status == 200
    out = cgirt("status", "--config", str(s.config), "a", "--json")
    assert out.returncode == 0, out.stderr
    [a] = json.loads(out.stdout)["pools"]
    assert (a["pool"], a["accepted conn"]) == ("a", 1)
    out = cgirt("status", "--config", str(s.config))
    assert out.returncode == 0 and "pool:                 a\n" in out.stdout
    assert "pool:                 b\n" in out.stdout
    out = cgirt("status", "--address", address(s), "--openmetrics")
    assert {f.name for f in text_string_to_metric_families(out.stdout)} >= {"cgirt_listen_queue"}
    out = cgirt("status", "--config", str(s.config), "nowhere")
    assert out.returncode == 4 and "no pool 'nowhere'" in out.stderr


def test_host_status_on_a_configured_address(stack: Callable[..., Stack], tmp_path: Path) -> None:
    stack(f'status_listen = "unix:{tmp_path}/admin.sock"\nstatus_socket_mode = "640"', a="")
    assert stat.S_IMODE(os.stat(tmp_path / "admin.sock").st_mode) == 0o640
    assert fetch(f"unix:{tmp_path}/admin.sock", "/ping", timeout=10).status == 200
    assert not (tmp_path / ".cgirt-host").exists()


def test_host_status_off(stack: Callable[..., Stack], tmp_path: Path) -> None:
    s = stack('status_listen = "off"', a="")
    assert s.get("a", "/cgi-bin/pid.py").status == 200
    assert not (tmp_path / ".cgirt-host").exists()
    out = cgirt("status", "--config", str(s.config))
    assert out.returncode == 2 and 'status_listen is "off" in [host]' in out.stderr
    # A site named: its own runner's status is asked (none runs here).
    out = cgirt("status", "--config", str(s.config), "a")
    assert out.returncode == 4 and f"no status at unix:{s.sites['a']}/.cgirt/status.sock" in out.stderr


def test_a_status_address_that_cannot_be_bound_stops_the_start(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    config = tmp_path / "cgirt.toml"
    config.write_text(f'[host]\nstatus_listen = "unix:{tmp_path}/missing/status.sock"\n'
                      f'allow_root_site = true\n\n[sites.a]\nsite = "{site}"\n'
                      f'listen = "unix:{tmp_path}/a.sock"\n')
    out = cgirt("host", "--config", str(config))
    assert out.returncode == 4, out.stderr
    assert f"cannot listen on unix:{tmp_path}/missing/status.sock" in out.stderr
    assert not (tmp_path / "a.sock").exists()
