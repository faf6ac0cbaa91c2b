"""Faults injected into a real stack (issue 6, part 2).

Already proven elsewhere, and not repeated here: a worker killed by its own script
(os._exit, segfault), a stuck script's deadline, a memory bomb, a client closing early on a
1 GiB response, and kill -9 of an idle master (tests/integration/test_faults.py); clients
killed mid-upload, ABOR, a client gone before the 226 (ftp/test_ftp_killed_clients.py).
"""

from __future__ import annotations

import ftplib
import io
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.ftp.ftp_harness import Gateway, start_gateway, stop_gateway
from tests.support.fcgi import cgi_params, request
from tests.support.http import fetch
from tests.support.procs import group_members, wait_for
from tests.support.servers import IS_ROOT, Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration

HELLO = (200, b"Hello, world!\n")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[Callable[[Runner], str]]:
    started: list[Nginx] = []

    def make(runner: Runner) -> str:
        http = f"unix:{tmp_path / f'http{len(started)}.sock'}"
        nginx = Nginx(tmp_path / f"nginx{len(started)}",
                      [nginx_server_block(runner.site, http, runner.address)])
        started.append(nginx)
        nginx.wait(http)
        return http

    yield make
    for nginx in started:
        nginx.stop()


def get(http: str, path: str) -> tuple[int, bytes]:
    resp = fetch(http, path, timeout=30)
    return resp.status, resp.body


def test_kill_9_of_random_workers_under_load_fails_only_in_flight_requests(
        site: Path, start_runner: Callable[..., Runner],
        nginx_for: Callable[[Runner], str]) -> None:
    runner = start_runner(site, workers=3)
    http = nginx_for(runner)
    outcomes: Counter[str] = Counter()
    wrong: list[tuple[int, bytes]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            path = rng.choice(["/cgi-bin/hello.py", "/cgi-bin/slow.py?0.05"])
            status, body = get(http, path)
            with lock:
                if status == 200 and (body == HELLO[1] or body.startswith(b"slow done")):
                    outcomes["ok"] += 1
                elif status == 502:
                    outcomes["502"] += 1
                else:
                    wrong.append((status, body[:200]))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    kills = 0
    rng = random.Random(9)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            wait_for(lambda: len(runner.worker_pids()) == 3, 10, "a full pool")
            os.kill(rng.choice(runner.worker_pids()), signal.SIGKILL)
            kills += 1
            stop.wait(0.3)  # the injection rate, not a synchronisation
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not wrong, wrong
    assert outcomes["502"] <= kills, f"{outcomes['502']} failed requests for {kills} kills"
    assert outcomes["ok"] > 50 and kills >= 10
    wait_for(lambda: len(runner.worker_pids()) == 3, 10, "the pool refilled")
    for _ in range(9):
        assert get(http, "/cgi-bin/hello.py") == HELLO


def test_kill_9_of_a_busy_master_leaves_no_worker(site: Path,
                                                  start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=3)
    workers = runner.worker_pids()
    results: list[object] = []

    def one() -> None:
        try:
            results.append(request(runner.address, cgi_params("/cgi-bin/slow.py",
                                                              "20"), timeout=30).status)
        except OSError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    log = site / "cgi-bin" / "slow-started.log"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 3, 10,
             "three requests in flight")
    os.kill(runner.pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in workers), 5, "busy workers to die with the master")
    for t in threads:
        t.join(30)
    assert len(results) == 3 and all(r != 200 for r in results)  # cut, not hanging
    # Each worker's fork-mode template dies with its worker in turn (the kernel's parent-death
    # signal, one generation after the other): gone within a deadline, not at this instant.
    wait_for(lambda: not group_members(runner.pid), 10, "every process of the runner to end")


# -- the gateway restarted mid-upload -----------------------------------------------------

