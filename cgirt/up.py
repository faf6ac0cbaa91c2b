"""`cgirt up`: the embedded default. Runner + FTP gateway + development HTTP front end.

Each part runs as its own process, started with the same commands an admin would use
(`cgirt serve`, `cgirt ftp`, `python -m cgirt.devserver`), so `cgirt up` exercises exactly
the production code. This module starts and stops them; it prints nothing (the CLI does).

Any directory with a `cgi-bin/` is a site (no `htdocs/`: no static files). One `cgirt up`
per site: it holds a lock on `SITE/.cgirt/up.lock` while it runs, and a second one is
refused before it touches anything of the first (sockets, pid file, logs, processes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
import importlib.util
from pathlib import Path

from . import site as site_layout
from .errors import StartupError
from .runner.supervisor import die_with_parent

STARTUP_SECONDS = 30.0
STOP_SECONDS = 15.0
OWNER = "owner"
# Each part's output, in the logs directory; errors name the one to read.
LOG_FILES = {"runner": "runner.log", "ftp": "ftp.log", "http": "http.log"}


class AlreadyServed(StartupError):
    """Another `cgirt up`, or a runner, serves this site already."""


@dataclass(frozen=True)
class UpConfig:
    site: Path
    http: str = "127.0.0.1:8000"
    ftp: str | None = "127.0.0.1:2121"
    workers: int = 2
    runner_config: Path | None = None


@dataclass
class Started:
    """What `cgirt up` tells the user once everything listens."""

    http_url: str
    ftp_url: str | None
    site_created: bool
    account: tuple[str, str] | None  # (name, password), only when just created
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    lock_fd: int = -1  # held open while `cgirt up` runs: the site is ours


def skeleton_dir() -> Path:
    """The template a new site starts from, installed beside the packages."""
    # A data-only directory installed as a namespace package: look at its locations.
    spec = importlib.util.find_spec("skeleton_site")
    places = list(spec.submodule_search_locations or []) if spec else []
    places.append(str(Path(__file__).resolve().parent.parent / "skeleton_site"))
    for place in places:
        if (Path(place) / "cgi-bin").is_dir():
            return Path(place)
    raise StartupError("the skeleton site is not installed with cgirt")


def prepare_site(site: Path) -> bool:
    """Create the site from the skeleton if it does not exist yet. True if created."""
    created = False
    if not site.exists():
        created = _copy_skeleton(site)
    if not (site / site_layout.CGI_ROOT).is_dir():
        raise StartupError(f"{site} exists but has no {site_layout.CGI_ROOT}/ directory")
    return created


def _copy_skeleton(site: Path) -> bool:
    """Built beside the site and renamed into place: two `cgirt up` racing to create the
    same site never see half a copy, and one of them just finds it there."""
    site.parent.mkdir(parents=True, exist_ok=True)
    building = Path(f"{site}.{os.getpid()}.new")
    shutil.copytree(skeleton_dir(), building, ignore=shutil.ignore_patterns("__pycache__"))
    for script in (building / site_layout.CGI_ROOT).iterdir():
        if script.suffix == ".py":
            script.chmod(0o755)
    try:
        os.rename(building, site)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def lock_path(site: Path) -> Path:
    return site_layout.state_dir(site) / "up.lock"


def claim_site(site: Path) -> int:
    """Lock the site for this `cgirt up`, or say who serves it; the fd holds the lock.

    An flock, not a pid file: the kernel drops it when its holder dies, however it dies,
    so a crashed `cgirt up` never locks its site out.
    """
    fd = os.open(lock_path(site), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise AlreadyServed(f"the site {site} is already being served by `cgirt up` "
                            f"(pid {holder}); stop that one first (Ctrl-C where it runs, "
                            f"or kill {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    # A runner started otherwise (`cgirt serve`) may serve the site and own its socket and
    # pid file; a second runner would only fail on them, later and less clearly.
    from .runnerproc import runner_pid

    runner = runner_pid(site)
    if runner is not None:
        os.close(fd)
        raise AlreadyServed(f"the site {site} is already being served by a cgirt runner "
                            f"(pid {runner}); stop it first (kill {runner})")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_holder(fd: int) -> str:
    """The pid the holder wrote: it writes right after locking, so wait for it briefly."""
    deadline = time.monotonic() + 2.0
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.01)  # the holder is between its flock and its write


def users_file(site: Path) -> Path:
    return site_layout.state_dir(site) / "users.json"


def _cgirt(*args: str) -> list[str]:
    return [sys.executable, "-m", "cgirt", *args]


def ensure_account(site: Path) -> tuple[str, str] | None:
    """On first run, an FTP account for the site with a generated password."""
    path = users_file(site)
    if path.exists():
        return None
    password = secrets.token_urlsafe(12)
    proc = subprocess.run(_cgirt("user", "add", OWNER, "--site", str(site), "--users", str(path)),
                          input=password + "\n", capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise StartupError(f"cannot create the FTP account: {proc.stderr.strip()}")
    return OWNER, password


def start(config: UpConfig, logs: Path) -> Started:
    site = config.site.resolve()
    created = prepare_site(site)
    site_layout.ensure_state(site)
    lock_fd = claim_site(site)  # before anything of a running `cgirt up` is touched
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        account = ensure_account(site) if config.ftp else None
        logs.mkdir(parents=True, exist_ok=True)
        socket_path = site_layout.state_dir(site) / "runner.sock"
        runner_args = ["serve", "--site", str(site), "--listen", f"unix:{socket_path}",
                       "--workers", str(config.workers)]
        if config.runner_config:
            runner_args += ["--config", str(config.runner_config)]
        procs["runner"] = _spawn(_cgirt(*runner_args), logs / LOG_FILES["runner"])
        _wait(lambda: _accepts(socket_path), procs, "the runner", logs)
        ftp_url = None
        if config.ftp:
            port_file = site_layout.state_dir(site) / "ftp.port"
            port_file.unlink(missing_ok=True)
            # --tls: explicit FTPS offered (a self-signed certificate kept beside the users
            # file), plain FTP still accepted, as the banner says.
            procs["ftp"] = _spawn(_cgirt("ftp", "--users", str(users_file(site)), "--listen",
                                         config.ftp, "--port-file", str(port_file), "--tls"),
                                 logs / LOG_FILES["ftp"])
            _wait(lambda: port_file.exists() and port_file.read_text().strip(), procs,
                  "the FTP gateway", logs)
            host, port = port_file.read_text().split()
            ftp_url = f"ftp://{host}:{port}/"
        http_out = logs / "http.out"
        http_out.unlink(missing_ok=True)  # it names the URL: never read a previous run's
        procs["http"] = _spawn([sys.executable, "-m", "cgirt.devserver", "--site", str(site),
                                "--listen", config.http, "--backend", f"unix:{socket_path}"],
                               logs / LOG_FILES["http"], stdout=http_out)
        match = _wait(lambda: re.search(r"http://\S+", http_out.read_text()) if http_out.exists() else None,
                      procs, "the HTTP front end", logs)
        assert isinstance(match, re.Match)
        return Started(match.group(0), ftp_url, created, account, procs, lock_fd)
    except BaseException:
        stop(procs)
        os.close(lock_fd)
        raise


def _accepts(path: Path) -> bool:
    """Connectable, not merely there: a socket file left by a killed run is no sign."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _spawn(argv: list[str], log: Path, stdout: Path | None = None) -> subprocess.Popen[bytes]:
    parent = os.getpid()
    with open(log, "ab") as err, open(stdout or log, "ab") as out:
        # Own process group: Ctrl-C reaches `cgirt up` only, which stops the parts in order.
        # Its own session would also outlive a `kill -9` of `cgirt up`: the kernel's
        # parent-death signal (kept across exec) ends it then.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=lambda: _die_with(parent))


