"""The runner's status against a live runner: requests held running while the status is read
in all three formats, the listen queue filled for real, the ping, `cgirt status`."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support.fcgi import Response, cgi_params, request
from tests.support.http import fetch
from tests.support.procs import wait_for
from tests.support.servers import DEPLOY, REPO, Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration


def status_address(site: Path) -> str:
    return f"unix:{site}/.cgirt/status.sock"


def pool(site: Path, full: bool = True) -> dict[str, Any]:
    resp = fetch(status_address(site), "/status?json" + ("&full" if full else ""), timeout=10)
    assert resp.status == 200 and resp.header("Content-Type") == "application/json"
    pools = json.loads(resp.body)["pools"]
    assert len(pools) == 1
    return dict(pools[0])


def metrics(site: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = fetch(status_address(site), "/status?openmetrics&full", timeout=10)
    assert resp.status == 200
    assert (resp.header("Content-Type") or "").startswith("application/openmetrics-text")
    text = resp.body.decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pool"))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Held:
    """Requests to hold.py in threads, ended when the test says so."""

    def __init__(self, runner: Runner, site: Path, name: str, count: int) -> None:
        self.release = site / "cgi-bin" / f"release-{name}"
        self.responses: list[Response] = []
        params = cgi_params("/cgi-bin/hold.py", name, SCRIPT_FILENAME=f"{site}/cgi-bin/hold.py")
        self.threads = [threading.Thread(target=lambda: self.responses.append(
            request(runner.address, params, timeout=90))) for _ in range(count)]
        for t in self.threads:
            t.start()

    def end(self) -> list[Response]:
        self.release.touch()
        for t in self.threads:
            t.join(timeout=90)
        return self.responses


@pytest.fixture
def runner(site: Path, start_runner: Callable[..., Runner]) -> Iterator[Runner]:
    yield start_runner(site, "--timeout", "90", workers=2)


def test_status_follows_requests_under_load(site: Path, runner: Runner) -> None:
    assert stat.S_IMODE(os.stat(f"{site}/.cgirt/status.sock").st_mode) == 0o600
    # Booting workers are "Starting"; the helper's connect probe waits in the queue till then.
    wait_for(lambda: (p := pool(site))["idle processes"] == 2 and p["listen queue"] == 0, 30,
             "both workers booted")
    before = pool(site)
    assert (before["pool"], before["process manager"]) == ("site", "static")  # the directory's name
    assert (before["active processes"], before["idle processes"], before["total processes"],
            before["accepted conn"], before["listen queue"]) == (0, 2, 2, 0, 0)
    assert sorted(p["pid"] for p in before["processes"]) == sorted(runner.worker_pids())

    # Two requests take both workers; a third waits in the socket's accept queue.
    held = Held(runner, site, "a", 3)
    try:
        wait_for(lambda: (p := pool(site))["active processes"] == 2 and p["listen queue"] == 1,
                 30, "two requests running and one queued")
        now = pool(site)
        assert now["idle processes"] == 0 and now["accepted conn"] == 2
        assert now["max listen queue"] >= 1 and now["listen queue len"] == 256
        for p in now["processes"]:
            assert (p["state"], p["request method"], p["request URI"]) == ("Running", "GET", "/cgi-bin/hold.py?a")
            assert p["script"] == f"{site}/cgi-bin/hold.py" and p["request duration"] > 0
        text = fetch(status_address(site), "/status", timeout=10).body.decode()
        assert "pool:                 site\n" in text
        assert "active processes:     2\n" in text and "listen queue:         1\n" in text
        m = metrics(site)
        assert m[("cgirt_active_processes", ())] == 2 and m[("cgirt_listen_queue", ())] == 1
        assert sum(v for (name, _), v in m.items() if name == "cgirt_worker_busy") == 2
        assert m[("cgirt_accepted_connections_total", ())] == 2
        duration = m[("cgirt_worker_request_duration_seconds", (("pid", str(now["processes"][0]["pid"])),))]
        assert duration > 0
    finally:
        responses = held.end()
    assert [r.status for r in responses] == [200, 200, 200]

    wait_for(lambda: pool(site)["active processes"] == 0, 30, "the workers idle again")
    after = pool(site)
    assert after["accepted conn"] == 3 and after["idle processes"] == 2
    assert after["max active processes"] == 2 and after["max children reached"] >= 1
    assert after["max listen queue"] >= 1 and after["listen queue"] == 0
    assert sum(p["requests"] for p in after["processes"]) == 3
    for p in after["processes"]:
        assert p["state"] == "Idle" and p["request URI"] == "/cgi-bin/hold.py?a"  # the last one
        assert p["last request cpu seconds"] > 0 and p["peak rss bytes"] > 1_000_000
    m = metrics(site)
    assert m[("cgirt_max_active_processes", ())] == 2 and m[("cgirt_idle_processes", ())] == 2


def test_requests_of_replaced_workers_still_count(site: Path, runner: Runner) -> None:
    for _ in range(3):
        assert request(runner.address, cgi_params("/cgi-bin/hello.py")).status == 200
    old = set(runner.worker_pids())
    os.kill(runner.pid, 1)  # SIGHUP: every worker replaced
    wait_for(lambda: not old & set(p["pid"] for p in pool(site)["processes"]), 30, "new workers")
    assert pool(site)["accepted conn"] == 3


def test_ping_and_only_on_the_admin_socket(site: Path, runner: Runner) -> None:
    resp = fetch(status_address(site), "/ping", timeout=10)
    assert (resp.status, resp.body) == (200, b"pong\n")
    assert fetch(status_address(site), "/status?xml", timeout=10).status == 400
    # The public FastCGI socket does not answer HTTP, status or not.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(runner.address[5:])
        s.sendall(b"GET /status HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: s.recv(4096), b""))
    assert b"pool" not in answer and b"HTTP/" not in answer


def cgirt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgirt", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_cgirt_status_command(site: Path, runner: Runner, tmp_path: Path) -> None:
    out = cgirt("status", str(site))
    assert out.returncode == 0, out.stderr
    assert "pool:                 site\n" in out.stdout and "total processes:      2\n" in out.stdout
    assert "pid:" not in out.stdout
    out = cgirt("status", str(site), "--json", "--full")
    assert out.returncode == 0
    assert len(json.loads(out.stdout)["pools"][0]["processes"]) == 2
    out = cgirt("status", str(site), "--openmetrics")
    families = {f.name for f in text_string_to_metric_families(out.stdout)}
    assert {"cgirt_accepted_connections", "cgirt_listen_queue"} <= families
    # Bad input: a clear line and its exit status.
    out = cgirt("status", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = cgirt("status", str(site), "--json", "--openmetrics")
    assert out.returncode == 2
    runner.stop()
    out = cgirt("status", str(site))
    assert out.returncode == 4 and "no status at unix:" in out.stderr and out.stdout == ""


def test_status_on_a_configured_address_and_off(site: Path, start_runner: Callable[..., Runner],
                                                tmp_path: Path) -> None:
    config = tmp_path / "cgirt.toml"
    config.write_text(f'[sites.shop]\nsite = "{site}"\nstatus_listen = "127.0.0.1:0"\n')
    runner = start_runner(site, "--config", str(config), "--name", "shop")
    line = wait_for(lambda: next((ln for ln in runner.proc.output().splitlines()
                                  if "cgirt: status on " in ln), None), 20, "the status address")
    address = str(line).rsplit(" ", 1)[1]
    assert address.startswith("127.0.0.1:") and not (site / ".cgirt" / "status.sock").exists()
    assert fetch(address, "/ping", timeout=10).body == b"pong\n"
    out = cgirt("status", "--address", address, "--json")
    assert json.loads(out.stdout)["pools"][0]["pool"] == "shop"
    runner.stop()
    off = start_runner(site, "--status-listen", "off")
    assert not (site / ".cgirt" / "status.sock").exists()
    out = cgirt("status", "--config", str(config), "shop")  # asks the configured address: nobody
    assert out.returncode == 4
    off.stop()


def test_a_second_runner_of_the_site_leaves_the_status_to_the_first(
        site: Path, runner: Runner, start_runner: Callable[..., Runner], tmp_path: Path) -> None:
    """mod_fcgid starts several runners for one site: the first serves the default status,
    the others say at start that they serve none, and run."""
    second = start_runner(site, name="second")
    wait_for(lambda: "this runner serves no status" in second.proc.output(), 20, "the warning")
    assert "socket in use by another process" in second.proc.output()
    assert request(second.address, cgi_params("/cgi-bin/hello.py")).status == 200
    assert sorted(p["pid"] for p in pool(site)["processes"]) == sorted(runner.worker_pids())
    second.stop()
    assert pool(site)["pool"] == "site"  # the second did not take the first's socket away
    # An address the admin set must work: in use, the runner does not start.
    out = subprocess.run([sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
                          f"unix:{tmp_path}/third.sock", "--status-listen", status_address(site)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 4 and "socket in use by another process" in out.stderr
    assert not (tmp_path / "third.sock").exists()


def test_status_routed_through_nginx_by_the_admin(site: Path, runner: Runner, tmp_path: Path) -> None:
    """deploy/nginx-cgirt-status.conf, as INSTALL.md shows it, inside the site's server block."""
    location = (DEPLOY / "nginx-cgirt-status.conf").read_text().replace(
        "{status_socket}", f"{site}/.cgirt/status.sock")
    http = f"unix:{tmp_path}/http.sock"
    block = nginx_server_block(site, http, runner.address).rstrip()
    assert block.endswith("}")
    nginx = Nginx(tmp_path / "nginx", [block[:-1] + location + "}\n"])
    try:
        nginx.wait(http)
        assert fetch(http, "/cgirt/ping").body == b"pong\n"
        resp = fetch(http, "/cgirt/status?json&full")
        assert resp.status == 200 and json.loads(resp.body)["pools"][0]["total processes"] == 2
        page = fetch(http, "/cgirt/status?html").body.decode()
        assert 'fetch("?json&full"' in page  # the page asks for its data where it was served
        assert fetch(http, "/cgi-bin/hello.py").status == 200  # the site itself, unchanged
        assert fetch(http, "/status").status == 404  # only where the admin put it
    finally:
        nginx.stop()
