"""Malformed, oversized and random FastCGI input: the connection is dropped, nothing else."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Callable

import pytest

from cgirt.fastcgi import records
from tests.support.fcgi import BEGIN, PARAMS, STDIN, cgi_params, connect, pair, record, request
from tests.support.servers import Runner

pytestmark = pytest.mark.integration

BEGIN_BODY = records.BEGIN_BODY.pack(records.RESPONDER, 0)

MALFORMED = [
    b"\x01",  # a truncated header
    b"\x02" + bytes(7),  # FastCGI version 2
    record(BEGIN, 1, b"\x00\x01"),  # BEGIN_REQUEST too short
    record(BEGIN, 1, BEGIN_BODY) + record(PARAMS, 1, b"\x85\x00\x00\x00"),  # a pair cut short
    record(BEGIN, 1, BEGIN_BODY) + record(PARAMS, 1, b"\x7f\x7f" + b"x" * 20),  # longer than its record
    record(BEGIN, 1, BEGIN_BODY) + b"".join(
        record(PARAMS, 1, pair(b"HTTP_X_%d" % i, b"v" * 60000)) for i in range(20)),  # 1.2 MB of params
    record(STDIN, 7, b"data for no request") + record(99, 0, b"unknown type"),
    record(BEGIN, 1, BEGIN_BODY) + record(PARAMS, 1, pair(b"SCRIPT_NAME", b"/cgi-bin/hello.py")),  # stalls
]


def send_and_close(address: str, data: bytes) -> None:
    s = connect(address, timeout=5)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        s.close()


def test_malformed_records_cost_only_their_connection(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    workers = set(runner.worker_pids())
    for data in MALFORMED:
        send_and_close(runner.address, data)
        assert request(runner.address, cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
    assert set(runner.worker_pids()) == workers, "a worker crashed on malformed input"


def test_random_bytes(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    workers = set(runner.worker_pids())
    rng = random.Random(20261124)
    valid = record(BEGIN, 1, BEGIN_BODY) + record(PARAMS, 1, b"".join(
        pair(k.encode(), v.encode()) for k, v in cgi_params("/cgi-bin/hello.py").items()))
    for _ in range(150):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):  # flip bytes of a valid request, or append junk
            data[rng.randrange(len(data))] = rng.randrange(256)
        data += bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        send_and_close(runner.address, bytes(data))
    assert request(runner.address, cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
    assert set(runner.worker_pids()) == workers, "a worker crashed on random input"


def test_params_after_their_end_do_not_run_the_script_again(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    # Found by tests/soak/test_fastcgi_fuzz.py: a second end-of-params record, read while
    # the script reads its body, ran the request again, nested inside the first run.
    runner = start_runner(site, workers=1)
    workers = set(runner.worker_pids())
    params = b"".join(pair(k.encode(), v.encode()) for k, v in cgi_params(
        "/cgi-bin/echo.py", method="POST", CONTENT_LENGTH="5").items())
    data = (record(BEGIN, 1, BEGIN_BODY) + record(PARAMS, 1, params) + record(PARAMS, 1)
            + record(PARAMS, 1) + record(STDIN, 1, b"hello") + record(STDIN, 1))
    s = connect(runner.address, timeout=10)
    out = b""
    try:
        s.sendall(data)
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    assert out.count(b"Content-Type") <= 1, out
    assert request(runner.address, cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
    assert set(runner.worker_pids()) == workers
