"""The servers under test, all on this machine: one nginx with a server block per target on
a loopback port, and the FastCGI backends behind it on unix sockets."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tests.support.nginxconf import nginx_main

from .procs import CpuGroup, Proc, tree, wait_for

# The form request of the benchmark (bench.__main__ and bench.hotpath): kept here, where
# bench.hotpath can import it without the benchmark runner (whose imports, decimal among
# them, a real worker does not hold and whose presence changes what the worker does).
FORM_QUERY = ("name=Ada+%3CLovelace%3E&tag=math&tag=%3Cb%3Eengines%3C%2Fb%3E&tag=poetry"
              "&n=20&comment=Tea+%26+%22cake%22")

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
IS_ROOT = os.geteuid() == 0


def which(binary: str, *more: str) -> str:
    for name in (binary, *more):
        found = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
        if found:
            return found
    raise SystemExit(f"bench: {binary} is not installed (./bench/run installs it as root)")


def connectable(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def fastest_python(candidates: Sequence[str]) -> tuple[str, dict[str, float]]:
    """The interpreter that starts and imports cgi fastest: the honest shebang for classic CGI."""
    timings: dict[str, float] = {}
    for exe in dict.fromkeys(candidates):
        if not os.access(exe, os.X_OK):
            continue
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            r = subprocess.run([exe, "-W", "ignore", "-c", "import cgi, html, json, datetime"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode != 0:
                break
            best = min(best, time.perf_counter() - t0)
        else:
            timings[exe] = best
    if not timings:
        raise SystemExit("bench: no Python interpreter that can `import cgi` for classic CGI")
    return min(timings, key=timings.__getitem__), timings


def python_candidates() -> list[str]:
    found = ["/usr/bin/python3", "/usr/local/bin/python3", sys.executable]
    home = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if home.is_dir():  # the real binaries, not pyenv's shims (a shell script per start)
        found += sorted(str(p) for p in home.glob("3.1[0-2]*/bin/python3"))
    return found


def make_site(dest: Path, shebang: str) -> Path:
    """A copy of bench/site with the scripts' shebang set to the chosen interpreter."""
    shutil.copytree(BENCH / "site", dest)
    for script in (dest / "cgi-bin").glob("*.py"):
        text = script.read_text().split("\n", 1)[1]
        script.write_text(f"#!{shebang}\n{text}")
        script.chmod(0o755)
    return dest


# -- backends -------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    proc: Proc
    socket: str  # unix socket path nginx connects to

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        return [p for p in tree(self.proc.pid) if p != self.proc.pid] or [self.proc.pid]


