"""Fork mode: each request runs in a fresh child of a clean, preloaded template process.

The template is forked by a worker after the preloading, at start where the site uses fork
mode (before any script has run, so no persistent-mode request can leave state behind for a
fork-mode one), else at its first fork-mode request (`LazyForkServer`). For a
request, the worker passes the connection (its file descriptor, the bytes already read from
it, the parsed request) to the template, which forks a child that answers the request
itself. Exact CGI process isolation (globals, threads, os._exit, atexit, signals die with
the child) at the cost of a fork, not of an interpreter start.

The worker waits for the child with a deadline (a pidfd) and answers for it when it dies
without a word.
"""

from __future__ import annotations

import _signal
import array
import gc
import logging
import mmap
import os
import pickle
import select
import signal
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from ..errors import HttpError, RequestTimeout
from ..fastcgi.records import STDIN, encode_record
from ..fastcgi.server import FastCGIConnection, FastCGIRequest, FastCGIServer, SingleRequestControl
from .executors import Executor, Work
from .supervisor import die_with_parent

_NOTHING, _STARTED, _ENDED = 0, 1, 2
# The child's pid, what it has sent, and for the access log: status, header and total bytes.
_SHARED = struct.Struct("iBiqq")
# A job's message: its length after this header, the length of the script's path that comes
# first, then the pickled Job. The template reads the path alone; only the child unpickles.
_HEAD = struct.Struct("!II")
# Warm-up requests the template answers before its first fork: past the interpreter's own
# warm-up of a function (its first calls write to the code object), so a child finds the
# request path's bytecode specialised already. One does most of the good; ten save a few
# dozen more page faults per request (bench/forkcost.py).
_WARM_UPS = 10


class ChildDied(HttpError):
    status, reason = 502, "Bad Gateway"


@dataclass(frozen=True)
class Job:
    """What the child needs to answer a request on a connection it inherits."""

    request_id: int
    flags: int
    params: dict[str, str]
    buffered: bytes  # input already read from the connection by the worker
    remaining: float  # seconds left of the request's deadline
    work: Work


# Answers a request for a `Work`; the flag says whether the process ends after it (a
# request's child), so nothing need be put back for a next request.
Serve = Callable[[FastCGIRequest, Work, bool], None]
ErrorPage = Callable[[FastCGIRequest, HttpError], None]
# Given a function that answers one request for a `Work` as a child would, the app runs its
# warm-up request through it (in the template, once).
WarmUp = Callable[[Callable[[Work], None]], None]


class ForkExecutor:
    """Fork mode as an executor. In a request's child (after an internal redirect) the
    request is isolated already: the script runs there, in place."""

    def __init__(self, forks: "ForkServer", in_child: Executor, error_page: ErrorPage) -> None:
        self.forks = forks
        self.in_child = in_child
        self.error_page = error_page

    def execute(self, req: FastCGIRequest, work: Work) -> None:
        if self.forks.in_child:
            self.in_child.execute(req, work)
        else:
            self.forks.run(req, work, self.error_page)


