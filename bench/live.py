"""Upload-to-live: under load, upload a new version of a script over FTP many times; after
each 226, no request may get the old version, and the new one should be live at once.

The FTP gateway (`cgirt ftp`) replies 226 only after its publish step; it is started here
with a user for the site, and ftplib uploads through it. `publish()` (the gateway's publish
contract done directly) remains for measuring the runner without FTP.
"""

from __future__ import annotations

import ftplib
import http.client
import io
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgirt import site as site_layout

SCRIPT = '''#!/usr/bin/python3
print("Content-Type: text/plain")
print()
print("version {n}")
'''


@dataclass
class LiveResult:
    method: str
    publishes: int = 0
    probes_after_publish: int = 0
    stale: int = 0
    errors: int = 0
    to_live_ms: list[float] = field(default_factory=list)
    background_requests: int = 0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.to_live_ms) or [float("nan")]
        return {"median_ms": statistics.median(lat), "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                "max_ms": lat[-1]}


def gateway_available() -> bool:
    """True when the FTP gateway can publish (its server module exists)."""
    return (Path(__file__).resolve().parents[1] / "ftp_gateway" / "server.py").exists()


def publish(site: Path, relpath: str, content: bytes) -> None:
    """The gateway's publish step (ftp_gateway/publish.py): stage, fsync, rename into place,
    fsync the directory, bump the generation."""
    staging = site_layout.staging_dir(site)
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{os.getpid()}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o755)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = site / relpath
    os.replace(tmp, final)
    site_layout.fsync_dir(final.parent)
    site_layout.bump_generation(site)


class FtpPublisher:
    """A real `cgirt ftp` gateway for the site, and an ftplib session uploading through it."""

    def __init__(self, site: Path, workdir: Path) -> None:
        users = workdir / "ftp-users.json"
        password = "bench-password"
        subprocess.run([sys.executable, "-m", "cgirt", "user", "add", "bench", "--site", str(site),
                        "--users", str(users)], input=password + "\n", text=True, check=True,
                       capture_output=True, timeout=60)
        port_file = workdir / "ftp.port"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cgirt", "ftp", "--users", str(users), "--listen", "127.0.0.1:0",
             "--port-file", str(port_file)], stdout=subprocess.DEVNULL,
            stderr=open(workdir / "ftp.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the FTP gateway did not start; see ftp.log")
            time.sleep(0.02)
        host, port = port_file.read_text().split()
        self.ftp = ftplib.FTP()
        self.ftp.connect(host, int(port), timeout=30)
        self.ftp.login("bench", password)

    def __call__(self, site: Path, relpath: str, content: bytes) -> None:
        reply = self.ftp.storbinary(f"STOR {relpath}", io.BytesIO(content))
        if not reply.startswith("226"):
            raise RuntimeError(f"upload refused: {reply}")

    def stop(self) -> None:
        try:
            self.ftp.quit()
        except (OSError, AttributeError, ftplib.Error):
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def run(site: Path, port: int, publishes: int, probes: int, workers: int,
        workdir: Path | None = None) -> LiveResult:
    """Upload `publishes` times while wrk loads the script; after each 226, `probes`
    requests (enough to reach every worker) must all show the new version."""
    relpath = "cgi-bin/live.py"
    publish(site, relpath, SCRIPT.format(n=0).encode())
    if workdir is not None and gateway_available():
        uploader: Any = FtpPublisher(site, workdir)
        result = LiveResult(method="FTP: ftplib STOR through the cgirt ftp gateway; timed from its 226")
    else:
        uploader = publish
        result = LiveResult(method="direct publish contract (staging + fsync + os.replace + "
                            "bump_generation); no FTP gateway")
    try:
        return _run(result, uploader, site, relpath, port, publishes, probes, workers)
    finally:
        if isinstance(uploader, FtpPublisher):
            uploader.stop()


def _run(result: LiveResult, uploader: Any, site: Path, relpath: str, port: int, publishes: int,
         probes: int, workers: int) -> LiveResult:
    url = f"http://127.0.0.1:{port}/{relpath}"
    # Background load for the whole test, bounded in time.
    seconds = max(5, int(publishes * 0.05) + 10)
    load = subprocess.Popen(["wrk", "-t", "1", "-c", str(2 * workers), "-d", f"{seconds}s", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)  # let the load reach the workers before the first publish
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in range(1, publishes + 1):
            uploader(site, relpath, SCRIPT.format(n=n).encode())
            t0 = time.perf_counter()
            first = True
            for _ in range(probes):
                status, body = _get(conn, "/" + relpath)
                result.probes_after_publish += 1
                if status != 200:
                    result.errors += 1
                    continue
                version = int(body.split()[-1])
                if version != n:
                    result.stale += 1
                elif first:
                    result.to_live_ms.append((time.perf_counter() - t0) * 1000)
                    first = False
            result.publishes += 1
        conn.close()
    finally:
        load.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        out = load.communicate(timeout=30)[0].decode(errors="replace")
    for line in out.splitlines():
        if "requests in" in line:
            result.background_requests = int(line.split()[0])
    return result
