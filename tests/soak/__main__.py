"""`python -m tests.soak --duration 600 [--host]`: the soak on its own, from the repository root.

Prints the figures as a Markdown table (the one in RELIABILITY.md) and exits 1 if any
invariant was broken. The work directory (logs of every process) is kept on failure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .soak import Settings, Soak
from .stack import HostStack, Stack


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--workers", type=int, default=2, help="workers per site's runner")
    p.add_argument("--host", action="store_true",
                   help="one `cgirt host` master for both sites, not a runner per site")
    p.add_argument("--load-threads", type=int, default=4)
    p.add_argument("--load-rate", type=float, default=20.0,
                   help="requests per second per load thread, at most")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    p.add_argument("--json", type=Path, help="also write the counts and samples here")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cgirt-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(duration=args.duration, load_threads=args.load_threads,
                        load_rate=args.load_rate, seed=args.seed)
    stack = (HostStack if args.host else Stack)(workdir, workers=args.workers)

    def log(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    log(f"soak: {args.duration:.0f} s in {workdir}")
    try:
        stack.start()
        report = Soak(stack, settings, log).run()
    except BaseException:
        stack.stop()
        raise
    print(report.table())
    print()
    print(report.resource_summary())
    if args.json:
        args.json.write_text(json.dumps({"counts": report.counts, "samples": report.samples,
                                         "problems": report.problems,
                                         "exit_codes": report.exit_codes}, indent=1))
    bad = report.violations()
    if bad:
        print(f"\nINVARIANTS BROKEN: {bad}\n" + "\n".join(report.problems[:50]))
        print(f"logs kept in {workdir}")
        return 1
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
