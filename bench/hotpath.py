"""The runner's own per-request cost, without nginx or the network: whole FastCGI requests
(as nginx sends them, with the deploy block's params) through cgirt's connection handler and
app in this process, over a socketpair (tests.support.inprocess, the unit tests' seam too).
For profiling and for quick before/after checks.

    python -m bench.hotpath [--requests N] [--batches N] [--profile] [--script hello|form|helpers]

With --profile, cProfile's top functions by own time are printed; without, microseconds per
request (best of five batches).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import os
import sys
import tempfile
import time
from pathlib import Path

from cgirt.cli import ensure_utf8_mode
from cgirt.fastcgi.records import request_records
from cgirt.runner.cache import RACY_SECONDS
from tests.support.inprocess import InProcessRunner
from cgirt.runner.scoreboard import Scoreboard
from cgirt.runner.supervisor import WorkerControl

from .stack import FORM_QUERY, make_site


def request_bytes(site: Path, script: str, query: str) -> bytes:
    """What nginx sends for GET /cgi-bin/SCRIPT?QUERY with deploy/nginx-cgirt.conf."""
    uri = f"/cgi-bin/{script}"
    params = {
        "QUERY_STRING": query, "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
        "SCRIPT_NAME": uri, "REQUEST_URI": uri + ("?" + query if query else ""),
        "DOCUMENT_URI": uri, "DOCUMENT_ROOT": f"{site}/htdocs", "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http", "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "nginx/1.22.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "51234",
        "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_NAME": "localhost",
        "REDIRECT_STATUS": "200", "SCRIPT_FILENAME": f"{site}{uri}", "PATH_INFO": "",
        "PATH_TRANSLATED": f"{site}/htdocs", "HTTP_PROXY": "", "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
    }
    return request_records(1, params)


def main() -> int:
    ensure_utf8_mode()  # as `cgirt serve` runs
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--script", choices=("hello", "form", "helpers"), default="hello")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--batches", type=int, default=5,
                    help="report the best of this many batches (more on a loaded machine)")
    ap.add_argument("--mode", choices=("persistent", "fork"), default="persistent")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cgirt-hotpath-") as tmp:
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, tmp: Path) -> int:
    site = make_site(tmp / "site", sys.executable)
    time.sleep(RACY_SECONDS + 0.1)  # past the cache's racy window, as a long-served site is
    runner = InProcessRunner(site, mode=args.mode)
    prof = cProfile.Profile()
    if args.profile:
        # Before the worker captures its interpreter state: a profiler started later is a
        # change a script made, which the worker undoes after every request.
        prof.enable()
    runner.start()
    query = FORM_QUERY if args.script == "form" else ""
    raw = request_bytes(site, args.script + ".py", query)
    # The worker's own control, so that what a worker records per request is measured too.
    _, wake_w = os.pipe()
    runner.control = WorkerControl(Scoreboard(2), 0, 0, wake_w)

    def one() -> bytes:
        return runner.raw(raw)

    first = one()
    if b"Status: 200" not in first:
        raise SystemExit(f"unexpected response: {first[:500]!r}")
    if args.profile:
        prof.clear()
        for _ in range(args.requests):
            one()
        prof.disable()
        pstats.Stats(prof).sort_stats(os.environ.get("HP_SORT", "tottime")).print_stats(int(os.environ.get("HP_N", "30")))
        runner.stop()
        return 0
    best = float("inf")
    size = max(1, args.requests // args.batches)
    for _ in range(args.batches):
        t0 = time.perf_counter()
        for _ in range(size):
            one()
        best = min(best, (time.perf_counter() - t0) / size)
    print(f"{args.script}: {best * 1e6:.1f} µs per request (best of {args.batches} batches)")
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
