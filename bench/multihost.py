"""Runner hosts on a shared sshfs mount: requests per second between publishes, in a publish
window (forced stats), and on a mount with every client cache off.

    python -m bench.multihost [--seconds 4] [--rounds 3]     (root: namespaces and FUSE)

The machines are those of tests/integration/test_multihost.py (tests/support/cluster.py,
so this needs the test extra): a file server and three runner hosts, each with its own
sshfs mount of the same site, each behind its own nginx server block, measured with wrk in
interleaved rounds:

- cached: a runner never notified: the mount's attribute cache, plain `stat`;
- between publishes: a runner notified, measured once its `publish_window` has passed;
- in the window: the same runner just notified: every stat forced past the cache;
- caches off: a mount with `attr_timeout=0,entry_timeout=0`, no notices needed.

The report goes to bench/results/MULTIHOST.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from tests.support.cluster import FileServer, Lan, SshfsMount
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multihost")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.multihost: needs root (network namespaces, FUSE mounts)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="cgirt-bench-multihost-"))
    lan = Lan(f"b{os.getpid() % 1000}", ["cached", "notified", "nocache"])
    try:
        export = work / "export"
        server = FileServer(lan, work / "files", export)
        (export / "site" / "cgi-bin").mkdir(parents=True)
        (export / "site" / "htdocs").mkdir()
        (export / "site" / "cgi-bin" / "hello.py").write_bytes(HELLO)
        secret_file = work / "secret"
        secret_file.write_text(os.urandom(24).hex())
        secret = secret_file.read_bytes()
        blocks, urls = [], {}
        for machine in ("cached", "notified", "nocache"):
            options = (["dir_cache=no"] if machine != "nocache" else
                       ["dir_cache=no", "attr_timeout=0", "entry_timeout=0"])
            mount = SshfsMount(lan, machine, server, work / f"mnt-{machine}", options)
            address = lan.addresses[machine]
            status = f"{address}:{STATUS_PORT}"
            proc = Proc([*lan.enter(machine), sys.executable, "-m", "cgirt", "serve",
                         "--site", str(mount.mountpoint / "site"),
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
                          .replace("{site}", str(mount.mountpoint / "site")))
            urls[machine] = f"http://127.0.0.1:{port}/cgi-bin/hello.py"
        nginx = Nginx(work / "nginx", blocks)
        lan.on_close(nginx.stop)
        for url in urls.values():
            nginx.wait(url.split("/")[2])
        notified_status = f"{lan.addresses['notified']}:{STATUS_PORT}"
        notify(notified_status, secret)  # from now on this runner has been notified
        results: dict[str, list[float]] = {k: [] for k in
                                           ("cached", "between", "window", "nocache")}

        def run(name: str, url: str) -> None:
            out, _ = wrk(url, args.seconds, args.connections)
            rps, _, _, _, errors = parse_wrk(out)
            if errors:
                raise RuntimeError(f"{name}: {errors} errors\n{out}")
            results[name].append(rps)

        for _ in range(args.rounds):
            run("cached", urls["cached"])
            last = time.monotonic()
            wait_for(lambda: time.monotonic() - last > WINDOW + 0.5, WINDOW + 5, "the window")
            run("between", urls["notified"])
            notify(notified_status, secret)
            run_window_with_notices(run, urls["notified"], notified_status, secret)
            run("nocache", urls["nocache"])
        report(results, args)
    finally:
        lan.close()
    return 0


def run_window_with_notices(run: Callable[[str, str], None], url: str, status: str,
                            secret: bytes) -> None:
    """A notice every half window keeps the whole run inside it."""
    stop = threading.Event()

    def keep_notifying() -> None:
        while not stop.wait(min(1.0, WINDOW / 2)):
            notify(status, secret)

    thread = threading.Thread(target=keep_notifying, daemon=True)
    thread.start()
    try:
        run("window", url)
    finally:
        stop.set()
        thread.join(10)


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        ("cached mount, never notified (plain stat)", "cached"),
        ("notified, between publishes (window over)", "between"),
        ("notified, inside the publish window (forced stats)", "window"),
        ("mount with every client cache off", "nocache"),
    ]
    lines = [
        "# Several runner hosts on sshfs: requests per second",
        "",
        f"`python -m bench.multihost --seconds {args.seconds:g} --rounds {args.rounds}`, "
        f"wrk -c {args.connections} through nginx to one runner (2 workers) on its own "
        "sshfs mount (`dir_cache=no`) of a file server in another network namespace, "
        "hello.py, medians of interleaved rounds, on the shared 2-core machine.",
        "",
        "| | req/s | / cached |",
        "|---|---:|---:|",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {med[key]:,.0f} | {med[key] / med['cached']:.2f} |")
    lines += ["", "Every round: " + "; ".join(
        f"{key} {', '.join(f'{x:,.0f}' for x in results[key])}" for _, key in rows), ""]
    text = "\n".join(lines)
    print(text)
    (Path(__file__).parent / "results" / "MULTIHOST.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
