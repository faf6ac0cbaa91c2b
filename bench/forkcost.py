"""Fork mode's cost per request beside its fork floor: CPU and page faults, under perf stat.

    python -m bench.forkcost [--requests N] [--rounds R] [--script hello|form] [--compare-ref REF]

Starts `cgirt serve --mode fork --workers 1` on a unix socket (and, with --compare-ref, the
same from another commit in a temporary git worktree), sends N sequential FastCGI requests
to each in interleaved rounds, and counts, with `perf stat` attached to the worker and its
template (every child forked later is counted too), the page faults and task-clock per
request; the server's cgroup (root only) gives its whole CPU including the master, with perf
attached and, in the same round, without. Then the same for `bench.forkfloor`'s bare fork
and exit. Counts of page faults are steady on a shared machine; CPU times are medians over
rounds, and noisy there.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from cgirt.fastcgi.client import BackendRequest, UnixAddress

from .procs import tree, wait_for
from .stack import FORM_QUERY, REPO, Backend, cgirt_argv, make_site, start_backend, which


@dataclass
class Counts:
    faults: list[float] = field(default_factory=list)  # per request, one per round
    task_us: list[float] = field(default_factory=list)  # worker + template + children
    group_us: list[float] = field(default_factory=list)  # the whole server's cgroup, if any
    bare_us: list[float] = field(default_factory=list)  # the same without perf attached

    def line(self, name: str) -> str:
        med = statistics.median
        group = (f"  cgroup {med(self.group_us):6.0f} us, without perf {med(self.bare_us):6.0f} us"
                 if self.group_us else "")
        return (f"{name:<10} faults/request {med(self.faults):7.1f} "
                f"(min {min(self.faults):.1f} max {max(self.faults):.1f})  "
                f"task-clock {med(self.task_us):6.0f} us{group}")


def _request(sock: str, script: str) -> bytes:
    query = FORM_QUERY if script == "form" else ""
    params = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET",
              "SCRIPT_NAME": f"/cgi-bin/{script}.py", "QUERY_STRING": query,
              "REQUEST_URI": f"/cgi-bin/{script}.py", "SERVER_NAME": "localhost",
              "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
              "REMOTE_PORT": "5555", "SERVER_SOFTWARE": "bench"}
    out = b""
    with BackendRequest.open(UnixAddress(sock), connect_timeout=10, io_timeout=30) as r:
        r.send_params({k.encode(): v.encode() for k, v in params.items()})
        r.end_stdin()
        while chunk := r.read_stdout():
            out += chunk
    return out


def _perf(pids: list[int], argv: list[str], tmp: Path, run: "Run | None") -> tuple[float, float]:
    """Page faults and task-clock microseconds of `pids` (and their later children) while
    `run` sends its requests, or of `argv` run under perf."""
    ctl, ack = tmp / "perf.ctl", tmp / "perf.ack"
    for fifo in (ctl, ack):
        if fifo.exists():
            fifo.unlink()
        os.mkfifo(fifo)
    out = tmp / "perf.out"
    target = ["-p", ",".join(map(str, pids))] if pids else ["--"] + argv
    # Started with counting off; switched on and off around the requests alone.
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e",
                             "page-faults,task-clock", "-D", "-1" if pids else "0",
                             "--control", f"fifo:{ctl},{ack}", *target],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if run is not None:
            with open(ctl, "w") as c, open(ack) as a:
                c.write("enable\n")
                c.flush()
                a.readline()
                run.send()
                c.write("disable\n")
                c.flush()
                a.readline()
            os.kill(perf.pid, signal.SIGINT)
        perf.wait(timeout=60)
    finally:
        if perf.poll() is None:
            os.killpg(perf.pid, signal.SIGKILL)
            perf.wait()
    values: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            values[parts[2]] = float(parts[0])
    return values["page-faults"], values["task-clock"] * 1000  # msec → us


def _worker_and_template(master: int) -> list[int]:
    """Not a request's child that is still exiting: perf stat gives up on a pid that goes."""
    def children(pid: int) -> list[int]:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    workers = children(master)
    return workers + [t for w in workers for t in children(w)]