def _die_with(parent: int) -> None:
    """In the part, between fork and exec: die with `cgirt up`, even if it is already gone."""
    die_with_parent()
    if os.getppid() != parent:
        os._exit(1)  # `cgirt up` died before the kernel could be asked to tell us


def _wait(ready: object, procs: dict[str, subprocess.Popen[bytes]], what: str,
          logs: Path) -> object:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        value = ready()  # type: ignore[operator]
        if value:
            return value
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise StartupError(f"{what} did not start: the {name} process exited "
                                   f"(status {proc.returncode}); see {logs / LOG_FILES[name]}")
        time.sleep(0.02)  # polling a child's readiness, bounded by the deadline
    latest = logs / LOG_FILES[list(procs)[-1]]
    raise StartupError(f"{what} did not start within {STARTUP_SECONDS:.0f} s; see {latest}")


def wait_until_stopped(procs: dict[str, subprocess.Popen[bytes]]) -> str | None:
    """Block until SIGINT/SIGTERM or until a part exits; returns the part's name, if any."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old = signal.set_wakeup_fd(wake_w)
    stop_requested: list[int] = []
    handlers = {s: signal.signal(s, lambda n, f: stop_requested.append(n))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop_requested:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    return name
            select.select([wake_r], [], [], 0.5)
        return None
    finally:
        signal.set_wakeup_fd(old)
        for s, h in handlers.items():
            signal.signal(s, h)
        os.close(wake_r)
        os.close(wake_w)


def stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Front end first (no new requests), then gateway, then runner; kill what lingers."""
    for name in ("http", "ftp", "runner"):
        proc = procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of that part still running
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
