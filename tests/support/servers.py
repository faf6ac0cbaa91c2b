"""Real servers for integration tests: the cgirt runner, nginx, fcgiwrap, Apache.

A missing server skips its tests with a loud reason, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Callable, Sequence

import pytest

from .nginxconf import nginx_main
from .procs import Proc, children_of, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IS_ROOT = os.geteuid() == 0


def require(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None)
    if path is None:
        message = f"*** {binary} is not installed: ./run-tests installs it when run as root ***"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def connectable(address: str) -> bool:
    family = socket.AF_UNIX if address.startswith("unix:") else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            s.connect(address[5:])
        else:
            host, _, port = address.rpartition(":")
            s.connect((host, int(port)))
        return True
    except OSError:
        return False
    finally:
        s.close()


def listening_ports(pid: int) -> list[int]:
    """TCP ports a process (or its children) listens on, read from /proc: no port guessing."""
    inodes = set()
    for p in [pid, *children_of(pid)]:
        try:
            for fd in Path(f"/proc/{p}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Runner:
    """`python -m cgirt serve` as a real subprocess on a unix socket."""

    def __init__(self, site: Path, workdir: Path, *extra: str, workers: int = 2,
                 socket_mode: str = "660", long_lived: bool = False) -> None:
        self.site = site
        self.address = f"unix:{workdir / 'runner.sock'}"
        argv = [sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
                self.address, "--workers", str(workers), "--socket-mode", socket_mode, *extra]
        self.proc = Proc(argv, workdir / "runner.log", cwd=REPO, long_lived=long_lived)
        self.workers = workers
        try:
            wait_for(lambda: connectable(self.address) or not self.proc.alive(), 20,
                     "the runner socket")
            if not self.proc.alive():
                raise RuntimeError(f"runner exited at start:\n{self.proc.output()}")
            wait_for(lambda: len(self.worker_pids()) >= workers, 20, "runner workers")
        except BaseException:
            # Not yet anyone's to stop: left running, it would fail every later test's
            # leak check as well as this one.
            self.proc.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)

    def stop(self) -> int | None:
        return self.proc.stop()


def nginx_server_block(site: Path, listen: str, backend: str) -> str:
    template = (DEPLOY / "nginx-cgirt.conf").read_text()
    return (template.replace("{listen}", listen).replace("{site}", str(site))
            .replace("{backend}", backend))


class Nginx:
    def __init__(self, workdir: Path, servers: Sequence[str]) -> None:
        binary = require("nginx")
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_main(workdir, servers))
        self.proc = Proc([binary, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir),
                          "-c", str(conf)], workdir / "nginx.out", long_lived=True)
        self.workdir = workdir

    def wait(self, address: str) -> None:
        wait_for(lambda: connectable(address) or not self.proc.alive(), 20, f"nginx on {address}")
        if not self.proc.alive():
            raise RuntimeError("nginx failed:\n" + self.proc.output() +
                               (self.workdir / "nginx-error.log").read_text())

    def stop(self) -> None:
        self.proc.stop(timeout=10)


class Fcgiwrap:
    def __init__(self, workdir: Path) -> None:
        binary = require("fcgiwrap")
        self.address = f"unix:{workdir / 'fcgiwrap.sock'}"
        # fcgiwrap hands its own environment to every script (mod_cgi passes none); without
        # the test's locale, a classic Python script makes of the C locale what it makes of
        # it under Apache mod_cgi (PEP 538, PEP 540), the behaviour cgirt reproduces. Nor the
        # test's PYTHON* settings: PYTHONUNBUFFERED would hide classic CGI's buffering.
        env = {k: v for k, v in os.environ.items()
               if k != "LANG" and not k.startswith(("LC_", "PYTHON"))}
        self.proc = Proc([binary, "-c", "4", "-s", self.address], workdir / "fcgiwrap.log",
                         env=env, long_lived=True)
        wait_for(lambda: connectable(self.address) or not self.proc.alive(), 20, "fcgiwrap")

    def stop(self) -> None:
        self.proc.stop(timeout=10)


APACHE_MAIN = """
ServerRoot "{tmp}"
Listen 127.0.0.1:{port}
PidFile "{tmp}/httpd.pid"
ErrorLog "{tmp}/error.log"
LogLevel info
DefaultRuntimeDir "{tmp}"
Mutex file:{tmp}
ServerName localhost
{user}
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
StartServers 2
MaxRequestWorkers 16
{modules}
TypesConfig /etc/mime.types
DocumentRoot "{site}/htdocs"
<Directory "{site}/htdocs">
    Require all granted