class ForkServer:
    def __init__(self, timeout: float, kill_grace: float, io_timeout: float) -> None:
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.io_timeout = io_timeout
        self.in_child = False  # True in a request's child: it is isolated already
        self._sock: socket.socket | None = None
        self._shared: mmap.mmap | None = None
        self._template = 0
        self._waiting = False

    def start(self, serve: Serve, prepare: Callable[[str], None],
              warm_up: WarmUp | None = None, close: tuple[int, ...] = ()) -> None:
        """In the worker, before any script runs: fork the template. It closes the
        descriptors `close` (a request's connection, when it is started during one)."""
        self._shared = mmap.mmap(-1, _SHARED.size)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for fd in close:
                os.close(fd)  # its Python object stays in a frame below, never used again
            self.in_child = True
            _template(theirs, serve, prepare, warm_up, self.timeout, self.io_timeout,
                      self._shared)  # never returns
        theirs.close()
        self._sock = ours
        self._template = pid

    def stop(self) -> None:
        """End the template and reap it. A worker never needs this (the template dies with
        it); a process that serves requests in-process and goes on (a test) does."""
        if self._sock is not None:
            self._sock.close()  # the template reads EOF and exits
            self._sock = None
            os.waitpid(self._template, 0)

    def run(self, req: FastCGIRequest, work: Work, error_page: ErrorPage) -> None:
        """In the worker: have a fresh child answer `req`, and wait for it."""
        assert self._sock is not None and self._shared is not None
        remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0] or self.timeout
        conn = req.conn
        job = Job(req.requestId, req.flags, dict(req.params), conn.take_buffered(), remaining, work)
        _SHARED.pack_into(self._shared, 0, 0, _NOTHING, 0, 0, 0)
        path = os.fsencode(work.target.path)
        payload = pickle.dumps(job)
        try:
            self._sock.sendmsg([_HEAD.pack(len(path) + len(payload), len(path)) + path + payload],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", [conn.fileno()]))])
        except OSError as exc:
            conn.control.recycle_after_request()  # a new worker brings a new template
            raise ChildDied(log=f"the fork-mode template is gone ({exc})") from None
        conn.keep_conn = False  # the child read records this process never saw
        self._waiting = True
        try:
            ended_by_itself = self._wait(remaining + self.kill_grace / 2)
        finally:
            self._waiting = False
        _, sent, status, head_bytes, sent_bytes = _SHARED.unpack_from(self._shared, 0)
        if sent != _NOTHING:
            req.status, req.head_bytes, req.sent_bytes = status, head_bytes, sent_bytes
        if sent == _ENDED:
            req.ended = True
            conn.handed_off = True  # the child has closed the connection properly itself
            return
        if sent == _NOTHING:
            error_page(req, ChildDied() if ended_by_itself else RequestTimeout())
        req.end()

    def running_child(self) -> int:
        """In the worker: the pid of the child answering the current request, or 0."""
        if not self._waiting or self._shared is None:
            return 0
        pid: int = _SHARED.unpack_from(self._shared, 0)[0]
        return pid

    def _wait(self, seconds: float) -> bool:
        """Wait for the child; kill it after `seconds`. True if it ended by itself."""
        assert self._sock is not None and self._shared is not None
        ready, _, _ = select.select([self._sock], [], [], seconds)
        if not ready:
            raise RequestTimeout(log="the template did not start a child")
        pid = struct.unpack("!i", _recv_exactly(self._sock, 4))[0]
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True  # already gone
        try:
            exited, _, _ = select.select([fd], [], [], seconds)
            if not exited:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                select.select([fd], [], [], 5)
            return bool(exited)
        finally:
            os.close(fd)


class ForkUse:
    """Whether a worker of this runner has met a fork-mode request: one byte shared by all
    of them, mapped in the master before it forks any."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, 1)

    def note(self) -> None:
        self._mem[0] = 1

    def seen(self) -> bool:
        return self._mem[0] == 1


class LazyForkServer(ForkServer):
    """Fork mode's template only where fork mode is used: at start when `eager()` says the
    site uses it, else at the first fork-mode request (no process, no warm-up otherwise). A
    worker that has run a script in-process (`clean()` is false) is no longer clean: it
    serves that request from a template made now, then retires; `used()` tells whoever
    starts the next workers, which make theirs at start, while clean."""

    def __init__(self, timeout: float, kill_grace: float, io_timeout: float,
                 eager: Callable[[], bool], clean: Callable[[], bool],
                 used: Callable[[], None]) -> None:
        super().__init__(timeout, kill_grace, io_timeout)
        self._eager, self._clean, self._used = eager, clean, used
        self._start_args: tuple[Serve, Callable[[str], None], WarmUp | None] | None = None

    def start(self, serve: Serve, prepare: Callable[[str], None],
              warm_up: WarmUp | None = None, close: tuple[int, ...] = ()) -> None:
        self._start_args = (serve, prepare, warm_up)
        if self._eager():
            super().start(serve, prepare, warm_up, close)

    def run(self, req: FastCGIRequest, work: Work, error_page: ErrorPage) -> None:
        if self._sock is None and self._start_args is not None:
            self._used()
            if not self._clean():
                req.conn.control.recycle_after_request()
            super().start(*self._start_args, close=(req.conn.fileno(),))
        super().run(req, work, error_page)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _template(sock: socket.socket, serve: Serve, prepare: Callable[[str], None],
              warm_up: WarmUp | None, timeout: float, io_timeout: float,
              shared: mmap.mmap) -> None:
    """The clean process: forks one child per job, until its worker goes away."""
    code = 0
    try:
        die_with_parent()
        if warm_up is not None:
            # First: a request puts the worker's signal handlers back after it.
            try:
                for _ in range(_WARM_UPS):
                    warm_up(lambda work: _warm_up(work, serve, timeout, io_timeout))
            except Exception:  # the children are only slower: each does that work itself
                logging.getLogger("cgirt.error").exception("fork mode's warm-up request failed")
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_DFL)
        # The preloaded objects never change here: out of the collector's sight, a child's
        # first collection does not touch (and so copy) every page it inherited.
        gc.freeze()
        while True:
            # The descriptor travels with the first bytes of the message: read them together.
            data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
            if not data or not fds:
                break
            length, path_length = _HEAD.unpack_from(data)
            if len(data) < _HEAD.size + length:
                data += _recv_exactly(sock, _HEAD.size + length - len(data))
            # Every object the template makes or frees between forks is a write to a page
            # its last child may still share (a copy) or shared (a fault): the job stays bytes.
            prepare(os.fsdecode(data[_HEAD.size:_HEAD.size + path_length]))
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(data, _HEAD.size + path_length, fds[0], serve, io_timeout,
                       shared)  # never returns
            os.close(fds[0])
            sock.sendall(struct.pack("!i", pid))
    except (EOFError, OSError):
        pass  # the worker is gone
    finally:
        os._exit(code)


def _warm_up(work: Work, serve: Serve, timeout: float, io_timeout: float) -> None:
    """In the template, before its first fork: one request answered as a child answers it,
    on a socket pair. What a child does for the first time in its life (a lazy import or
    initialisation, a cache filled, a first write to a type or a code object) it would do
    for every request, on pages shared with the template that the kernel must then copy:
    done once here, it is inherited done."""
    web, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with web:  # the answer is small: it waits in the socket's buffer, unread
        # The web server's end of input, as a worker has usually read it already.
        job = Job(1, 0, dict(work.env), encode_record(STDIN, 1), timeout, work)
        _answer(job, ours.detach(), serve, io_timeout, lambda sent, req: None, last=False)


def _child(data: bytes, start: int, fd: int, serve: Serve, io_timeout: float,
           shared: mmap.mmap) -> None:
    code = 0
    try:
        die_with_parent()
        # The C function, not signal.signal: the wrapper's enums are more pages to copy.
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        pid = os.getpid()
        _SHARED.pack_into(shared, 0, pid, _NOTHING, 0, 0, 0)

        def note(sent: int, req: FastCGIRequest) -> None:
            _SHARED.pack_into(shared, 0, pid, sent, req.status, req.head_bytes,
                              req.sent_bytes if sent == _ENDED else 0)

        job = pickle.loads(memoryview(data)[start:])
        _answer(job, fd, serve, io_timeout, note, last=True)
    except BaseException:  # noqa: B036 - the child must never return into the template
        logging.getLogger("cgirt.error").exception("fork-mode child failed")
        code = 1
    finally:
        os._exit(code)


def _answer(job: Job, fd: int, serve: Serve, io_timeout: float,
            note: Callable[[int, FastCGIRequest], None], last: bool) -> None:
    """Answer the job's request on the connection `fd`; `note` hears when the response
    has started and when it has ended."""
    server = FastCGIServer(lambda req: None, max_conns=1, io_timeout=io_timeout)
    conn = FastCGIConnection.adopt(fd, server, SingleRequestControl(), job.buffered)
    req = conn.resume_request(job.request_id, job.flags, job.params)
    req.on_first_write = lambda: note(_STARTED, req)
    signal.setitimer(signal.ITIMER_REAL, job.remaining)
    serve(req, job.work, last)
    signal.setitimer(signal.ITIMER_REAL, 0)
    req.end()
    note(_ENDED, req)
    conn.close()