def start_backend(stack: ExitStack, name: str, argv: Sequence[str], sock: str, log: Path,
                  expect_workers: int = 0, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> Backend:
    group = CpuGroup.make(name)
    if group is not None:
        stack.callback(group.remove)
    proc = Proc(argv, log, env=env, cwd=cwd, cgroup=group)
    stack.callback(proc.stop)
    wait_for(lambda: connectable(sock) or not proc.alive(), 30, f"{name} on {sock}")
    if not proc.alive():
        raise RuntimeError(f"{name} failed to start:\n{proc.output()}")
    backend = Backend(name, proc, sock)
    if expect_workers:
        wait_for(lambda: len(backend.workers()) >= expect_workers, 30, f"{name} workers")
    return backend


def cgirt_argv(python: str, site: Path, sock: str, workers: int, mode: str) -> list[str]:
    return [python, "-m", "cgirt", "serve", "--site", str(site), "--listen", f"unix:{sock}",
            "--workers", str(workers), "--mode", mode, "--socket-mode", "666"]


PHP_FPM_CONF = """
[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm.log
daemonize = no

[bench]
{user}
listen = {sock}
listen.mode = 0666
pm = static
pm.max_children = {workers}
pm.max_requests = 0
catch_workers_output = yes
; OPcache on; scripts re-validated on every request, as cgirt stats every script per request
php_admin_value[opcache.enable] = 1
php_admin_value[opcache.validate_timestamps] = 1
php_admin_value[opcache.revalidate_freq] = 0
"""


def php_fpm_argv(tmp: Path, sock: str, workers: int) -> list[str]:
    binary = which("php-fpm", "php-fpm8.2", "php-fpm8.3", "php-fpm8.4", "php-fpm8.1")
    conf = tmp / "php-fpm.conf"
    conf.write_text(PHP_FPM_CONF.format(tmp=tmp, sock=sock, workers=workers,
                                         user="user = root\ngroup = root" if IS_ROOT else ""))
    argv = [binary, "--nodaemonize", "--fpm-config", str(conf), "-d", "opcache.enable=1"]
    return argv + (["--allow-to-run-as-root"] if IS_ROOT else [])


def php_fpm_opcache_on(binary_argv: Sequence[str]) -> bool:
    out = subprocess.run([binary_argv[0], "-m"], capture_output=True, text=True).stdout
    return "Zend OPcache" in out


# -- nginx ----------------------------------------------------------------------------

# The tested deployment block (deploy/nginx-cgirt.conf) serves classic CGI and cgirt alike;
# the PHP and WSGI blocks below use the same FastCGI settings.
PHP_BLOCK = """
server {{
    listen {listen};
    server_name localhost;
    root {root};
    location ~ \\.php$ {{
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param HTTP_PROXY "";
        fastcgi_pass {backend};
        fastcgi_read_timeout 120s;
        fastcgi_buffering off;
    }}
}}
"""

WSGI_BLOCK = """
server {{
    listen {listen};
    server_name localhost;
    location / {{
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_NAME "";
        fastcgi_param PATH_INFO $uri;
        fastcgi_param HTTP_PROXY "";
        fastcgi_pass {backend};
        fastcgi_read_timeout 120s;
        fastcgi_buffering off;
    }}
}}
"""


@dataclass
class Server:
    """One server block: `kind` is cgi (the deploy block), cgi-keep (the same with an upstream
    keepalive pool of `keepalive` connections and fastcgi_keep_conn on), php or wsgi."""

    key: str
    kind: str
    backend: str  # "unix:/path"
    root: str  # site directory (cgi) or document root (php)
    port: int = 0
    keepalive: int = 16


# The keep-alive variant of the deploy block: nginx keeps its FastCGI connections to the
# runner open in an upstream pool and sends each request with FCGI_KEEP_CONN.
KEEP_UPSTREAM = """
upstream {name} {{
    server {backend};
    keepalive {keepalive};
}}
"""


def _server_block(s: Server, listen: str) -> str:
    if s.kind in ("cgi", "cgi-keep"):
        template = (REPO / "deploy" / "nginx-cgirt.conf").read_text()
        block = template.replace("{listen}", listen).replace("{site}", s.root)
        if s.kind == "cgi":
            return block.replace("{backend}", s.backend)
        name = f"keep_{s.key.replace('-', '_')}"
        block = block.replace("fastcgi_pass {backend};",
                              f"fastcgi_pass {name};\n        fastcgi_keep_conn on;")
        return KEEP_UPSTREAM.format(name=name, backend=s.backend, keepalive=s.keepalive) + block
    block = PHP_BLOCK if s.kind == "php" else WSGI_BLOCK
    return block.format(listen=listen, root=s.root, backend=s.backend)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Nginx:
    proc: Proc
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_nginx(stack: ExitStack, tmp: Path, servers: Sequence[Server]) -> Nginx:
    """nginx with a block per server on loopback ports; retried when a port was taken meanwhile
    (nginx cannot listen on port 0, so the ports are picked first)."""
    binary = which("nginx")
    tmp.mkdir(parents=True, exist_ok=True)
    group = CpuGroup.make("nginx")
    if group is not None:
        stack.callback(group.remove)
    for attempt in range(8):
        ports = _free_ports(len(servers))
        blocks = [_server_block(s, f"127.0.0.1:{p}") for s, p in zip(servers, ports)]
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_main(tmp, blocks, level="warn", connections=1024))
        log = tmp / f"nginx-{attempt}.out"
        proc = Proc([binary, "-e", str(tmp / "nginx-error.log"), "-p", str(tmp), "-c", str(conf)], log,
                    cgroup=group)

        def up() -> bool:
            return not proc.alive() or all(_tcp_ok(p) for p in ports)

        wait_for(up, 20, "nginx")
        if proc.alive():
            stack.callback(proc.stop)
            return Nginx(proc, {s.key: p for s, p in zip(servers, ports)})
        proc.stop()
        if "Address already in use" not in proc.output():
            raise RuntimeError("nginx failed:\n" + proc.output())
    raise RuntimeError("nginx found no free ports in eight tries")


def _tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def socket_path(tmp: Path, name: str) -> str:
    path = tmp / f"{name}.sock"
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        path.unlink()
    return str(path)
