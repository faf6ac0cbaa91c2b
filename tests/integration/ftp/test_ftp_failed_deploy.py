"""A failed deploy fails: a rejected upload ends in a 5xx reply, so curl and lftp exit
non-zero and ftplib raises, while the previous version keeps serving through nginx."""

from __future__ import annotations

import ftplib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ftp_harness import require_tool
from test_ftp_live import Live, live, version  # noqa: F401  (live: the fixture)

pytestmark = pytest.mark.integration

BROKEN = b'print("Content-Type: text/plain")\nprint()\nif True print("oops")\n'


def deployed(stack: Live, n: int) -> Live:
    """`cgi-bin/app.py` at version n, published and serving."""
    client = stack.gateway.ftp()
    assert client.storbinary("STOR cgi-bin/app.py", io.BytesIO(version(n))).startswith("226 ")
    client.quit()
    assert stack.get("/cgi-bin/app.py") == (200, f"version {n}\n".encode())
    return stack


def still_serving(stack: Live, n: int, generation: int) -> None:
    assert stack.get("/cgi-bin/app.py") == (200, f"version {n}\n".encode())
    assert stack.gateway.generation() == generation
    assert (stack.site / "cgi-bin" / "app.py").read_bytes() == version(n)
    assert not any((stack.site / ".cgirt" / "staging").iterdir())


def lftp_script(stack: Live, command: str) -> str:
    gw = stack.gateway
    return (f"set net:max-retries 1; set ftp:ssl-allow false; "
            f"open -u {gw.user},'{gw.password}' -p {gw.port} {gw.host}; {command}")


def test_ftplib_raises_error_perm_with_the_details(live: Callable[..., Live]) -> None:
    stack = deployed(live(), 1)
    before = stack.gateway.generation()
    client = stack.gateway.ftp()
    with pytest.raises(ftplib.error_perm) as refused:
        client.storbinary("STOR cgi-bin/app.py", io.BytesIO(BROKEN))
    lines = str(refused.value).splitlines()
    assert lines[0] == "550-/cgi-bin/app.py was NOT published; the previous version stays live."
    assert lines[1].startswith("550-/cgi-bin/app.py, line 3: SyntaxError")
    assert lines[-1] == "550 Upload rejected (details in logs/deploy.log)."
    # The session goes on: the next, good upload is published.
    assert client.storbinary("STOR cgi-bin/app.py", io.BytesIO(version(2))).startswith("226 ")
    client.quit()
    still_serving(stack, 2, before + 1)


def test_curl_exits_non_zero_and_the_old_version_serves(live: Callable[..., Live],
                                                        tmp_path: Path) -> None:
    curl = require_tool("curl")
    stack = deployed(live(), 1)
    before = stack.gateway.generation()
    broken = tmp_path / "app.py"
    broken.write_bytes(BROKEN)
    out = subprocess.run([curl, "-sS", "-v", "-T", str(broken), stack.gateway.url("cgi-bin/app.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stderr
    assert "< 550-/cgi-bin/app.py was NOT published" in out.stderr
    assert "< 550-/cgi-bin/app.py, line 3: SyntaxError" in out.stderr
    still_serving(stack, 1, before)


def test_curl_over_quota_exits_non_zero(live: Callable[..., Live], tmp_path: Path) -> None:
    curl = require_tool("curl")
    stack = deployed(live("--quota-bytes", "100000"), 1)
    before = stack.gateway.generation()
    big = tmp_path / "app.py"
    big.write_bytes(version(2) + b"#" * 200_000 + b"\n")
    out = subprocess.run([curl, "-sS", "-v", "-T", str(big), stack.gateway.url("cgi-bin/app.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stderr
    assert "< 552 /cgi-bin/app.py: the site's quota is exhausted" in out.stderr
    still_serving(stack, 1, before)


def test_lftp_put_and_mirror_exit_non_zero(live: Callable[..., Live], tmp_path: Path) -> None:
    lftp = require_tool("lftp")
    stack = deployed(live(), 1)
    before = stack.gateway.generation()
    broken = tmp_path / "app.py"
    broken.write_bytes(BROKEN)
    put = subprocess.run([lftp, "-c", lftp_script(stack, f"put {broken} -o /cgi-bin/app.py")],
                         capture_output=True, text=True, timeout=60)
    assert put.returncode != 0, put.stdout + put.stderr
    assert "550" in put.stderr and "Upload rejected" in put.stderr
    still_serving(stack, 1, before)
    # A CI deploy mirrors a whole tree: one rejected file fails the run, the good ones land.
    # --overwrite: without it lftp's mirror deletes a changed file before sending it anew,
    # and a rejected upload would then leave no version at all (lftp's doing, not ours).
    local = tmp_path / "local"
    (local / "cgi-bin").mkdir(parents=True)
    (local / "cgi-bin" / "app.py").write_bytes(BROKEN)
    (local / "cgi-bin" / "other.py").write_bytes(version(7))
    mirror = subprocess.run([lftp, "-c", lftp_script(stack, f"mirror -R --overwrite --no-perms {local} /")],
                            capture_output=True, text=True, timeout=120)
    assert mirror.returncode != 0, mirror.stdout + mirror.stderr
    assert "Upload rejected" in mirror.stderr
    assert stack.get("/cgi-bin/other.py") == (200, b"version 7\n")
    still_serving(stack, 1, before + 1)  # + 1: other.py
