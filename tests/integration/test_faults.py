"""Faults and the supervisor, through a real nginx in front of a real runner."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.http import fetch
from tests.support.procs import group_members, wait_for
from tests.support.servers import Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration


class Front:
    def __init__(self, runner: Runner, workdir: Path) -> None:
        self.runner = runner
        self.http = f"unix:{workdir / 'http.sock'}"
        self.nginx = Nginx(workdir, [nginx_server_block(runner.site, self.http, runner.address)])
        self.nginx.wait(self.http)

    def get(self, path: str, timeout: float = 60) -> tuple[int, bytes]:
        resp = fetch(self.http, path, timeout=timeout)
        return resp.status, resp.body

    def healthy(self) -> None:
        """The pool still answers correctly, on every worker."""
        for _ in range(self.runner.workers * 3):
            assert self.get("/cgi-bin/hello.py") == (200, b"Hello, world!\n")


@pytest.fixture
def front(site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> Iterator[Callable[..., Front]]:
    fronts: list[Front] = []

    def make(*extra: str, workers: int = 2) -> Front:
        runner = start_runner(site, *extra, workers=workers)
        workdir = tmp_path / f"nginx-{len(fronts)}"
        f = Front(runner, workdir)
        fronts.append(f)
        return f

    yield make
    for f in fronts:
        f.nginx.stop()


def replaced(runner: Runner, before: set[int]) -> None:
    wait_for(lambda: len(set(runner.worker_pids()) - before) >= 1
             and len(runner.worker_pids()) == runner.workers, 10, "a replacement worker")


def test_infinite_loop_with_bare_except_gets_504_and_its_worker_replaced(front: Callable[..., Front]) -> None:
    f = front("--timeout", "1", workers=2)
    before = set(f.runner.worker_pids())
    status, body = f.get("/cgi-bin/loop_forever.py")
    assert status == 504 and b"too long" in body
    replaced(f.runner, before)
    f.healthy()


@pytest.mark.parametrize("script", ["os_exit.py", "segfault.py"])
def test_worker_death_costs_only_that_request(front: Callable[..., Front], script: str) -> None:
    f = front(workers=2)
    before = set(f.runner.worker_pids())
    assert f.get(f"/cgi-bin/{script}")[0] == 502
    replaced(f.runner, before)
    f.healthy()


def test_memory_bomb_under_a_limit(front: Callable[..., Front], site: Path) -> None:
    f = front("--memory-limit", "400M", workers=2)
    before = set(f.runner.worker_pids())
    assert f.get("/cgi-bin/memory_bomb.py")[0] == 500
    assert "MemoryError" in (site / ".cgirt/logs/error.log").read_text()
    replaced(f.runner, before)  # recycled after a MemoryError
    f.healthy()


def test_client_disconnecting_mid_1gb_response(front: Callable[..., Front], site: Path) -> None:
    f = front(workers=1)
    worker = f.runner.worker_pids()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(f.http[5:])
    sock.sendall(b"GET /cgi-bin/huge.py HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = 0
    while received < 4 * 1024 * 1024:
        received += len(sock.recv(65536))
    sock.close()
    f.healthy()  # one worker: it must have stopped sending 1 GiB to serve this
    assert f.runner.worker_pids() == worker


def slow_requests(f: Front, n: int, seconds: float) -> tuple[list[threading.Thread], list[tuple[int, bytes]]]:
    results: list[tuple[int, bytes]] = []

    def one() -> None:
        results.append(f.get(f"/cgi-bin/slow.py?{seconds}"))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_sighup_replaces_workers_and_in_flight_requests_finish(front: Callable[..., Front]) -> None:
    f = front(workers=2)
    before = set(f.runner.worker_pids())
    threads, results = slow_requests(f, 2, 1.5)
    wait_for(lambda: _running_requests(f.runner) == 2, 10, "two requests in flight")
    os.kill(f.runner.pid, signal.SIGHUP)
    for t in threads:
        t.join(30)
    assert [r[0] for r in results] == [200, 200]
    wait_for(lambda: not set(f.runner.worker_pids()) & before and len(f.runner.worker_pids()) == 2,
             10, "all workers replaced")
    f.healthy()


def _running_requests(runner: Runner) -> int:
    """How many slow.py requests have started (each appends a line when it begins)."""
    log = runner.site / "cgi-bin" / "slow-started.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_sigterm_idle_stops_everything_quickly(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=3)
    started = time.monotonic()
    assert runner.proc.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 3
    assert not group_members(runner.pid)


def test_sigterm_busy_lets_the_request_finish(front: Callable[..., Front]) -> None:
    f = front(workers=2)
    threads, results = slow_requests(f, 1, 1.0)
    wait_for(lambda: _running_requests(f.runner) == 1, 10, "a request in flight")
    started = time.monotonic()
    assert f.runner.proc.stop(signal.SIGTERM, timeout=20) == 0
    threads[0].join(10)
    assert results and results[0][0] == 200
    assert time.monotonic() - started < 10
    assert not group_members(f.runner.pid)


def test_sigint_stops_a_stuck_request_within_a_bound(front: Callable[..., Front]) -> None:
    f = front("--timeout", "60", workers=1)
    threads, results = slow_requests(f, 1, 30)
    wait_for(lambda: _running_requests(f.runner) == 1, 10, "a request in flight")
    started = time.monotonic()
    f.runner.proc.stop(signal.SIGINT, timeout=10)
    assert time.monotonic() - started < 5
    assert not group_members(f.runner.pid)
    threads[0].join(10)
    assert results and results[0][0] == 502


def test_recycling_after_n_requests(site: Path, start_runner: Callable[..., Runner]) -> None:
    from tests.support.fcgi import cgi_params, request
    runner = start_runner(site, "--max-requests", "5", "--max-requests-jitter", "2", workers=1)
    pids = [request(runner.address, cgi_params("/cgi-bin/pid.py")).body.strip() for _ in range(20)]
    assert len(set(pids)) >= 3
    assert all(pids.count(p) <= 7 for p in set(pids))


def test_boot_failure_halts_instead_of_respawning(site: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
         f"unix:{tmp_path / 'r.sock'}", "--memory-limit", "1M"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "fail" in proc.stderr and "boot" in proc.stderr


def test_kill_9_of_the_master_leaves_no_worker(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=3)
    workers = runner.worker_pids()
    os.kill(runner.pid, signal.SIGKILL)
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() and "Z" not in
                             Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
                             for p in workers), 5, "workers to die with their master")


def test_a_script_exiting_with_the_boot_failure_status_does_not_halt_the_runner(
        front: Callable[..., Front], site: Path) -> None:
    # Exit status 3 is what a worker uses to report a failed boot; from a script of a
    # booted worker it is just a crash, which costs only its own request.
    (site / "cgi-bin" / "exit3.py").write_text("import os\nos._exit(3)\n")
    f = front(workers=2)
    for _ in range(4):
        before = set(f.runner.worker_pids())
        assert f.get("/cgi-bin/exit3.py")[0] == 502
        replaced(f.runner, before)
    assert f.runner.proc.alive()
    f.healthy()


@pytest.mark.parametrize("mode", ["persistent", "fork"])
def test_a_child_holding_stdout_keeps_the_response_open_until_the_deadline(
        front: Callable[..., Front], mode: str) -> None:
    f = front("--timeout", "2", "--mode", mode, workers=1)
    started = time.monotonic()
    status, body = f.get("/cgi-bin/background_forever.py", timeout=60)
    took = time.monotonic() - started
    # As under Apache: the response began, so the deadline cuts it rather than a 504.
    assert (status, body) == (200, b"before the deadline\n")
    assert 2.0 <= took < 30.0
    f.healthy()


@pytest.mark.parametrize("mode", ["persistent", "fork"])
def test_waiting_for_a_child_past_the_deadline_is_a_504(front: Callable[..., Front], mode: str) -> None:
    f = front("--timeout", "2", "--mode", mode, workers=1)
    status, body = f.get("/cgi-bin/child_hangs.py", timeout=60)
    assert status == 504 and b"too long" in body
    f.healthy()
