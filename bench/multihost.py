"""Runner hosts on a shared mount (sshfs, GlusterFS): requests per second between publishes,
in a publish window (forced stats), and on a mount with every client cache off.

    python -m bench.multihost [--fs sshfs|gluster|both] [--seconds 6] [--rounds 7]
                                                        (root: namespaces and FUSE)

The machines are those of tests/integration/test_multihost.py (tests/support/cluster.py,
so this needs the test extra): per filesystem, a file server and runner hosts, each with its
own mount of the same site, each behind its own nginx server block. In each round, every
runner is measured beside the cached one: two wrk at once for the same seconds, so that both
meet the same load of this shared machine and their ratio compares like with like:

- cached: a runner never notified: the mount's attribute cache, plain `stat`;
- between publishes: a runner notified once, long before (its `publish_window` passed);
- in the window: a runner notified every half window: every stat forced past the cache;
- caches off: a mount with attribute and name timeouts 0, no notices needed;
- GlusterFS only, gluster's defaults: a runner never notified on a second volume with
  md-cache and open-behind on, as gluster ships (what INSTALL.md's options cost).

The report goes to bench/results/MULTIHOST.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from tests.support.cluster import GlusterServer, Lan, file_server
from tests.support.procs import Proc, wait_for
from tests.support.servers import DEPLOY, REPO, Nginx, connectable, free_port

from cgirt.notice import request

from .load import parse_wrk, wrk

RUNNER_PORT, STATUS_PORT = 9000, 9001
WINDOW = 3.0
HELLO = b'print("Content-Type: text/plain")\nprint()\nprint("Hello, world!")\n'


def notify(address: str, secret: bytes) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request(secret, "site"))
        answer = conn.recv(4096)
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"notice refused: {answer!r}")


# Per filesystem: each measured machine's mount options (and volume, for GlusterFS).
MOUNTS = {
    "sshfs": {"cached": ["dir_cache=no"], "between": ["dir_cache=no"],
              "window": ["dir_cache=no"],
              "nocache": ["dir_cache=no", "attr_timeout=0", "entry_timeout=0"]},
    "gluster": {"cached": [], "between": [], "window": [],
                "nocache": ["--attribute-timeout=0", "--entry-timeout=0"], "defaults": []},
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multihost")
    parser.add_argument("--fs", choices=["sshfs", "gluster", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.multihost: needs root (network namespaces, FUSE mounts)", file=sys.stderr)
        return 2
    kinds = list(MOUNTS) if args.fs == "both" else [args.fs]
    results = {kind: measure(kind, args) for kind in kinds}
    report(results, args)
    return 0


def measure(kind: str, args: argparse.Namespace
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Requests per second of each machine, and each one's ratios to the cached runner."""
    work = Path(tempfile.mkdtemp(prefix=f"cgirt-bench-multihost-{kind}-"))
    machines = list(MOUNTS[kind])
    lan = Lan(f"b{os.getpid() % 1000}{kind[0]}", machines)
    try:
        server = file_server(kind, lan, work / "files", work / "export")
        if "defaults" in machines:
            assert isinstance(server, GlusterServer)
            server.add_volume("defaults", {})
        secret_file = work / "secret"
        secret_file.write_text(os.urandom(24).hex())
        secret = secret_file.read_bytes()
        blocks, urls = [], {}
        for machine in machines:
            mountpoint = work / f"mnt-{machine}"
            if isinstance(server, GlusterServer):
                server.mount(machine, mountpoint, MOUNTS[kind][machine],
                             "defaults" if machine == "defaults" else server.VOLUME)
            else:
                server.mount(machine, mountpoint, MOUNTS[kind][machine])
            site = mountpoint / "site"
            if not (site / "cgi-bin" / "hello.py").exists():
                (site / "cgi-bin").mkdir(parents=True)
                (site / "htdocs").mkdir()
                (site / "cgi-bin" / "hello.py").write_bytes(HELLO)
            address = lan.addresses[machine]
            status = f"{address}:{STATUS_PORT}"
            proc = Proc([*lan.enter(machine), sys.executable, "-m", "cgirt", "serve",
                         "--site", str(site),
                         "--listen", f"{address}:{RUNNER_PORT}", "--workers", "2",
                         "--status-listen", status, "--publish-secret", str(secret_file),
                         "--publish-window", str(WINDOW), "--access-log", "false"],
                        work / f"runner-{machine}.log", cwd=REPO)
            lan.on_close(proc.stop)
            wait_for(lambda: not proc.alive() or connectable(status), 30, f"runner {machine}")
            port = free_port()
            backend = f"{address}:{RUNNER_PORT}"
            blocks.append((DEPLOY / "nginx-cgirt-upstream.conf").read_text()
                          .replace("cgirt_runners", f"cgirt_{machine}")
                          .replace("{runner_a}", backend).replace("{runner_b}", backend)
                          .replace("{listen}", f"127.0.0.1:{port}")
                          .replace("{site}", str(site)))
            urls[machine] = f"http://127.0.0.1:{port}/cgi-bin/hello.py"
        nginx = Nginx(work / "nginx", blocks)
        lan.on_close(nginx.stop)
        for url in urls.values():
            nginx.wait(url.split("/")[2])
        # Notified once: measured only once its window is over.
        notify(f"{lan.addresses['between']}:{STATUS_PORT}", secret)
        notified = time.monotonic()
        wait_for(lambda: time.monotonic() > notified + WINDOW + 0.5, WINDOW + 5, "the window")
        results: dict[str, list[float]] = {k: [] for k in machines}
        ratios: dict[str, list[float]] = {k: [] for k in machines}
        for _ in range(args.rounds):
            for other in machines[1:]:
                pair = side_by_side(["cached", other], urls, args, kind,
                                    f"{lan.addresses['window']}:{STATUS_PORT}"
                                    if other == "window" else "", secret)
                for machine, rps in pair.items():
                    results[machine].append(rps)
                ratios[other].append(pair[other] / pair["cached"])
        ratios["cached"] = [1.0]
        return results, ratios
    finally:
        lan.close()


