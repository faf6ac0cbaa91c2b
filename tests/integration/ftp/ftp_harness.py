"""A real gateway subprocess per test, real FTP clients, nothing mocked.

The gateway runs as `python -m ftp_gateway ftp --listen 127.0.0.1:0` in its own session;
it prints its bound port on stdout, which is read with a deadline. Teardown kills its
process group and checks that no process of that group survives.
"""

from __future__ import annotations

import ftplib
import io
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PASSWORD = "correct horse battery"
START_DEADLINE = 20.0


def require_tool(name: str) -> str:
    """The client's path, or a loud skip (a failure under CI=true)."""
    from tests.support.servers import require

    return require(name)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition with a deadline (short polls, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def run_cli(
    *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ftp_gateway", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cli {args} failed: {proc.stdout} {proc.stderr}")
    return proc


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    host: str
    port: int
    site: Path
    users: Path
    user: str
    password: str
    stderr_path: Path
    extra_sites: dict[str, Path] = field(default_factory=dict)

    def ftp(self, login: bool = True, user: str | None = None,
            password: str | None = None) -> ftplib.FTP:
        client = ftplib.FTP(timeout=30)
        try:
            client.connect(self.host, self.port)
            if login:
                client.login(user or self.user, password if password is not None else self.password)
        except BaseException:
            client.close()  # a refused connection (421, 530) is the test's answer, not a leak
            raise
        return client

    def url(self, path: str = "") -> str:
        password = self.password.replace(" ", "%20")
        return f"ftp://{self.user}:{password}@{self.host}:{self.port}/{path}"

    def generation(self) -> int:
        try:
            return int((self.site / ".cgirt" / "generation").read_text())
        except FileNotFoundError:
            return 0

    def deploy_log(self) -> str:
        path = self.site / ".cgirt" / "logs" / "deploy.log"
        return path.read_text() if path.exists() else ""

    def log(self) -> str:
        return self.stderr_path.read_text()


def make_site(root: Path) -> Path:
    site = root
    (site / "cgi-bin").mkdir(parents=True)
    (site / "htdocs").mkdir()
    (site / "cgi-bin" / "hello.py").write_text(
        'print("Content-Type: text/plain")\nprint()\nprint("v1")\n'
    )
    return site


def start_gateway(tmp_path: Path, *extra: str, site: Path | None = None,
                  user: str = "alice") -> Gateway:
    site = site or make_site(tmp_path / "site")
    users = tmp_path / "users.json"
    if not users.exists() or user not in run_cli("user", "list", "--users", str(users)).stdout:
        run_cli("user", "add", user, "--site", str(site), "--users", str(users),
                stdin=PASSWORD + "\n")
    stderr_path = tmp_path / "gateway.log"
    with open(stderr_path, "w") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "ftp_gateway", "ftp", "--users", str(users),
             "--listen", "127.0.0.1:0", "--auth-failed-delay", "0", "--log-level", "DEBUG",
             *extra],
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_DEADLINE)
    line = proc.stdout.readline() if ready else ""
    if "listening on" not in line:
        stop_gateway(proc)
        raise AssertionError(f"gateway did not start: {line!r}\n{stderr_path.read_text()}")
    host, port = line.rsplit(" ", 1)[1].strip().rsplit(":", 1)
    return Gateway(proc, host, int(port), site, users, user, PASSWORD, stderr_path)


def stop_gateway(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
    # Nothing of the gateway's process group may survive it.
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("a process of the gateway's group outlived it")


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def factory(*extra: str, **kwargs: object) -> Gateway:
        gw = start_gateway(tmp_path, *extra, **kwargs)  # type: ignore[arg-type]
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        stop_gateway(gw.proc)
        assert gw.proc.returncode == 0, f"gateway exit {gw.proc.returncode}\n{gw.log()}"
        assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()


def store(client: ftplib.FTP, path: str, data: bytes) -> str:
    """STOR and return the complete final reply, multi-line included."""
    return client.storbinary(f"STOR {path}", io.BytesIO(data))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


def _children() -> set[int]:
    path = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    try:
        return {int(pid) for pid in Path(path).read_text().split()}
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Each test ends with the fds, threads and child processes it started with."""
    fds, threads, children = _open_fds(), threading.active_count(), _children()
    yield
    leaked_fds = {fd for fd in _open_fds() - fds if os.path.exists(f"/proc/self/fd/{fd}")}
    targets = [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked_fds]
    assert not leaked_fds, f"fds leaked: {targets}"
    assert threading.active_count() == threads, "a thread leaked"
    assert _children() <= children, f"child processes leaked: {_children() - children}"
