"""Upload-to-live: under load, publish a new version of a script many times; after each
publish returns, no request may get the old version, and the new one should be live at once.

The FTP gateway (ftp_gateway/) replies 226 only after its publish step. While the gateway is
not in the repository, this performs the gateway's publish contract itself (DESIGN.md, "The
publish contract"): write a staging file, fsync, os.replace into place, fsync the directory,
bump the site generation; "publish returned" stands for the 226.
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    """The gateway's publish step, exactly as DESIGN.md's contract states it."""
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


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def run(site: Path, port: int, publishes: int, probes: int, workers: int) -> LiveResult:
    """Publish `publishes` times while wrk loads the script; after each publish, `probes`
    requests (enough to reach every worker) must all show the new version."""
    relpath = "cgi-bin/live.py"
    result = LiveResult(method="direct publish contract (staging + fsync + os.replace + "
                        "bump_generation); no FTP gateway in the repository")
    publish(site, relpath, SCRIPT.format(n=0).encode())
    url = f"http://127.0.0.1:{port}/{relpath}"
    # Background load for the whole test, bounded in time.
    seconds = max(5, int(publishes * 0.05) + 10)
    load = subprocess.Popen(["wrk", "-t", "1", "-c", str(2 * workers), "-d", f"{seconds}s", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)  # let the load reach the workers before the first publish
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in range(1, publishes + 1):
            publish(site, relpath, SCRIPT.format(n=n).encode())
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