def start_upload(gw: Gateway, path: str, data: bytes) -> tuple[ftplib.FTP, socket.socket]:
    client = gw.ftp()
    client.voidcmd("TYPE I")
    conn = client.transfercmd(f"STOR {path}")
    conn.sendall(data)
    return client, conn


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_gateway_restarted_mid_upload_publishes_nothing_and_the_new_one_serves(
        tmp_path: Path, sig: signal.Signals) -> None:
    gw = start_gateway(tmp_path)
    target = gw.site / "cgi-bin" / "hello.py"
    old = target.read_bytes()
    generation = gw.generation()
    new_gw: Gateway | None = None
    try:
        client, conn = start_upload(gw, "cgi-bin/hello.py", b"print('half a file')\n" * 5000)
        staging = gw.site / ".cgirt" / "staging"
        wait_for(lambda: any(p.stat().st_size for p in staging.iterdir()), 10, "staged bytes")
        os.killpg(gw.proc.pid, sig)
        code = gw.proc.wait(timeout=15)
        conn.close()
        client.close()
        stop_gateway(gw.proc)
        if sig == signal.SIGTERM:
            assert code == 0, gw.log()
            assert "Traceback" not in gw.log(), gw.log()
            assert not list(staging.iterdir()), "a stopped gateway left a staging file"
            assert "discarded /cgi-bin/hello.py" in gw.deploy_log()
        assert target.read_bytes() == old
        assert gw.generation() == generation
        new_gw = start_gateway(tmp_path, site=gw.site)
        client = new_gw.ftp()
        reply = client.storbinary("STOR cgi-bin/hello.py", io.BytesIO(b"print('Content-Type: text/plain')\nprint()\nprint('v2')\n"))
        client.quit()
        assert "published" in reply and b"v2" in target.read_bytes()
    finally:
        stop_gateway(gw.proc)
        if new_gw is not None:
            stop_gateway(new_gw.proc)


def store_until_refused(client: ftplib.FTP, path: str, data: bytes) -> str:
    """STOR `data`; the server may close the data connection before it is all sent
    (as it should on a full disk); the reply on the control connection is returned."""
    client.voidcmd("TYPE I")
    conn = client.transfercmd(f"STOR {path}")
    try:
        conn.sendall(data)
    except OSError:
        pass  # refused mid-transfer: the reply says why
    finally:
        conn.close()
    try:
        return client.getresp()
    except ftplib.Error as exc:
        return str(exc)


# -- a full disk during an upload ------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if not IS_ROOT:
        pytest.skip("*** a full disk needs root to mount a small tmpfs: NOT TESTED ***")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs", str(mnt)],
                   check=True, timeout=30)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=30)


def test_full_disk_refuses_the_upload_and_keeps_the_old_version(small_disk: Path,
                                                              tmp_path: Path) -> None:
    site = small_disk / "site"
    (site / "cgi-bin").mkdir(parents=True)
    (site / "htdocs").mkdir()
    target = site / "cgi-bin" / "hello.py"
    target.write_text("print('Content-Type: text/plain')\nprint()\nprint('v1')\n")
    gw = start_gateway(tmp_path, site=site)
    try:
        client = gw.ftp()
        reply = store_until_refused(client, "cgi-bin/hello.py",
                                    b"# filler\n" * (300 * 1024))  # 2.7 MB on 1 MB
        assert reply.startswith("452") and "no space left" in reply, reply
        assert b"v1" in target.read_bytes()
        assert not list((site / ".cgirt" / "staging").iterdir())
        # Space is back once the refused upload is gone: the next upload works.
        reply = client.storbinary("STOR cgi-bin/hello.py", io.BytesIO(
            b"print('Content-Type: text/plain')\nprint()\nprint('v2')\n"))
        assert "published" in reply and b"v2" in target.read_bytes()
        # Out of inodes: the staging file cannot even be created.
        n = 0
        while True:
            try:
                (site / "htdocs" / f"f{n}").touch()
            except OSError:
                break
            n += 1
        with pytest.raises(ftplib.Error) as info:
            client.storbinary("STOR cgi-bin/hello.py", io.BytesIO(b"print('v3')\n"))
        assert str(info.value).startswith("550 No space left on device"), info.value
        assert client.sendcmd("NOOP").startswith("200")  # the session survives
        assert b"v2" in target.read_bytes()
        client.quit()
    finally:
        stop_gateway(gw.proc)
    assert "Traceback" not in gw.log(), gw.log()


# -- the web server dropping connections mid-response -----------------------------------------

def test_nginx_killed_mid_response_the_runner_keeps_serving(
        site: Path, start_runner: Callable[..., Runner], tmp_path: Path) -> None:
    runner = start_runner(site, workers=1)
    workers = runner.worker_pids()
    for round_no in range(3):
        http = f"unix:{tmp_path / f'h{round_no}.sock'}"
        nginx = Nginx(tmp_path / f"nginx{round_no}", [nginx_server_block(site, http, runner.address)])
        try:
            nginx.wait(http)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(http[5:])
            sock.sendall(b"GET /cgi-bin/huge.py HTTP/1.1\r\nHost: localhost\r\n\r\n")
            received = 0
            while received < 2 * 1024 * 1024:
                received += len(sock.recv(65536))
            os.killpg(nginx.proc.pid, signal.SIGKILL)  # master and worker, mid-response
            sock.close()
        finally:
            nginx.stop()
        # One worker: it must have given up the dead connection to answer this.
        assert request(runner.address, cgi_params("/cgi-bin/hello.py"), timeout=30).body == HELLO[1]
    assert runner.worker_pids() == workers
    assert "Traceback" not in runner.proc.output()
