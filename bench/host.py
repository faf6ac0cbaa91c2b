"""`python -m bench.host`: many sites on one machine, `cgirt host` against PHP-FPM.

Both serve the same N sites (default 1,000): cgirt host with `pm = "ondemand"` sites,
PHP-FPM with one `pm = ondemand` pool per site, each site on its own unix socket, one nginx
in front of both (one server block each, the site chosen by the Host header, the rest as in
deploy/nginx-cgirt.conf). Measured:

- density: processes and total PSS (/proc/PID/smaps_rollup) of each server with every site
  idle;
- cold start: the first request to an idle site through nginx, p50 and p99, over sites that
  never had a worker (interleaved: a cgirt site, a PHP site, ...);
- spread: wrk with every request to one of 200 sites (a Lua script picks the Host);
- one busy site: wrk on one site of the host against `cgirt serve --workers 2` on a copy.

The report and chart go to bench/results/HOST.md and host.png (with host.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .load import parse_wrk
from .procs import CpuGroup, Proc, cpu_seconds, tree, wait_for
from .stack import BENCH, IS_ROOT, REPO, which
from tests.support.nginxconf import nginx_main

HELLO_PY = '#!/usr/bin/python3\nprint("Content-Type: text/plain")\nprint()\nprint("Hello, world!")\n'
HELLO_PHP = '<?php\nheader("Content-Type: text/plain");\necho "Hello, world!\\n";\n'

NGINX_SERVERS = """
    server {{
        listen 127.0.0.1:{cgirt_port};
        server_name ~^(?<site>s\\d+|serve)\\.bench$;
        root {tmp}/sites/$site/htdocs;
        location /cgi-bin/ {{
            fastcgi_split_path_info ^(/cgi-bin/.+?\\.(?:py|cgi|sh|pl))(/.*)$;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {tmp}/sites/$site$fastcgi_script_name;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_param HTTP_PROXY "";
            fastcgi_pass unix:{tmp}/cgirt-$site.sock;
            fastcgi_read_timeout 120s;
            fastcgi_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{php_port};
        server_name ~^(?<site>s\\d+)\\.bench$;
        root {tmp}/sites/$site/php;
        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param HTTP_PROXY "";
            fastcgi_pass unix:{tmp}/php-$site.sock;
            fastcgi_read_timeout 120s;
            fastcgi_buffering off;
        }}
    }}
"""

PHP_GLOBAL = """[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm.log
daemonize = no
rlimit_files = {files}
"""

PHP_POOL = """[{name}]
{user}
listen = {tmp}/php-{name}.sock
listen.mode = 0666
pm = ondemand
pm.max_children = 2
pm.process_idle_timeout = {idle}s
php_admin_value[opcache.enable] = 1
php_admin_value[opcache.validate_timestamps] = 1
php_admin_value[opcache.revalidate_freq] = 0
"""

SPREAD_LUA = """
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Host"] = string.format("s%04d.bench", counter % {sites})
  return wrk.format("GET", "{path}")
end
"""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def site_name(i: int) -> str:
    return f"s{i:04d}"


def make_sites(tmp: Path, n: int) -> None:
    for i in range(n):
        base = tmp / "sites" / site_name(i)
        for d in ("cgi-bin", "htdocs", "php"):
            (base / d).mkdir(parents=True)
        (base / "cgi-bin" / "hello.py").write_text(HELLO_PY)
        (base / "php" / "hello.php").write_text(HELLO_PHP)
    shutil.copytree(tmp / "sites" / site_name(0), tmp / "sites" / "serve")


def host_config(tmp: Path, n: int, idle: int, total: int) -> Path:
    lines = ["[host]", f"max_workers_total = {total}", "pm = \"ondemand\"", f"idle_timeout = {idle}",
             "allow_root_site = true", "", "[runner]", "workers = 2", 'socket_mode = "666"', ""]
    for i in range(n):
        name = site_name(i)
        lines += [f"[sites.{name}]", f'site = "{tmp}/sites/{name}"',
                  f'listen = "unix:{tmp}/cgirt-{name}.sock"', ""]
    path = tmp / "cgirt.toml"
    path.write_text("\n".join(lines))
    return path


def php_config(tmp: Path, n: int, idle: int) -> Path:
    user = "user = root\ngroup = root" if IS_ROOT else ""
    import resource
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    text = PHP_GLOBAL.format(tmp=tmp, files=files) + "".join(
        PHP_POOL.format(name=site_name(i), tmp=tmp, user=user, idle=idle) for i in range(n))
    path = tmp / "php-fpm.conf"
    path.write_text(text)
    return path


def pss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def get(port: int, host: str, path: str) -> tuple[float, bytes]:
    """One request on a new connection; its latency in ms and its body."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    ms = (time.perf_counter() - t0) * 1000
    return ms, data


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wrk_host(port: int, host: str, path: str, seconds: float, connections: int) -> dict[str, float]:
    argv_url = f"http://127.0.0.1:{port}{path}"
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{round(seconds)}s",
                          "--timeout", "10s", "--latency", "-H", f"Host: {host}", argv_url],
                         capture_output=True, text=True, check=True).stdout
    rps, p50, p99, requests, errors = parse_wrk(out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests, "errors": errors}


