"""The key guarantee: a client killed mid-upload never leaves a truncated file live."""

from __future__ import annotations

import contextlib
import ftplib
import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ftp_harness import Gateway, require_tool, wait_until

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("CGIRT_FTP_KILL_ROUNDS", "20"))
SIZE = 512 * 1024


def staged_bytes(site: Path) -> int:
    staging = site / ".cgirt" / "staging"
    total = 0
    for entry in staging.iterdir() if staging.exists() else ():
        with contextlib.suppress(FileNotFoundError):  # published or discarded meanwhile
            total += entry.stat().st_size
    return total


def staging_empty(site: Path) -> bool:
    staging = site / ".cgirt" / "staging"
    return not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_killed_curl_never_publishes_a_truncated_file(
    gateway: Gateway, tmp_path: Path, sig: signal.Signals
) -> None:
    kill_curl_repeatedly(gateway, tmp_path, sig, ROUNDS, [])


def test_killed_curl_over_tls_never_publishes_a_truncated_file(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = gateway_factory("--require-tls")
    kill_curl_repeatedly(gateway, tmp_path, signal.SIGKILL, max(ROUNDS // 2, 1),
                         ["--ssl-reqd", "-k"])


def kill_curl_repeatedly(gateway: Gateway, tmp_path: Path, sig: signal.Signals,
                         rounds: int, curl_args: list[str]) -> None:
    curl = require_tool("curl")
    old = b"# old version\n" * 100
    target = gateway.site / "htdocs" / "big.bin"
    new = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
    source = tmp_path / "big.bin"
    source.write_bytes(new)
    rng = random.Random(sig)
    for round_no in range(rounds):
        target.write_bytes(old)
        generation = gateway.generation()
        events = len(gateway.deploy_log().splitlines())
        # Kill somewhere between 5% and 97% of the upload, near the end included.
        kill_at = int(SIZE * rng.uniform(0.05, 0.97))
        proc = subprocess.Popen(
            [curl, "-sS", *curl_args, "--limit-rate", "1M", "-T", str(source),
             gateway.url("htdocs/big.bin")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            def reached(kill_at: int = kill_at, proc: subprocess.Popen[bytes] = proc) -> bool:
                return staged_bytes(gateway.site) >= kill_at or proc.poll() is not None

            wait_until(reached, 30, "the upload to reach the kill point")
        finally:
            proc.send_signal(sig)  # a no-op if curl already finished
            proc.wait(timeout=30)
        # Every upload ends in exactly one deploy.log line: published, rejected or discarded.
        _outcome_logged(gateway, events)
        assert staging_empty(gateway.site)
        live = target.read_bytes()
        intact = live in (old, new)
        assert intact, f"round {round_no}: {len(live)} of {SIZE} bytes live (truncated)"
        if live == old:
            assert gateway.generation() == generation, f"round {round_no}: generation bumped"
    assert "discarded /htdocs/big.bin" in gateway.deploy_log()


def _start_upload(gateway: Gateway, path: str) -> tuple[ftplib.FTP, socket.socket]:
    client = gateway.ftp()
    client.voidcmd("TYPE I")
    return client, client.transfercmd(f"STOR {path}")


def _outcome_logged(gateway: Gateway, events: int) -> None:
    wait_until(lambda: len(gateway.deploy_log().splitlines()) > events, 30,
               "the upload's outcome in deploy.log")


def test_abor_publishes_nothing(gateway: Gateway) -> None:
    target = gateway.site / "cgi-bin" / "hello.py"
    old = target.read_bytes()
    events = len(gateway.deploy_log().splitlines())
    client, data = _start_upload(gateway, "cgi-bin/hello.py")
    data.sendall(b"print('half')\n" * 10000)  # more than the staging file's buffer
    wait_until(lambda: staged_bytes(gateway.site) > 0, 30, "bytes in staging")
    client.putcmd("ABOR")  # the server closes the data connection (RFC 959)
    assert client.getline().startswith("426")
    assert client.getline().startswith("226 ABOR")
    data.close()
    client.quit()
    _outcome_logged(gateway, events)
    assert target.read_bytes() == old
    assert "discarded /cgi-bin/hello.py" in gateway.deploy_log()


@pytest.mark.parametrize("order", ["control-first", "data-first"])
def test_client_gone_before_the_226_publishes_nothing(gateway: Gateway, order: str) -> None:
    """A dying client closes both connections without reading the 226, in either order."""
    target = gateway.site / "cgi-bin" / "hello.py"
    old = target.read_bytes()
    events = len(gateway.deploy_log().splitlines())
    client, data = _start_upload(gateway, "cgi-bin/hello.py")
    data.sendall(b"print('cut')\n" * 1000)
    client.file.close()  # else the socket stays open behind ftplib's reader
    if order == "control-first":
        client.sock.close()
        data.close()
    else:
        data.close()
        client.sock.close()
    _outcome_logged(gateway, events)
    assert target.read_bytes() == old
    assert "discarded /cgi-bin/hello.py" in gateway.deploy_log()
