"""FastCGI connections kept open by the web server (FCGI_KEEP_CONN), against a real runner.

A worker serves one connection at a time. While it waits on a kept connection for its next
request, a new connection may be waiting on the listener (nginx opens one whenever its kept
ones are busy): the worker then closes the idle kept one and serves the waiting one, instead
of leaving it queued for the idle timeout (KEEP_CONN_IDLE_SECONDS).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from cgirt.fastcgi.server import KEEP_CONN_IDLE_SECONDS
from tests.support.fcgi import cgi_params, connect, read_response, send_request
from tests.support.http import fetch
from tests.support.servers import Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration

HELLO = cgi_params("/cgi-bin/hello.py")
# Far below the idle timeout, far above a hello request on a loaded machine: a request that
# waited for the kept connection to time out takes the whole timeout.
PROMPT = KEEP_CONN_IDLE_SECONDS * 0.6


def test_a_kept_connection_serves_request_after_request(site: Path,
                                                        start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    s = connect(runner.address, timeout=30)
    try:
        for _ in range(3):
            send_request(s, HELLO, keep=True)
            resp = read_response(s)
            assert resp.ended and resp.status == 200 and resp.body == b"Hello, world!\n", resp
    finally:
        s.close()


def test_an_idle_kept_connection_yields_to_a_waiting_one(site: Path,
                                                         start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    kept = connect(runner.address, timeout=30)
    other = connect(runner.address, timeout=30)
    try:
        send_request(kept, HELLO, keep=True)
        assert read_response(kept).status == 200  # the only worker now idles on `kept`
        started = time.monotonic()
        send_request(other, HELLO)
        resp = read_response(other)
        assert resp.status == 200 and resp.body == b"Hello, world!\n", resp
        assert time.monotonic() - started < PROMPT, "the waiting connection waited for the idle timeout"
        assert kept.recv(1) == b"", "the idle kept connection was not closed"
    finally:
        kept.close()
        other.close()


KEEP_UPSTREAM = """
upstream kept_runner {{
    server {backend};
    keepalive 8;
}}
"""


def test_nginx_with_a_keepalive_pool_never_waits_on_an_idle_connection(
        site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    """More concurrent clients than workers, through nginx keeping its connections: every
    request is answered promptly (none waits behind a worker idling on a kept connection)."""
    runner = start_runner(site, workers=2)
    http = f"unix:{tmp_path / 'http.sock'}"
    block = (KEEP_UPSTREAM.format(backend=runner.address)
             + nginx_server_block(site, http, runner.address).replace(
                 f"fastcgi_pass {runner.address};",
                 "fastcgi_pass kept_runner;\n        fastcgi_keep_conn on;"))
    assert "fastcgi_keep_conn on;" in block
    nginx = Nginx(tmp_path / "nginx", [block])
    try:
        nginx.wait(http)
        results: list[tuple[int, bytes, float]] = []

        def client() -> None:
            for _ in range(10):
                t0 = time.monotonic()
                resp = fetch(http, "/cgi-bin/hello.py", timeout=30)
                results.append((resp.status, resp.body, time.monotonic() - t0))

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 60
        assert {(status, body) for status, body, _ in results} == {(200, b"Hello, world!\n")}
        slowest = max(seconds for _, _, seconds in results)
        assert slowest < PROMPT, f"a request waited {slowest:.1f} s"
    finally:
        nginx.stop()
