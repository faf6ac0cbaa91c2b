"""Two sites behind one nginx, one runner per site (or one `cgirt host` for both: HostStack),
one FTP gateway with a user per site.

Everything is a real process started in its own session and stopped by PID and process
group (tests/support/procs.py, tests/integration/ftp/ftp_harness.py); nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.ftp.ftp_harness import Gateway, run_cli, start_gateway, stop_gateway
from tests.support.procs import group_members, running
from tests.support.servers import Host, Nginx, Runner, nginx_server_block

SITES = ("alpha", "beta")
USERS = {"alpha": "alice", "beta": "bob"}
VERSIONED = ("ver1.py", "ver2.py")
LINES = 120  # lines per versioned body: a torn file or a cut response cannot hide in it
HUGE_BYTES = 16 * 1024 * 1024

HOSTILE = {
    # name: (source, the status a request must get)
    "loop.py": ("import time\nwhile True:\n    try:\n        while True:\n"
                "            time.sleep(0.01)\n    except:  # noqa: E722\n        pass\n", 504),
    "exit.py": ("import os\nos._exit(3)\n", 502),
    "bomb.py": ("hog = []\nwhile True:\n    hog.append(bytearray(b'x' * (8 * 1024 * 1024)))\n", 500),
    "huge.py": ("import sys\nprint('Content-Type: application/octet-stream')\nprint()\n"
                "sys.stdout.flush()\nblock = b'h' * (1024 * 1024)\n"
                f"for _ in range({HUGE_BYTES // (1024 * 1024)}):\n"
                "    sys.stdout.buffer.write(block)\n", 200),
}


def version_source(site: str, script: str, n: int, broken: bool = False) -> bytes:
    """A script whose every output line names its version; `broken` adds a syntax error."""
    lines = ['print("Content-Type: text/plain")', "print()"]
    lines += [f'print("{site} {script} {n} {i}")' for i in range(LINES)]
    lines.append(f'print("end {site} {script} {n}"' + ("" if broken else ")"))
    pad = " " * (n % 3)  # sizes vary, and repeat: same-size rewrites happen too
    return ("\n".join(lines) + pad + "\n").encode()


def parse_version(site: str, script: str, body: bytes) -> int | None:
    """The version a body shows, or None if it mixes versions or is cut short."""
    lines = body.decode("utf-8", "replace").splitlines()
    if len(lines) != LINES + 1 or not lines[0].startswith(f"{site} {script} "):
        return None
    try:
        n = int(lines[0].split()[2])
    except (IndexError, ValueError):
        return None
    expected = [f"{site} {script} {n} {i}" for i in range(LINES)] + [f"end {site} {script} {n}"]
    return n if lines == expected else None


def make_site(root: Path, name: str) -> Path:
    site = root / name
    (site / "cgi-bin").mkdir(parents=True)
    (site / "htdocs").mkdir()
    (site / "htdocs" / "static.txt").write_text(f"static {name}\n" * 100)
    cgi = site / "cgi-bin"
    (cgi / "hello.py").write_text(
        f'print("Content-Type: text/plain")\nprint()\nprint("hello {name}")\n')
    for script in VERSIONED:
        (cgi / script).write_bytes(version_source(name, script, 0))
    (cgi / "killme.py").write_bytes(version_source(name, "killme.py", 0))
    for script, (source, _status) in HOSTILE.items():
        (cgi / script).write_text(source)
    return site


@dataclass
class Stack:
    root: Path
    workers: int = 2
    timeout: float = 2.0
    memory_limit: str = "256M"
    sites: dict[str, Path] = field(default_factory=dict)
    runners: dict[str, Runner] = field(default_factory=dict)
    http: dict[str, str] = field(default_factory=dict)
    old_gateway_logs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.gateway: Gateway | None = None
        self.nginx: Nginx | None = None
        self.seen_workers: set[int] = set()

    def start(self) -> None:
        for name in SITES:
            self.sites[name] = make_site(self.root, name)
        users = self.root / "users.json"
        for name in SITES[1:]:  # the first user is added by start_gateway
            run_cli("user", "add", USERS[name], "--site", str(self.sites[name]),
                    "--users", str(users), stdin="correct horse battery\n")
        self.start_gateway()
        backends = self.start_backends()
        blocks = []
        for name in SITES:
            self.http[name] = f"unix:{self.root / f'http-{name}.sock'}"
            blocks.append(nginx_server_block(self.sites[name], self.http[name], backends[name]))
        self.nginx = Nginx(self.root / "nginx", blocks)
        for name in SITES:
            self.nginx.wait(self.http[name])

    def start_backends(self) -> dict[str, str]:
        """A runner per site; each site's FastCGI address."""
        for name in SITES:
            workdir = self.root / f"runner-{name}"
            workdir.mkdir()
            self.runners[name] = Runner(
                self.sites[name], workdir, "--timeout", str(self.timeout),
                "--memory-limit", self.memory_limit, workers=self.workers)
        return {name: r.address for name, r in self.runners.items()}

    def start_gateway(self) -> Gateway:
        gw = start_gateway(self.root, "--max-connections-per-ip", "64",
                           "--ban-failures", "1000", site=self.sites[SITES[0]],
                           user=USERS[SITES[0]])
        with self.lock:
            self.gateway = gw
        return gw

    def restart_gateway(self, sig: int = signal.SIGTERM) -> int:
        """Stop the gateway with `sig` (mid-upload, as the caller arranges); start a new one.
        Returns the old gateway's exit status."""
        with self.lock:
            old = self.gateway
            self.gateway = None
        assert old is not None
        os.killpg(old.proc.pid, sig)
        code = old.proc.wait(timeout=15)
        stop_gateway(old.proc)
        self.old_gateway_logs.append(old.log())
        self.start_gateway()
        return code

    def current_gateway(self) -> Gateway | None:
        with self.lock:
            return self.gateway

    def ftp_login(self, site: str) -> tuple[Gateway, object]:
        gw = self.current_gateway()
        if gw is None:
            raise ConnectionError("the gateway is restarting")
        return gw, gw.ftp(user=USERS[site])

    # -- observation ----------------------------------------------------------------

    def masters(self) -> dict[str, int]:
        pids = {f"runner-{n}": r.pid for n, r in self.runners.items()}
        gw = self.current_gateway()
        if gw is not None:
            pids["gateway"] = gw.proc.pid
        if self.nginx is not None:
            pids["nginx"] = self.nginx.proc.pid
        return pids

    def worker_pids(self) -> dict[str, list[int]]:
        out = {n: r.worker_pids() for n, r in self.runners.items()}
        for pids in out.values():
            self.seen_workers.update(pids)
        return out

    # -- shutdown -------------------------------------------------------------------

    def stop(self) -> dict[str, int | None]:
        """Stop everything; the exit status of each, and the processes left over."""
        codes: dict[str, int | None] = {}
        if self.nginx is not None:
            self.nginx.stop()
            codes["nginx"] = self.nginx.proc.popen.returncode
        for name, runner in self.runners.items():
            codes[f"runner-{name}"] = runner.proc.stop()
        gw = self.current_gateway()
        if gw is not None:
            stop_gateway(gw.proc)
            codes["gateway"] = gw.proc.returncode
            self.old_gateway_logs.append(gw.log())
        return codes

    def logs(self) -> list[str]:
        """The runners' own logs (the gateway's are in old_gateway_logs)."""
        return [r.proc.log.read_text(errors="replace") for r in self.runners.values()]

    def leftovers(self) -> list[int]:
        """Processes of this stack still alive: workers ever seen, and the groups."""
        alive = [p for p in self.seen_workers if running(p)]
        for pid in self.masters().values():
            alive += group_members(pid)
        return sorted(set(alive))


