"""wrk against each target in interleaved rounds, with the CPU each process tree spent."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True)
class Target:
    key: str  # e.g. "cgirt/form"
    backend: str  # e.g. "cgirt"
    script: str  # "hello" or "form"
    url: str
    backend_pid: int
    backend_cpu: Callable[[], float]  # CPU seconds used so far by the backend's processes
    expect: bytes  # a response body must contain this


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_backend: float  # seconds
    cpu_nginx: float
    cpu_wrk: float


@dataclass
class Result:
    target: Target
    rounds: list[Round] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.rounds)

    def cpu_us_per_request(self, attr: str) -> float:
        """Median over rounds of CPU microseconds per request for one process tree."""
        return statistics.median(getattr(r, attr) / max(r.requests, 1) * 1e6 for r in self.rounds)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> tuple[float, float, float, int, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, p50, p99, requests, errors


def wrk(url: str, seconds: float, connections: int, threads: int = 1) -> tuple[str, float]:
    """Run wrk once; its output and the CPU seconds it used (from wait4, exact)."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "--latency", url]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    out = p.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed on {url}:\n{out}")
    return out, usage.ru_utime + usage.ru_stime


# A backend is idle once it uses less than this in a poll interval.
_IDLE_CPU_SECONDS = 0.002
_IDLE_POLL_SECONDS = 0.1
_IDLE_DEADLINE_SECONDS = 15.0


def settle(cpu: Callable[[], float]) -> None:
    """Until the backend whose CPU `cpu` counts is idle (or a deadline has passed): when wrk
    stops, requests it gave up on may still be running (classic CGI's interpreters finish
    theirs, for a tenth of a second or more), and the next target's round must not pay for
    them."""
    deadline = time.monotonic() + _IDLE_DEADLINE_SECONDS
    last = cpu()
    while time.monotonic() < deadline:
        time.sleep(_IDLE_POLL_SECONDS)
        now = cpu()
        if now - last < _IDLE_CPU_SECONDS:
            return
        last = now


def measure(target: Target, nginx_cpu: Callable[[], float], seconds: float,
            connections: int) -> Round:
    before = [target.backend_cpu(), nginx_cpu()]
    out, wrk_cpu = wrk(target.url, seconds, connections)
    after = [target.backend_cpu(), nginx_cpu()]
    # Requests wrk gave up on at its end are counted nowhere: not its own (wrk did not count
    # them), nor the next target's.
    settle(target.backend_cpu)
    rps, p50, p99, requests, errors = parse_wrk(out)
    return Round(rps, p50, p99, requests, errors, after[0] - before[0], after[1] - before[1],
                 wrk_cpu)


def run_rounds(targets: Sequence[Target], nginx_cpu: Callable[[], float], rounds: int, seconds: float,
               warmup: float, connections: int, log: Callable[[str], None]) -> dict[str, Result]:
    results = {t.key: Result(t) for t in targets}
    for t in targets:
        log(f"warm-up {t.key}")
        wrk(t.url, warmup, connections)
        settle(t.backend_cpu)
    for n in range(rounds):
        # Interleaved: A B C ... A B C ..., so drift in the machine's load hits every target.
        for t in targets:
            r = measure(t, nginx_cpu, seconds, connections)
            results[t.key].rounds.append(r)
            log(f"round {n + 1}/{rounds} {t.key:<22} {r.rps:9.1f} req/s  p50 {r.p50_ms:7.2f} ms  "
                f"p99 {r.p99_ms:7.2f} ms" + (f"  ERRORS {r.errors}" if r.errors else ""))
    return results