_EXPECT = {"hello": b"Hello, world!", "form": b"Ada &lt;Lovelace&gt;"}


@dataclass
class Run:
    backend: Backend
    script: str
    requests: int

    def send(self) -> None:
        for _ in range(self.requests):
            body = _request(self.backend.socket, self.script)
            if _EXPECT[self.script] not in body:
                raise RuntimeError(f"{self.backend.name} answered {body[:300]!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.forkcost", description=__doc__)
    ap.add_argument("--requests", type=int, default=500, help="requests per round (500)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    ap.add_argument("--script", choices=("hello", "form"), default="hello")
    ap.add_argument("--compare-ref", default="", help="also measure this commit, interleaved")
    args = ap.parse_args(argv)
    which("perf")
    py = sys.executable
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cgirt-forkcost-")))
        os.chmod(tmp, 0o755)
        site = make_site(tmp / "site", py)
        trees = {"this": (REPO, None)}
        if args.compare_ref:
            base = tmp / "base-tree"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                            str(base), args.compare_ref], check=True)
            stack.callback(subprocess.run, ["git", "-C", str(REPO), "worktree", "remove",
                                            "--force", str(base)], check=False)
            trees["base"] = (base, {**os.environ, "PYTHONPATH": str(base)})
        runs: dict[str, Run] = {}
        for name, (cwd, env) in trees.items():
            sock = str(tmp / f"{name}.sock")
            backend = start_backend(stack, name, cgirt_argv(py, site, sock, 1, "fork"), sock,
                                    tmp / f"{name}.log", 1, env=env, cwd=cwd)
            wait_for(lambda: len(tree(backend.pid)) >= 3, 30, f"{name}'s fork template")
            runs[name] = Run(backend, args.script, args.requests)
            Run(backend, args.script, 50).send()  # warm: caches, the template's pages
        counts = {name: Counts() for name in runs}
        for n in range(args.rounds):
            for name, run in runs.items():
                pids = _worker_and_template(run.backend.pid)
                group = run.backend.proc.cgroup
                before = group.cpu_seconds() if group else 0.0
                faults, task_us = _perf(pids, [], tmp, run)
                c = counts[name]
                c.faults.append(faults / args.requests)
                c.task_us.append(task_us / args.requests)
                if group:
                    c.group_us.append((group.cpu_seconds() - before) / args.requests * 1e6)
                    before = group.cpu_seconds()
                    run.send()
                    c.bare_us.append((group.cpu_seconds() - before) / args.requests * 1e6)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        floor_faults, floor_task = [], []
        for _ in range(args.rounds):
            f, t = _perf([], [py, "-m", "bench.forkfloor", "1"], tmp, None)
            f2, t2 = _perf([], [py, "-m", "bench.forkfloor", "1001"], tmp, None)
            floor_faults.append((f2 - f) / 1000)
            floor_task.append((t2 - t) / 1000)
        floor = statistics.median(floor_task)
        bare_floor = statistics.median(
            float(subprocess.run([py, "-m", "bench.forkfloor", "1000"], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout)
            for _ in range(args.rounds))
        print(f"{args.script}, {args.requests} requests x {args.rounds} rounds, 1 worker")
        for name, c in counts.items():
            bare = (f", without perf {statistics.median(c.bare_us) / bare_floor:.2f}"
                    if c.bare_us else "")
            print(c.line(name) + f"  ratio to the floor {statistics.median(c.task_us) / floor:.2f}"
                  + bare)
        print(f"{'floor':<10} faults/fork    {statistics.median(floor_faults):7.1f}  "
              f"task-clock {floor:6.0f} us  (bench.forkfloor under perf stat), "
              f"without perf {bare_floor:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