def side_by_side(machines: list[str], urls: dict[str, str], args: argparse.Namespace,
                 kind: str, window_status: str, secret: bytes) -> dict[str, float]:
    """One wrk per machine, all at once for the same seconds, so that each meets the same
    load of this shared machine; `window_status`, if any, is kept inside its window."""
    outs: dict[str, str] = {}

    def run(machine: str) -> None:
        outs[machine], _ = wrk(urls[machine], args.seconds, args.connections)

    threads = [threading.Thread(target=run, args=(m,)) for m in machines]
    with (notices_every_half_window(window_status, secret) if window_status
          else contextlib.nullcontext()):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rps = {}
    for machine in machines:
        rps[machine], _, _, _, errors = parse_wrk(outs[machine])
        if errors:
            raise RuntimeError(f"{kind} {machine}: {errors} errors\n{outs[machine]}")
    return rps


@contextlib.contextmanager
def notices_every_half_window(status: str, secret: bytes) -> Iterator[None]:
    """Keeps the runner at `status` inside its publish window for as long as this lasts."""
    notify(status, secret)
    stop = threading.Event()

    def keep_notifying() -> None:
        while not stop.wait(min(1.0, WINDOW / 2)):
            notify(status, secret)

    thread = threading.Thread(target=keep_notifying, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def report(results: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]],
           args: argparse.Namespace) -> None:
    rows = [
        ("cached mount, never notified (plain stat)", "cached"),
        ("notified, between publishes (window over)", "between"),
        ("notified, inside the publish window (forced stats)", "window"),
        ("mount with every client cache off", "nocache"),
        ("gluster's defaults (md-cache, open-behind on), never notified", "defaults"),
    ]
    mounts = {
        "sshfs": "its own sshfs mount (`dir_cache=no`)",
        "gluster": "its own GlusterFS 10 mount (FUSE defaults; the volume with "
                   "`performance.stat-prefetch off`, `performance.open-behind off`)",
    }
    lines = [
        "# Several runner hosts on a shared mount: requests per second",
        "",
        f"`python -m bench.multihost --fs {args.fs} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}`, wrk -c {args.connections} through nginx to one runner "
        "(2 workers) on a mount of a file server in another network namespace, hello.py; "
        "in each round every runner measured side by side with the cached one (two wrk at "
        "once: the same load of the shared 2-core machine); medians of the requests per "
        "second and of the pairs' ratios.",
    ]
    for kind, (runs, ratios) in results.items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        ratio = {k: statistics.median(v) for k, v in ratios.items()}
        lines += ["", f"## {kind}: each runner on {mounts[kind]}", "",
                  "| | req/s | / cached |", "|---|---:|---:|"]
        present = [(label, key) for label, key in rows if key in med]
        for label, key in present:
            lines.append(f"| {label} | {med[key]:,.0f} | {ratio[key]:.2f} |")
        lines += ["", "Each pair's ratio to the cached runner beside it: " + "; ".join(
            f"{key} {', '.join(f'{x:.2f}' for x in ratios[key])}"
            for _, key in present if key != "cached")]
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results" / "MULTIHOST.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
