"""`python -m bench [--quick]`: start everything, load it, write bench/results/, stop everything.

./bench/run installs the system packages and the Python extra first, then runs this.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import live as live_test
from . import report
from .load import Target, run_rounds
from .procs import worker_rss_mib
from .stack import (BENCH, FORM_QUERY, REPO, Backend, Server, cgirt_argv, fastest_python,
                    make_site, php_fpm_argv, python_candidates, socket_path, start_backend,
                    start_nginx, which)

PROFILES = {  # rounds, seconds per round, warm-up seconds, publishes
    "quick": (2, 2.0, 1.0, 50),
    "full": (5, 5.0, 3.0, 200),
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # same path as Ctrl-C: the ExitStack stops every process


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """The options and the backends wanted; an impossible combination is a usage error."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short run (under two minutes)")
    ap.add_argument("--workers", type=int, default=2, help="workers per backend (default 2)")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    ap.add_argument("--seconds", type=float, help="seconds per round and target")
    ap.add_argument("--publishes", type=int, help="upload-to-live publishes (default 200)")
    ap.add_argument("--only", default="", help="comma-separated backends to run "
                    "(classic,cgirt,cgirt-keep,cgirt-fork,wsgi,pyfloor,php,cgirt-base)")
    ap.add_argument("--compare-ref", default="", help="also run cgirt from this git commit "
                    "(a temporary worktree), interleaved with this tree, for before/after ratios")
    ap.add_argument("--out", type=Path, default=BENCH / "results", help="report directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    wanted = set(filter(None, args.only.split(","))) or {"classic", "cgirt", "cgirt-fork", "wsgi", "pyfloor", "php"}
    return args, wanted


def main(argv: list[str] | None = None) -> int:
    args, wanted = parse_args(argv)
    mode = "quick" if args.quick else "full"
    rounds, seconds, warmup, publishes = PROFILES[mode]
    rounds = args.rounds or rounds
    seconds = args.seconds or seconds
    publishes = publishes if args.publishes is None else args.publishes
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    if args.compare_ref:
        wanted.add("cgirt-base")
        args.compare_ref = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", args.compare_ref],
            capture_output=True, text=True, check=True).stdout.strip()
    for tool in ("nginx", "wrk") + (("fcgiwrap",) if "classic" in wanted else ()):
        which(tool)

    tmp = Path(tempfile.mkdtemp(prefix="cgirt-bench-"))
    os.chmod(tmp, 0o755)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    meta: dict[str, Any] = {
        "started": started, "mode": mode, "rounds": rounds, "seconds": seconds, "warmup": warmup,
        "connections": args.connections, "workers": args.workers,
        "command": "./bench/run" + (" --quick" if args.quick else "")
        + (f" --compare-ref {args.compare_ref}" if args.compare_ref else ""),
        "compare_ref": args.compare_ref,
    }
    try:
        with ExitStack() as stack:
            if not args.keep:
                stack.callback(shutil.rmtree, tmp, True)
            results, live, env = _run(stack, tmp, args, wanted, rounds, seconds, warmup, publishes)
            meta["nginx"] = env.pop("nginx_version")
            if "fork_floor_us" in env:
                meta["fork_floor_us"] = float(env.pop("fork_floor_us"))
            meta["environment"] = env
        md, png = report.write(args.out, results, live, meta)
        _log(f"report: {md}\n           chart: {png}")
        for name, want, got, met in [*report.targets(results, live),
                                     *report.php_targets(results, meta)]:
            _log(f"  {name}: {got} (wanted {want}){'' if met else '  NOT MET'}")
        return 0
    except KeyboardInterrupt:
        _log("interrupted: every process started was stopped")
        return 130