@dataclass
class HostStack(Stack):
    """The same two sites served by one `cgirt host` master: alpha a static pool, beta an
    on-demand one (its workers come and go with the load)."""

    host: Host | None = None

    def start_backends(self) -> dict[str, str]:
        backends = {name: f"unix:{self.root / f'{name}.sock'}" for name in SITES}
        pools = {SITES[0]: 'pm = "static"', SITES[1]: f'pm = "ondemand"\nmax_workers = {self.workers}'}
        # Root-owned sites, as the runners serve them: no owner to drop to.
        lines = ["[host]", "idle_timeout = 5", "allow_root_site = true", ""]
        for name in SITES:
            lines += [f"[sites.{name}]", f'site = "{self.sites[name]}"',
                      f'listen = "{backends[name]}"', f"workers = {self.workers}",
                      f"timeout = {self.timeout}", f'memory_limit = "{self.memory_limit}"',
                      pools[name], ""]
        config = self.root / "cgirt-host.toml"
        config.write_text("\n".join(lines))
        workdir = self.root / "host"
        workdir.mkdir()
        self.host = Host(config, workdir)
        return backends

    def masters(self) -> dict[str, int]:
        pids = super().masters()
        if self.host is not None:
            pids["host"] = self.host.pid
        return pids

    def worker_pids(self) -> dict[str, list[int]]:
        assert self.host is not None
        out = {n: self.host.workers_of(f"unix:{self.root / f'{n}.sock'}") for n in SITES}
        for pids in out.values():
            self.seen_workers.update(pids)
        return out

    def stop(self) -> dict[str, int | None]:
        codes = super().stop()
        if self.host is not None:
            codes["host"] = self.host.stop()
        return codes

    def logs(self) -> list[str]:
        return [self.host.proc.log.read_text(errors="replace")] if self.host is not None else []


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
