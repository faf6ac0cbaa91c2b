"""The runner's status, served by its master on an admin-only address.

`PoolMonitor` reads one pool (a supervisor, its scoreboard and its listening socket) and
samples, on every turn of the master's loop, what only a sample can show: the longest
listen queue, the most workers active at once, and how often all of them were busy.
`StatusServer` answers HTTP on the status address from any number of monitors, so a master
of many sites can serve one status for all its pools.

It runs inside the master's own loop (the supervisor's `Observer`), not in a thread: a
thread in a process that forks workers is a deadlock waiting to happen. Reading a request
never blocks the loop (non-blocking sockets, a deadline per connection); writing a reply
of a few kilobytes fits the socket's buffer, and a client that does not read it is given up
after a second.

    GET .../status[?json|openmetrics|html][&full][&pool=NAME]     GET .../ping
    POST .../publish?...  POST .../reload?...   (with publish_secret: the gateway's signed
                                                 notices, cgirt/notice.py)

Only the last segment of the path counts, so a web server may route any location to it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence
from urllib.parse import unquote

from .. import site as site_layout
from .. import sitefiles
from ..config import RunnerConfig
from ..errors import BadRequest, HttpError, ScriptNotFound, StartupError
from ..notice import ACTIONS
from ..status import (CONTENT_TYPES, FORMATS, PoolStatus, WorkerStatus, render, summarise,
                      worker_state)
from .listenqueue import listen_queue
from .supervisor import Supervisor

log = logging.getLogger("cgirt.error")

MAX_CONNECTIONS = 32
REQUEST_DEADLINE = 5.0  # seconds to send a request line and headers
MAX_REQUEST_BYTES = 8192
SEND_TIMEOUT = 1.0
_UNIX_PATH_MAX = 107


class MethodNotAllowed(HttpError):
    status, reason = 405, "Method Not Allowed"


def status_address(config: RunnerConfig) -> str | None:
    """Where the status is served: the configured address, else a unix socket in the
    site's state directory; None when turned off."""
    if config.status_listen == "off":
        return None
    default = site_layout.status_socket_path(config.site, config.host_name)
    return config.status_listen or f"unix:{default}"


def bind_status(config: RunnerConfig, bind: Callable[[str, int], socket.socket]
                ) -> tuple[socket.socket | None, str | None]:
    """The status's listening socket and address, or (None, None) when there is none.

    An address the admin set must work, or the runner does not start. The default one may be
    taken by another runner of the same site (mod_fcgid starts several): that runner serves
    the status, and this one says so at start."""
    address = status_address(config)
    if address is None:
        return None, None
    try:
        check_unix_path(address)
        return bind(address, config.status_socket_mode), address
    except StartupError as exc:
        if config.status_listen:
            raise
        log.warning("cgirt: this runner serves no status: %s (status_listen sets another "
                    "address)", exc)
        return None, None


class Monitor(Protocol):
    """One pool's status: a supervisor's (PoolMonitor) or a host site's (host/status.py)."""

    name: str

    def sample(self) -> None: ...

    def snapshot(self) -> PoolStatus: ...


class PoolMonitor:
    def __init__(self, name: str, supervisor: Supervisor, listener: socket.socket) -> None:
        self.name = name
        self.supervisor = supervisor
        self.listener = listener
        self.max_active = 0
        self.max_listen_queue = 0
        self.max_children_reached = 0
        self._all_busy = False

    def sample(self) -> None:
        board = self.supervisor.scoreboard
        active = sum(1 for w in self.supervisor.workers.values() if board.get(w.slot)[0])
        self.max_active = max(self.max_active, active)
        all_busy = active >= self.supervisor.settings.workers
        if all_busy and not self._all_busy:
            self.max_children_reached += 1  # once per spell of every worker busy
        self._all_busy = all_busy
        queue = listen_queue(self.listener)
        if queue is not None:
            self.max_listen_queue = max(self.max_listen_queue, queue[0])

    def snapshot(self) -> PoolStatus:
        sup = self.supervisor
        mono = time.monotonic()
        workers = []
        for w in sorted(sup.workers.values(), key=lambda w: w.spawned):
            v = sup.scoreboard.read(w.slot)
            state = worker_state(w.booted or bool(v.booted), bool(v.started),
                                 w.retiring_since is not None)
            duration = mono - v.started if v.started else v.last_duration
            workers.append(WorkerStatus(w.pid, state, w.spawned, v.requests, v.method, v.uri,
                                        v.script, max(duration, 0.0), v.last_cpu, v.peak_rss_kib))
        queue = listen_queue(self.listener)
        if queue is not None:
            self.max_listen_queue = max(self.max_listen_queue, queue[0])
        self.max_active = max(self.max_active, sum(1 for w in workers if w.state == "Running"))
        return summarise(self.name, "static", sup.started_at, sup.retired_requests, queue,
                         self.max_listen_queue, self.max_active, self.max_children_reached,
                         sup.slow_requests, workers)