def _run(stack: ExitStack, tmp: Path, args: argparse.Namespace, wanted: set[str], rounds: int,
         seconds: float, warmup: float, publishes: int) -> tuple[dict[str, Any], Any, dict[str, str]]:
    workers = args.workers
    shebang, timings = fastest_python(python_candidates())
    _log(f"classic CGI interpreter: {shebang} (start + import cgi: "
         + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(timings.items(), key=lambda kv: kv[1])) + ")")
    site = make_site(tmp / "site", shebang)
    live_site = tmp / "live"
    (live_site / "cgi-bin").mkdir(parents=True)
    (live_site / "htdocs").mkdir()
    py = sys.executable
    backends: dict[str, Backend] = {}
    servers: list[Server] = []

    def cgi_backend(name: str, argv: list[str], expect: int, kind: str = "cgi", **kw: Any) -> None:
        sock = socket_path(tmp, name)
        backends[name] = start_backend(stack, name, [a.replace("{sock}", sock) for a in argv],
                                       sock, tmp / f"{name}.log", expect, **kw)
        servers.append(Server(name, kind, f"unix:{sock}", str(site), keepalive=args.connections))

    if "classic" in wanted:
        cgi_backend("classic", [which("fcgiwrap"), "-c", str(workers), "-s", "unix:{sock}"], 0)
    if "cgirt" in wanted:
        cgi_backend("cgirt", cgirt_argv(py, site, "{sock}", workers, "persistent"), workers,
                    cwd=REPO)
    if "cgirt-keep" in wanted:
        cgi_backend("cgirt-keep", cgirt_argv(py, site, "{sock}", workers, "persistent"), workers,
                    kind="cgi-keep", cwd=REPO)
    if "cgirt-fork" in wanted:
        cgi_backend("cgirt-fork", cgirt_argv(py, site, "{sock}", workers, "fork"), workers,
                    cwd=REPO)
    if "cgirt-base" in wanted:
        base = tmp / "base-tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base),
                        args.compare_ref], check=True)
        stack.callback(subprocess.run, ["git", "-C", str(REPO), "worktree", "remove", "--force",
                                        str(base)], check=False)
        env = {**os.environ, "PYTHONPATH": str(base)}
        cgi_backend("cgirt-base", cgirt_argv(py, site, "{sock}", workers, "persistent"), workers,
                    cwd=base, env=env)
        check = subprocess.run([py, "-c", "import cgirt; print(cgirt.__file__)"], cwd=base,
                               env=env, capture_output=True, text=True).stdout.strip()
        if not check.startswith(str(base)):
            raise RuntimeError(f"the base runner would import {check}, not the worktree")
    if "pyfloor" in wanted:
        cgi_backend("pyfloor", [py, "-m", "bench.pyfloor", "{sock}", str(workers)], workers, cwd=REPO)
    if "wsgi" in wanted:
        sock = socket_path(tmp, "wsgi")
        backends["wsgi"] = start_backend(stack, "wsgi", [py, str(BENCH / "wsgi_hello.py"), sock,
                                                         str(workers)], sock, tmp / "wsgi.log", workers)
        servers.append(Server("wsgi", "wsgi", f"unix:{sock}", ""))
    if "php" in wanted:
        sock = socket_path(tmp, "php")
        argv = php_fpm_argv(tmp, sock, workers)
        backends["php"] = start_backend(stack, "php", argv, sock, tmp / "php.log", workers)
        servers.append(Server("php", "php", f"unix:{sock}", str(site / "php")))
    live_backend = None
    if publishes:
        sock = socket_path(tmp, "live")
        live_backend = start_backend(stack, "live", cgirt_argv(py, live_site, sock, workers,
                                                               "persistent"),
                                     sock, tmp / "live.log", workers, cwd=REPO)
        servers.append(Server("live", "cgi", f"unix:{sock}", str(live_site)))
    nginx = start_nginx(stack, tmp / "nginx", servers)

    targets: list[Target] = []
    for name, b in backends.items():
        port = nginx.ports[name]
        for script in ("hello", "form"):
            if name == "wsgi" and script == "form":
                continue  # the WSGI baseline is the limit for hello only
            if name == "php":
                path = f"/{script}.php"
            elif name == "wsgi":
                path = "/hello"
            else:
                path = f"/cgi-bin/{script}.py"
            if script == "form":
                path += "?" + FORM_QUERY
            expect = b"Hello, world!" if script == "hello" else b"Ada &lt;Lovelace&gt;"
            targets.append(Target(f"{name}/{script}", name, script,
                                  f"http://127.0.0.1:{port}{path}", b.pid, b.proc.cpu_seconds,
                                  expect))
    for t in targets:  # every target must answer correctly before it is measured
        with urllib.request.urlopen(t.url, timeout=30) as r:
            body = r.read()
        if r.status != 200 or t.expect not in body:
            raise RuntimeError(f"{t.key} answered {r.status}: {body[:300]!r}")
    _log(f"{len(targets)} targets answer; {rounds} rounds of {seconds} s each")
    results = run_rounds(targets, nginx.proc.cpu_seconds, rounds, seconds, warmup, args.connections, _log)
    for t in targets:
        results[t.key].rss_mib = worker_rss_mib(t.backend_pid)

    fork_floor = None
    if "cgirt-fork" in wanted:
        out = subprocess.run([py, "-m", "bench.forkfloor"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        fork_floor = float(out.strip())
        _log(f"fork floor: a bare fork + exit of a template-like process costs {fork_floor:.0f} µs of CPU")

    live = None
    if live_backend is not None:
        method = "FTP gateway" if live_test.gateway_available() else "direct"
        _log(f"upload-to-live: {publishes} publishes ({method})")
        live = live_test.run(live_site, nginx.ports["live"], publishes, probes=2 * workers,
                             workers=workers, workdir=tmp)
        _log(f"upload-to-live: stale {live.stale}, errors {live.errors}, "
             f"to-live median {live.summary()['median_ms']:.2f} ms")

    env = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
                   f"load average before the run {os.getloadavg()[0]:.2f}",
        "classic CGI interpreter (scripts' shebang, the fastest found)": f"`{shebang}` "
        f"({_version(shebang)}); start + `import cgi, html, json, datetime`: "
        + ", ".join(f"`{k}` {v * 1000:.0f} ms" for k, v in sorted(timings.items(), key=lambda kv: kv[1])),
        "cgirt, flup WSGI interpreter": f"`{py}` ({platform.python_version()}, flup "
        f"{_dist_version('flup')})",
        "classic CGI": f"fcgiwrap, `-c {workers}` (one fork + exec of the interpreter per request)",
        "bare WSGI": f"flup 1.0.3 `fcgi_fork.WSGIServer` (prefork, {workers} children), "
                     "a hello WSGI callable: the limit of in-process Python on flup",
        "Python floor": f"`bench/pyfloor.py`, {workers} prefork workers running the same .py "
                        "files in-process with none of cgirt's work (no change detection, sandbox, "
                        "header checks, logs or status): what CPython itself costs per request",
        "PHP-FPM": _php_version() + f", `pm = static`, {workers} children, OPcache on "
                   "(timestamps validated every request, `revalidate_freq = 0`)",
        "nginx_version": _nginx_version(),
        "CPU accounting": (f"a cgroup of the benchmark's own per server ({nginx.proc.cgroup.path.parent}): "
                           "every descendant counts, reaped or not"
                           if nginx.proc.cgroup is not None else
                           "/proc counters of each live process tree (children count only once "
                           "their parent reaps them: classic CGI's interpreters are missed)"),
        "scripts": "`bench/site/cgi-bin/{hello,form}.py` and `bench/site/php/{hello,form}.php`; "
                   "the same .py files for classic CGI, cgirt persistent and fork mode",
        "form query": f"`{FORM_QUERY}`",
    }
    if fork_floor is not None:
        env["fork floor"] = (f"{fork_floor:,.0f} µs of CPU (parent and child) for a bare `os.fork()` "
                             "whose child exits at once, from a process preloaded and frozen like "
                             "the fork-mode template (`python -m bench.forkfloor`)")
        env["fork_floor_us"] = f"{fork_floor:.0f}"
    return results, live, env


def _version(exe: str) -> str:
    return subprocess.run([exe, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True).stdout.strip()


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def _php_version() -> str:
    try:
        binary = which("php-fpm", "php-fpm8.2", "php-fpm8.3", "php-fpm8.4")
        out = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
        return out.split("\n", 1)[0].split(" (")[0]
    except SystemExit:
        return "PHP-FPM not installed"


def _nginx_version() -> str:
    out = subprocess.run([which("nginx"), "-v"], capture_output=True, text=True).stderr
    return out.strip().split(": ", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