</Directory>
{body}
"""

APACHE_MODULES = ("authz_core", "alias", "mime", "dir", "proxy", "proxy_fcgi", "cgi", "fcgid",
                  "env", "rewrite")


def free_port() -> int:
    """An unused port for Apache, which cannot listen on port 0. Startup retries on a race."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Apache:
    def __init__(self, workdir: Path, site: Path, body: str) -> None:
        binary = require("apache2")
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        modules = "\n".join(
            f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in APACHE_MODULES
            if os.path.exists(f"/usr/lib/apache2/modules/mod_{m}.so"))
        for attempt in range(5):
            self.port = free_port()
            conf = workdir / "httpd.conf"
            conf.write_text(APACHE_MAIN.format(
                tmp=workdir, port=self.port, site=site, modules=modules, body=body,
                user="User www-data\nGroup www-data" if IS_ROOT else ""))
            self.proc = Proc([binary, "-DFOREGROUND", "-f", str(conf)],
                             workdir / f"apache-{attempt}.out", long_lived=True)
            self.address = f"127.0.0.1:{self.port}"
            wait_for(lambda: connectable(self.address) or not self.proc.alive(), 20, "apache")
            if self.proc.alive():
                return
            self.proc.stop()
            if "Address already in use" not in self.proc.output():
                raise RuntimeError("apache failed:\n" + self.proc.output())
        raise RuntimeError("apache found no free port in five tries")

    def stop(self) -> None:
        self.proc.stop(timeout=15)


def fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


LIGHTTPD_MAIN = """
server.bind = "{http_socket}"
server.errorlog = "{tmp}/error.log"
server.pid-file = "{tmp}/lighttpd.pid"
server.upload-dirs = ( "{tmp}" )
mimetype.assign = ( ".html" => "text/html", ".txt" => "text/plain" )
include "{tmp}/cgirt.conf"
"""


class Lighttpd:
    def __init__(self, workdir: Path, site: Path, runner_socket: str) -> None:
        binary = require("lighttpd")
        workdir.mkdir(parents=True, exist_ok=True)
        self.address = f"unix:{workdir / 'http.sock'}"
        (workdir / "cgirt.conf").write_text(fill(
            (DEPLOY / "lighttpd-cgirt.conf").read_text(), site=str(site), runner_socket=runner_socket))
        conf = workdir / "lighttpd.conf"
        conf.write_text(LIGHTTPD_MAIN.format(tmp=workdir, http_socket=self.address[5:]))
        self.proc = Proc([binary, "-D", "-f", str(conf)], workdir / "lighttpd.out")
        wait_for(lambda: connectable(self.address) or not self.proc.alive(), 20, "lighttpd")
        if not self.proc.alive():
            raise RuntimeError("lighttpd failed:\n" + self.proc.output())

    def stop(self) -> None:
        self.proc.stop(timeout=10)


def make_traversable(path: Path) -> None:
    """Another user (Apache's www-data, a site owner) must reach `path`.

    As root, give o+x (search, not read) to the ancestors that lack it, e.g. /root for a
    pyenv interpreter. Said out loud, because it changes the machine."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent.is_dir() and not mode & 0o001:
            print(f"*** chmod o+x {parent}: so other users can reach {path} ***", file=sys.stderr)
            os.chmod(parent, mode | 0o001)


class Host:
    """`python -m cgirt host --config FILE` as a real subprocess; its sites' sockets bound."""

    def __init__(self, config: Path, workdir: Path,
                 argv: Sequence[str] = ("-m", "cgirt", "host", "--config")) -> None:
        self.config = config
        # Readiness as systemd sees it (sd_notify): connecting to a site's socket to see
        # whether it listens would start a worker for it.
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(workdir / "notify.sock"))
        self.notify.settimeout(0.1)
        env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock")}
        self.proc = Proc([sys.executable, *argv, str(config)], workdir / "host.log", cwd=REPO, env=env)
        self.wait_notified("READY=1")
        if not self.proc.alive():
            raise RuntimeError(f"cgirt host exited at start:\n{self.proc.output()}")
        self.zygote = int(wait_for(lambda: children_of(self.proc.pid) and children_of(self.proc.pid)[0],
                                   20, "the zygote"))  # the master's only child

    def wait_notified(self, state: str, timeout: float = 20) -> None:
        def received() -> bool:
            try:
                return state in self.notify.recv(4096).decode().split("\n")
            except socket.timeout:
                return not self.proc.alive()
        wait_for(received, timeout, f"{state} from cgirt host")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """Every site's workers: the zygote's children that hold a listening socket (the
        zygote's spare child holds none until it becomes a worker)."""
        return self._holding(lambda fields: fields[3] == "00010000")  # __SO_ACCEPTCON

    def workers_of(self, listen: str) -> list[int]:
        """The workers holding the listening socket `unix:PATH` (one site's)."""
        return self._holding(lambda fields: fields[-1] == listen[5:])

    def _holding(self, wanted: Callable[[list[str]], bool]) -> list[int]:
        inodes = {fields[6] for fields in (line.split() for line in
                                           Path("/proc/net/unix").read_text().splitlines()[1:])
                  if len(fields) >= 7 and wanted(fields)}
        found = []
        for pid in children_of(self.zygote):
            links = []
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue  # the process is gone
            for fd in fds:
                try:
                    links.append(os.readlink(fd))
                except OSError:
                    pass  # closed since the listing (the worker is busy): not the listener
            if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
                found.append(pid)
        return found

    def stop(self, sig: int = 15) -> int | None:
        try:
            return self.proc.stop(sig)
        finally:
            self.notify.close()