def wrk_spread(tmp: Path, port: int, path: str, sites: int, seconds: float,
               connections: int) -> dict[str, float]:
    script = tmp / f"spread-{port}.lua"
    script.write_text(SPREAD_LUA.format(sites=sites, path=path))
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{round(seconds)}s",
                          "--timeout", "10s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps, p50, p99, requests, errors = parse_wrk(out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests, "errors": errors}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_notified(notify: socket.socket, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    notify.settimeout(0.2)
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"cgirt host exited:\n{proc.output()}")
        try:
            if b"READY=1" in notify.recv(4096):
                return
        except socket.timeout:
            continue
    raise TimeoutError("cgirt host did not report READY=1")


def settle(root: int, seconds: float = 1.0) -> list[int]:
    """The process tree once it has stopped changing for `seconds`."""
    last: list[int] = []
    stable_since = time.monotonic()
    deadline = stable_since + 60
    while time.monotonic() < deadline:
        now = sorted(tree(root))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            return now
        time.sleep(0.1)  # polling interval of a deadline wait
    return last


def run(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> dict[str, Any]:
    n = args.sites
    idle = args.idle_timeout
    _log(f"making {n} sites in {tmp}")
    make_sites(tmp, n)
    python = sys.executable
    results: dict[str, Any] = {"sites": n, "idle_timeout": idle, "load": os.getloadavg()}

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    stack.callback(notify.close)
    groups = {key: CpuGroup.make(f"host-{key}") for key in ("cgirt", "php")}
    for group in groups.values():
        if group is not None:
            stack.callback(group.remove)
    t0 = time.monotonic()
    host = Proc([python, "-m", "cgirt", "host", "--config", str(host_config(tmp, n, idle, args.total))],
                tmp / "host.log", env={**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock")},
                cwd=REPO, cgroup=groups["cgirt"])
    stack.callback(host.stop)
    wait_notified(notify, host, 300)
    results["host_start_s"] = time.monotonic() - t0
    _log(f"cgirt host ready: {n} sockets bound in {results['host_start_s']:.2f} s")

    php_bin = which("php-fpm", "php-fpm8.2", "php-fpm8.3", "php-fpm8.4", "php-fpm8.1")
    t0 = time.monotonic()
    php_argv = [php_bin, "--nodaemonize", "--fpm-config", str(php_config(tmp, n, idle)),
                "-d", "opcache.enable=1"] + (["--allow-to-run-as-root"] if IS_ROOT else [])
    php = Proc(php_argv, tmp / "php.log", cgroup=groups["php"])
    stack.callback(php.stop)
    last = tmp / f"php-{site_name(n - 1)}.sock"
    wait_for(lambda: last.exists() or not php.alive(), 300, "php-fpm's sockets")
    if not php.alive():
        raise RuntimeError(f"php-fpm exited:\n{php.output()}")
    results["php_start_s"] = time.monotonic() - t0

    # -- density -------------------------------------------------------------------------
    density: dict[str, Any] = {}
    for key, proc in (("cgirt", host), ("php", php)):
        pids = settle(proc.pid)
        density[key] = {"processes": len(pids), "pss_mib": pss_mib(pids)}
        _log(f"idle {key}: {len(pids)} processes, {density[key]['pss_mib']:.1f} MiB PSS")
    results["density"] = density

    cgirt_port, php_port = free_ports(2)
    (tmp / "nginx").mkdir()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(nginx_main(tmp, [NGINX_SERVERS.format(
        tmp=tmp, cgirt_port=cgirt_port, php_port=php_port)], level="warn", connections=4096))
    nginx = Proc([which("nginx"), "-e", str(tmp / "nginx-error.log"), "-p", str(tmp / "nginx"),
                  "-c", str(conf)], tmp / "nginx.out")
    stack.callback(nginx.stop)

    def nginx_up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", php_port), timeout=1).close()
            socket.create_connection(("127.0.0.1", cgirt_port), timeout=1).close()
            return True
        except OSError:
            return not nginx.alive()

    wait_for(nginx_up, 30, "nginx")

    # -- cold start ------------------------------------------------------------------------
    cold: dict[str, list[float]] = {"cgirt": [], "php": []}
    cpu_before = (host.cpu_seconds(), php.cpu_seconds())
    # Sites from the end of the list, never asked before; the spread test uses the first 200.
    for i in range(n - 1, n - 1 - args.cold, -1):
        name = f"{site_name(i)}.bench"
        for key, port, path in (("cgirt", cgirt_port, "/cgi-bin/hello.py"),
                                ("php", php_port, "/hello.php")):
            ms, body = get(port, name, path)
            if b"Hello, world!\n" not in body or b" 200 " not in body.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"{key} {name}: unexpected response {body[:200]!r}")
            cold[key].append(ms)
    # Robust where wall times are not (other work on the machine): each server's CPU, its
    # new workers included (they live on, idle), per cold start.
    cold_cpu = {key: (after - before) / args.cold * 1e6 for key, before, after
                in zip(("cgirt", "php"), cpu_before, (host.cpu_seconds(), php.cpu_seconds()))}
    warm = {key: [get(port, f"{site_name(n - 1)}.bench", path)[0] for _ in range(args.cold)]
            for key, port, path in (("cgirt", cgirt_port, "/cgi-bin/hello.py"),
                                    ("php", php_port, "/hello.php"))}
    results["cold_start"] = {
        key: {"p50_ms": statistics.median(v), "p99_ms": percentile(v, 99), "max_ms": max(v),
              "samples": len(v), "warm_p50_ms": statistics.median(warm[key]),
              "cpu_us": cold_cpu[key]}
        for key, v in cold.items()}
    for key, r in results["cold_start"].items():
        _log(f"cold {key}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
             f"(warm p50 {r['warm_p50_ms']:.2f} ms), server CPU {r['cpu_us']:.0f} µs per cold start")
    if args.cold_only:
        return results

    # -- spread over 200 sites, and one busy site ------------------------------------------
    spread = min(200, n)
    results["spread"] = {"sites": spread, "cgirt": [], "php": []}
    busy_site = f"{site_name(0)}.bench"
    serve = Proc([python, "-m", "cgirt", "serve", "--site", str(tmp / "sites" / "serve"),
                  "--listen", f"unix:{tmp}/cgirt-serve.sock", "--workers", "2", "--socket-mode", "666"],
                 tmp / "serve.log", cwd=REPO)
    stack.callback(serve.stop)
    wait_for(lambda: os.path.exists(f"{tmp}/cgirt-serve.sock") and len(tree(serve.pid)) >= 3, 60,
             "cgirt serve")
    results["busy"] = {"cgirt host": [], "cgirt serve": []}
    for i in range(spread):  # every site of the spread has a worker before it is measured
        for port, path in ((cgirt_port, "/cgi-bin/hello.py"), (php_port, "/hello.php")):
            get(port, f"{site_name(i)}.bench", path)
    for key, port, path in (("cgirt", cgirt_port, "/cgi-bin/hello.py"), ("php", php_port, "/hello.php")):
        wrk_spread(tmp, port, path, spread, 2, args.connections)
    for host_name in (busy_site, "serve.bench"):
        wrk_host(cgirt_port, host_name, "/cgi-bin/hello.py", 2, args.connections)
    for r in range(args.rounds):
        for key, port, path in (("cgirt", cgirt_port, "/cgi-bin/hello.py"), ("php", php_port, "/hello.php")):
            root = host.pid if key == "cgirt" else php.pid
            cpu = cpu_seconds([root])[0]
            m = wrk_spread(tmp, port, path, spread, args.seconds, args.connections)
            m["cpu_us"] = (cpu_seconds([root])[0] - cpu) / max(m["requests"], 1) * 1e6
            m["processes"] = len(tree(root))
            results["spread"][key].append(m)
            _log(f"round {r + 1} spread {key}: {m['rps']:.0f} req/s, p99 {m['p99_ms']:.2f} ms, "
                 f"{m['processes']} processes" + (f", ERRORS {m['errors']}" if m["errors"] else ""))
        for key, host_name, root in (("cgirt host", busy_site, host.pid),
                                     ("cgirt serve", "serve.bench", serve.pid)):
            cpu = cpu_seconds([root])[0]
            m = wrk_host(cgirt_port, host_name, "/cgi-bin/hello.py", args.seconds, args.connections)
            m["cpu_us"] = (cpu_seconds([root])[0] - cpu) / max(m["requests"], 1) * 1e6
            results["busy"][key].append(m)
            _log(f"round {r + 1} busy {key}: {m['rps']:.0f} req/s, p99 {m['p99_ms']:.2f} ms"
                 + (f", ERRORS {m['errors']}" if m["errors"] else ""))
    return results


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    d, c = results["density"], results["cold_start"]
    sp, busy = results["spread"], results["busy"]
    n = results["sites"]
    pss_ok = d["cgirt"]["pss_mib"] <= 150
    cold_ok = c["cgirt"]["p99_ms"] <= 15
    lines = [
        "# cgirt host: many sites on one machine",
        "",
        f"{meta['date']}, commit {meta['commit']}, {meta['machine']}; Python {meta['python']}, "
        f"{meta['php']}. `python -m bench.host --sites {n}` (`./bench/run host`); load average "
        f"at start {results['load'][0]:.1f}.",
        "",
        "| | cgirt host | PHP-FPM (`pm = ondemand`) | target |",
        "|---|---:|---:|---|",
        f"| {n} idle sites: processes | {d['cgirt']['processes']} | {d['php']['processes']} | |",
        f"| {n} idle sites: total PSS | {d['cgirt']['pss_mib']:.1f} MiB | {d['php']['pss_mib']:.1f} MiB "
        f"| ≤ 150 MiB: {'met' if pss_ok else 'NOT met'} |",
        f"| cold first request through nginx, p50 | {c['cgirt']['p50_ms']:.2f} ms | {c['php']['p50_ms']:.2f} ms | |",
        f"| cold first request through nginx, p99 | {c['cgirt']['p99_ms']:.2f} ms | {c['php']['p99_ms']:.2f} ms "
        f"| ≤ 15 ms: {'met' if cold_ok else 'NOT met'} |",
        f"| the same, server CPU per cold start | {c['cgirt'].get('cpu_us', 0):.0f} µs | {c['php'].get('cpu_us', 0):.0f} µs | |",
        f"| the same, warm (a worker waiting), p50 | {c['cgirt']['warm_p50_ms']:.2f} ms | "
        f"{c['php']['warm_p50_ms']:.2f} ms | |",
        f"| requests spread over {sp['sites']} sites, req/s | {median_of(sp['cgirt'], 'rps'):.0f} | "
        f"{median_of(sp['php'], 'rps'):.0f} | |",
        f"| the same, p99 | {median_of(sp['cgirt'], 'p99_ms'):.2f} ms | {median_of(sp['php'], 'p99_ms'):.2f} ms | |",
        f"| the same, processes after a round | {median_of(sp['cgirt'], 'processes'):.0f} | "
        f"{median_of(sp['php'], 'processes'):.0f} | |",
        f"| the same, server CPU per request | {median_of(sp['cgirt'], 'cpu_us'):.0f} µs | "
        f"{median_of(sp['php'], 'cpu_us'):.0f} µs | |",
        "",
        "One busy site (hello.py, wrk with "
        f"{meta['connections']} connections), medians of {meta['rounds']} interleaved rounds:",
        "",
        "| | req/s | p50 | p99 | CPU per request |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, rounds in busy.items():
        lines.append(f"| {key} | {median_of(rounds, 'rps'):.0f} | {median_of(rounds, 'p50_ms'):.2f} ms | "
                     f"{median_of(rounds, 'p99_ms'):.2f} ms | {median_of(rounds, 'cpu_us'):.0f} µs |")
    lines += [
        "",
        "How: both servers serve the same sites, each on its own unix socket, behind one nginx",
        "(the site chosen by the Host header). Density is every process of each server's tree",
        "with no site ever asked, PSS summed from /proc/PID/smaps_rollup. Cold start is the",
        f"first request to each of {c['cgirt']['samples']} sites that never had a worker, a new",
        "connection each, interleaved between the two servers; warm is the same request again to",
        "a site with a worker waiting. Server CPU per cold start: each server's CPU over the",
        "cold starts (its cgroup's counter, every process it started; its tree's /proc counters",
        "where no cgroup can be made), over their number. Spread: wrk's Lua script sends request k to site k mod",
        f"{sp['sites']}, after a warm-up that gave every one of them a worker. Both servers allow",
        f"2 workers per site; cgirt host's max_workers_total is {meta['total']}.",
        "",
        "What bounds the figures: the machine has 2 cores shared with other work (the",
        "load average above), which sets the cold-start p99 of both servers, each in",
        "proportion to the CPU a cold start takes (the row above). A cgirt cold start runs a",
        "Python worker's boot and first request: milliseconds of CPU, even with the pages it",
        "would copy from the zygote copied ahead by the waiting spare.",
        "Spread over 200 sites, each cgirt worker serves a request now and then and meets it",
        "with cold caches: a Python worker's private heap (its touched pages are its own after",
        "fork, as reference counts write to them) against PHP's opcache, shared by every",
        "worker; the master's own CPU per request is a few microseconds.",
        "",
        "Start-up: cgirt host bound its sockets and reported ready in "
        f"{results['host_start_s']:.2f} s; PHP-FPM's last socket appeared after {results['php_start_s']:.2f} s.",
        "",
        "![cgirt host vs PHP-FPM](host.png)",
        "",
    ]
    return "\n".join(lines)


def chart(path: Path, results: dict[str, Any]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, c, sp = results["density"], results["cold_start"], results["spread"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    names, colours = ["cgirt host", "PHP-FPM"], ["#1565c0", "#8e24aa"]
    axes[0].bar(names, [d["cgirt"]["pss_mib"], d["php"]["pss_mib"]], color=colours)
    axes[0].axhline(150, color="#c62828", linestyle="--", linewidth=1, label="target")
    axes[0].set_title(f"{results['sites']} idle sites: total PSS (MiB)")
    axes[0].legend()
    x = range(2)
    axes[1].bar([i - 0.2 for i in x], [c["cgirt"]["p50_ms"], c["cgirt"]["p99_ms"]], 0.4,
                color=colours[0], label=names[0])
    axes[1].bar([i + 0.2 for i in x], [c["php"]["p50_ms"], c["php"]["p99_ms"]], 0.4,
                color=colours[1], label=names[1])
    axes[1].axhline(15, color="#c62828", linestyle="--", linewidth=1)
    axes[1].set_xticks(list(x), ["p50", "p99"])
    axes[1].set_title("cold first request (ms)")
    axes[1].legend()
    axes[2].bar(names, [median_of(sp["cgirt"], "rps"), median_of(sp["php"], "rps")], color=colours)
    axes[2].set_title(f"spread over {sp['sites']} sites (req/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.host", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=1000, help="sites served by each (default 1000)")
    ap.add_argument("--cold", type=int, default=200, help="cold starts measured per server")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk round")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections")
    ap.add_argument("--idle-timeout", type=int, default=60, help="both servers' idle timeout")
    ap.add_argument("--total", type=int, default=512, help="cgirt host's max_workers_total")
    ap.add_argument("--out", type=Path, default=BENCH / "results", help="report directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--cold-only", action="store_true",
                    help="measure density and cold starts only, print them, write no report")
    args = ap.parse_args(argv)
    if args.cold > args.sites:
        ap.error("--cold cannot exceed --sites: each cold start needs a site never asked")
    if args.cold > args.sites - 200 and args.sites > 200 and not args.cold_only:
        ap.error("--cold must leave the 200 sites of the spread test untouched")
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = Path(tempfile.mkdtemp(prefix="cgirt-bench-host-"))
    os.chmod(tmp, 0o755)
    try:
        with ExitStack() as stack:
            results = run(args, tmp, stack)
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.cold_only:
        return 0
    php_version = subprocess.run([which("php-fpm", "php-fpm8.2", "php-fpm8.3"), "-v"],
                                 capture_output=True, text=True).stdout.split("\n")[0]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, cwd=REPO).stdout.strip(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
        "python": platform.python_version(), "php": php_version,
        "rounds": args.rounds, "connections": args.connections, "total": args.total,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (args.out / "HOST.md").write_text(markdown(results, meta))
    try:
        chart(args.out / "host.png", results)
    except ImportError:
        _log("matplotlib is missing: no chart (./bench/run host installs it)")
    _log(f"report: {args.out / 'HOST.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