class StatusServer:
    """An `Observer` of the supervisor: serves the status of its monitors' pools."""

    def __init__(self, listener: socket.socket, monitors: Sequence[Monitor] = (),
                 on_notice: Callable[[str, str, str], bytes] | None = None) -> None:
        self.listener = listener
        self.monitors: list[Monitor] = list(monitors)
        self.on_notice = on_notice  # (action, query, Authorization) -> body; cgirt/notice.py
        listener.setblocking(False)
        self._conns: dict[int, tuple[socket.socket, bytearray, float]] = {}

    # -- Observer ---------------------------------------------------------------------------

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self._conns]

    def on_readable(self, fd: int) -> None:
        try:
            if fd == self.listener.fileno():
                self._accept()
            elif fd in self._conns:
                self._read(fd)
        except Exception:  # noqa: BLE001 - the status must never take the master down
            log.exception("status server")
            self._drop(fd)

    def on_tick(self, now: float) -> None:
        for monitor in self.monitors:
            try:
                monitor.sample()
            except Exception:  # noqa: BLE001 - the status must never take the master down
                log.exception("status: sampling pool %s", monitor.name)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Give up the connections past their deadline."""
        for fd, (_, _, deadline) in list(self._conns.items()):
            if now > deadline:
                self._drop(fd)

    def close_in_worker(self) -> None:
        for fd in list(self._conns):
            self._drop(fd)
        self.listener.close()

    def close(self) -> None:
        self.close_in_worker()

    # -- HTTP -------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ECONNABORTED and the like: that client is gone
            if len(self._conns) >= MAX_CONNECTIONS:
                oldest = min(self._conns, key=lambda fd: self._conns[fd][2])
                self._drop(oldest)
            conn.setblocking(False)
            self._conns[conn.fileno()] = (conn, bytearray(), time.monotonic() + REQUEST_DEADLINE)

    def _read(self, fd: int) -> None:
        conn, buf, _ = self._conns[fd]
        try:
            chunk = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(fd)
            return
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")
        if end < 0 and len(buf) <= MAX_REQUEST_BYTES:
            return
        del self._conns[fd]
        try:
            self._reply(conn, bytes(buf))
        finally:
            conn.close()

    def _reply(self, conn: socket.socket, request: bytes) -> None:
        """The one place where the status server's errors become HTTP statuses."""
        method = "GET"
        try:
            method, content_type, body = self._answer(request)
            status = "200 OK"
        except HttpError as exc:
            status, content_type = f"{exc.status} {exc.reason}", CONTENT_TYPES["text"]
            body = f"{exc}\n".encode()
        head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n").encode()
        conn.settimeout(SEND_TIMEOUT)
        try:
            conn.sendall(head if method == "HEAD" else head + body)
        except OSError:
            pass  # a client that does not read its answer loses it

    def _answer(self, request: bytes) -> tuple[str, str, bytes]:
        line = request.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise BadRequest(f"not an HTTP request line: {line[:100]!r}")
        method, target, _ = parts
        path, _, query = target.partition("?")
        page = path.rstrip("/").rsplit("/", 1)[-1]
        if page in ACTIONS and self.on_notice is not None:
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not served here: POST a {page} notice")
            return method, CONTENT_TYPES["text"], self.on_notice(page, query, _header(
                request, "authorization"))
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not served here: GET the status or the ping")
        if page == "ping":
            return method, CONTENT_TYPES["text"], b"pong\n"
        if page != "status":
            raise ScriptNotFound(f"no page {path!r} here: ask for .../status or .../ping")
        options = [w.partition("=") for w in query.split("&") if w]
        words = [name for name, _, _ in options]
        unknown = [w for w in words if w not in (*FORMATS, "full", "pool")]
        if unknown:
            raise BadRequest(f"unknown status option {unknown[0]!r}: use json, openmetrics, "
                             "html, text, full and pool=NAME")
        wanted = [unquote(value) for name, _, value in options if name == "pool"]
        formats = [w for w in words if w in FORMATS] or ["text"]
        if len(formats) > 1:
            raise BadRequest(f"one format at a time, not {' and '.join(formats)}")
        monitors = [m for m in self.monitors if not wanted or m.name in wanted]
        if wanted and not monitors:
            raise ScriptNotFound(f"no pool {wanted[0]!r} here")
        pools = [m.snapshot() for m in monitors]
        return method, CONTENT_TYPES[formats[0]], render(pools, formats[0], "full" in words)

    def _drop(self, fd: int) -> None:
        entry = self._conns.pop(fd, None)
        if entry is not None:
            entry[0].close()


def _header(request: bytes, name: str) -> str:
    for line in request.split(b"\n")[1:]:
        key, sep, value = line.decode("latin-1").partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""


def check_unix_path(address: str) -> None:
    """A unix socket path the kernel cannot take fails at start, naming the fix."""
    if address.startswith("unix:") and len(os.fsencode(address[5:])) > _UNIX_PATH_MAX:
        raise StartupError(f"the status socket path {address[5:]} is too long for a unix "
                           "socket")


def remove_socket(address: str, site: Path) -> None:
    """Remove a unix socket at exit. One in the site's tree (the default status socket in
    `.cgirt/`) through no link: the master is root, and by then the owner may have swapped
    `.cgirt/` for a link to a folder of someone else's, another site's sockets say."""
    if not address.startswith("unix:"):
        return
    path = Path(address[5:])
    try:
        if path.is_relative_to(site):
            sitefiles.unlink(site, path)
        else:
            path.unlink()
    except OSError:
        pass
