"""The runner's per-request cost in instructions: steady on a shared, noisy machine, where
wall time and CPU time are not.

    python -m bench.instructions [--script hello|form|helpers] [--requests A B]

Runs `python -m bench.hotpath --requests N` under valgrind's callgrind for two N and prints
the difference of the instructions executed, divided by the difference of the requests: the
start-up, the site's creation and the first request cancel out. Persistent mode only: fork
mode's cost is mostly the kernel's (fork, page faults), which callgrind does not see.
PYTHONHASHSEED is fixed, since dict layouts, and so instruction counts, depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def total_instructions(profile: str) -> int:
    """The `summary:` (or `totals:`) line of a callgrind output file."""
    for line in profile.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError("no summary line in the callgrind output")


def requests_run(asked: int) -> int:
    """What `bench.hotpath --requests N` runs: five batches of N // 5, after one first."""
    return asked // 5 * 5 + 1


def per_request(low: tuple[int, int], high: tuple[int, int]) -> float:
    """(requests asked, instructions) twice → instructions per request."""
    return (high[1] - low[1]) / (requests_run(high[0]) - requests_run(low[0]))


def measure(script: str, requests: int, workdir: Path) -> int:
    return callgrind_instructions(["-m", "bench.hotpath", "--script", script], requests,
                                  workdir / f"callgrind.{script}.{requests}")


def callgrind_instructions(module: list[str], requests: int, out: Path) -> int:
    """The instructions of `python MODULE... --requests N` (a hotpath run) under callgrind."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    # -X utf8 as `cgirt serve` runs: hotpath would otherwise re-exec itself, out of sight.
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-X", "utf8", *module, "--requests", str(requests)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return total_instructions(out.read_text(errors="replace"))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions")
    ap.add_argument("--script", choices=("hello", "form", "helpers"), default="hello")
    ap.add_argument("--requests", type=int, nargs=2, default=(100, 600), metavar=("A", "B"))
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (apt-get install valgrind)",
              file=sys.stderr)
        return 2
    low, high = sorted(args.requests)
    if requests_run(high) <= requests_run(low):
        print("bench.instructions: the two request counts must differ by 5 or more", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cgirt-instructions-") as tmp:
        counts = [(n, measure(args.script, n, Path(tmp))) for n in (low, high)]
    print(f"{args.script}: {per_request(*counts):,.0f} instructions per request "
          f"(callgrind, {low} and {high} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
