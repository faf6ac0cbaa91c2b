"""The key guarantee: a client killed mid-upload never leaves a truncated file live."""

from __future__ import annotations

import os
import random
import signal
import subprocess
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
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            pass
    return total


def staging_empty(site: Path) -> bool:
    staging = site / ".cgirt" / "staging"
    return not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_killed_curl_never_publishes_a_truncated_file(
    gateway: Gateway, tmp_path: Path, sig: signal.Signals
) -> None:
    curl = require_tool("curl")
    old = b"# old version\n" * 100
    target = gateway.site / "htdocs" / "big.bin"
    target.write_bytes(old)
    new = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
    source = tmp_path / "big.bin"
    source.write_bytes(new)
    rng = random.Random(sig)
    for round_no in range(ROUNDS):
        target.write_bytes(old)
        generation = gateway.generation()
        events = len(gateway.deploy_log().splitlines())
        # Kill somewhere between 5% and 97% of the upload, near the end included.
        kill_at = int(SIZE * rng.uniform(0.05, 0.97))
        proc = subprocess.Popen(
            [curl, "-sS", "--limit-rate", "1M", "-T", str(source), gateway.url("htdocs/big.bin")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: staged_bytes(gateway.site) >= kill_at or proc.poll() is not None,
                       30, "the upload to reach the kill point")
        finally:
            proc.send_signal(sig)  # a no-op if curl already finished
            proc.wait(timeout=30)
        # Every upload ends in exactly one deploy.log line: published, rejected or discarded.
        wait_until(lambda: len(gateway.deploy_log().splitlines()) > events, 30,
                   "the upload's outcome in deploy.log")
        assert staging_empty(gateway.site)
        live = target.read_bytes()
        intact = live in (old, new)
        assert intact, f"round {round_no}: {len(live)} of {SIZE} bytes live (truncated)"
        if live == old:
            assert gateway.generation() == generation, f"round {round_no}: generation bumped"
    assert "discarded /htdocs/big.bin" in gateway.deploy_log()
