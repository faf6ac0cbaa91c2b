"""Real descriptors 0, 1 and 2 for scripts run in-process, armed only when a script needs them.

Under classic CGI, stdin and stdout are pipes: `fileno()` works, `os.write(1, ...)` and any
child process (`os.system`, `subprocess`, `os.popen`) write into the response, in the order
the bytes reach the pipe, and a child reads the request body from fd 0. A worker's own
descriptors 0, 1 and 2 are not the request's, and giving every request three pipes and a
thread to pump them would cost more than a small script's whole run. So a request starts
unarmed (sys.stdout writes straight to the response parser) and is armed the first time it
needs real descriptors:

- a script calls `fileno()` on sys.stdin, sys.stdout or sys.stderr (or their buffers);
- it starts a process or opens fd 0, 1 or 2 (an audit hook, installed once per process,
  that checks one flag: audit hooks cannot be removed);
- its code passes 0, 1 or 2 to `os.write`, `os.fstat`, ... by number (found once per
  compiled script: no audit event would tell).

Armed, fd 0 is a pipe fed with what is left of the request body, then EOF; fd 1 is a pipe
that sys.stdout also writes into (so Python's buffering gives the same order as under
classic CGI, surprises included); fd 2 is a pipe whose lines go to the site's error log. A
pump thread moves the pipes' bytes to and from the web server connection, through the same
response parser. The request's output ends when every holder of fd 1 has closed it (a
child left running in the background keeps the response open, as under Apache), or at the
request's deadline.
"""

from __future__ import annotations

import dis
import errno
import gc
import io
import os
import select
import sys
import threading
from types import CodeType
from typing import Any, Callable, Protocol

_CHUNK = 65536
_MAX_REMEMBERED = 4096
_STDIO = (0, 1, 2)

# Audit events after which the process's descriptors may be used by something the runner
# does not see: a new process inherits them, an `open` of fd 0, 1 or 2 wraps one.
_EVENTS = frozenset({"os.system", "subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty",
                     "os.exec", "os.spawn", "open"})

# Functions that take a descriptor first; passed 0, 1 or 2 as a constant, they mean stdio.
_FD_FUNCTIONS = frozenset({"write", "read", "fstat", "fdopen", "dup", "dup2", "sendfile",
                           "isatty", "fsync", "lseek", "set_blocking", "get_blocking", "readv",
                           "writev", "pread", "pwrite", "fcntl", "ioctl", "flock", "ttyname",
                           "get_terminal_size", "fdatasync", "ftruncate", "select"})
_FD_MODULES = frozenset({"os", "posix", "fcntl", "select"})


class Body(Protocol):
    remaining: int

    def divert(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]: ...


class Sink(Protocol):
    target: Callable[[bytes], Any]


class Lines(Protocol):
    def write(self, data: Any) -> int: ...

    def finish(self) -> None: ...


LinesFactory = Callable[[Callable[[str], None]], Lines]


_current: Descriptors | None = None  # this process's, once installed
_hooked = False


def fileno(fd: int) -> int:
    """What `fileno()` of a script's sys.stdin (0), sys.stdout (1) or sys.stderr (2) answers:
    the real descriptor, armed for the request."""
    d = _current
    if d is None or not d.serving:
        raise io.UnsupportedOperation("fileno")
    d.arm()
    return fd


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs for every audit event of the process (imports, opens, exec...): one set look-up
    # when nothing is to be done.
    if event in _EVENTS:
        d = _current
        if d is None or not d.serving:
            return
        if event == "open":
            if type(args[0]) is int and args[0] in _STDIO:
                d.wrapped = True
                d.arm()
        elif not d.armed:
            d.arm()


def uses_descriptors_by_number(code: CodeType) -> bool:
    """True if the code calls a descriptor function with 0, 1 or 2 written as a number
    (`os.write(1, ...)`, `os.fstat(0)`, `from os import fdopen; fdopen(1)`)."""
    ops = list(dis.get_instructions(code))
    for i, op in enumerate(ops):
        if op.opname in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME") \
                and op.argval in _FD_FUNCTIONS:
            if op.opname in ("LOAD_ATTR", "LOAD_METHOD") and not _after_module(ops, i):
                continue  # f.write(1): a file's method, not a descriptor function
            for nxt in ops[i + 1 : i + 5]:
                if nxt.opname in ("PUSH_NULL", "PRECALL", "CACHE", "NOP"):
                    continue
                if nxt.opname == "LOAD_CONST" and type(nxt.argval) is int and nxt.argval in _STDIO:
                    return True
                if nxt.opname == "BUILD_LIST":  # select.select([0], ...)
                    continue
                break
    return any(isinstance(c, CodeType) and uses_descriptors_by_number(c) for c in code.co_consts)


def _after_module(ops: list[dis.Instruction], i: int) -> bool:
    for prev in reversed(ops[max(0, i - 3) : i]):
        if prev.opname in ("PUSH_NULL", "CACHE", "NOP"):
            continue
        return prev.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST", "LOAD_DEREF") \
            and prev.argval in _FD_MODULES
    return False


class Descriptors:
    """A process's stdio descriptors for its scripts. Built and installed in the worker at
    start (before fork mode's template is forked, so its children share it)."""

    def __init__(self) -> None:
        self.serving = False
        self.armed = False
        self.wrapped = False  # the script opened a file object on fd 0, 1 or 2
        self._saved: tuple[int, ...] = ()
        self._by_number: dict[CodeType, bool] = {}  # a plain dict: a weak one costs a weakref per look-up
        self._lock = threading.RLock()
        self._stopped = False
        self._pump: threading.Thread | None = None
        self._stop_w = -1
        self._body: Body | None = None
        self._sink: Sink | None = None
        self._stdout: Any = None
        self._send: Callable[[bytes], Any] = _nowhere
        self._emit: Callable[[str], None] | None = None
        self._lines: LinesFactory | None = None

    def install(self, lines: LinesFactory) -> None:
        """`lines(emit)` splits what is written to fd 2 into lines for `emit`."""
        global _current, _hooked
        self._lines = lines
        self._saved = tuple(_keep(fd) for fd in _STDIO)
        _current = self
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True

    # -- per request --------------------------------------------------------------------

    def begin(self, code: CodeType, body: Body, stdout: io.TextIOWrapper,
              send: Callable[[bytes], Any], emit: Callable[[str], None]) -> None:
        """A script is about to run: `send` takes its stdout, `emit` the lines written to
        fd 2. Costs a few assignments unless the script uses descriptors by number."""
        self._body, self._stdout, self._send, self._emit = body, stdout, send, emit
        self._sink = stdout.buffer.raw  # type: ignore[attr-defined]
        self.serving = True
        if self.by_number(code):
            self.arm()

    def by_number(self, code: CodeType) -> bool:
        """Whether the script uses descriptors by number, remembered per code object."""
        by_number = self._by_number.get(code)
        if by_number is None:
            if len(self._by_number) >= _MAX_REMEMBERED:
                self._by_number.clear()  # edited scripts' old code objects go too
            by_number = self._by_number[code] = uses_descriptors_by_number(code)
        return by_number

    def arm(self) -> None:
        if self.armed or not self.serving:
            return
        assert self._body is not None and self._sink is not None
        assert self._lines is not None and self._emit is not None
        self.armed = True
        self._stopped = False
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stop_r, self._stop_w = os.pipe()
        for fd, new in ((0, in_r), (1, out_w), (2, err_w)):
            os.dup2(new, fd)  # inheritable: children get them
            os.close(new)  # so that fd 1 is the worker's only write end: EOF comes with the children's
        os.set_blocking(in_w, False)
        remaining = self._body.remaining
        source = self._body.divert(_read_stdin)
        self._sink.target = _write_stdout
        self._pump = threading.Thread(
            target=self._run_pump,
            args=(out_r, err_r, in_w, stop_r, source, remaining, self._lines(self._emit)),
            name="cgirt-stdio", daemon=True)
        self._pump.start()

    def settle(self) -> None:
        """The script has ended: let go of its descriptors and wait until every child that
        holds its stdout has let go too (the request's deadline interrupts the wait)."""
        if not self.armed:
            return
        for stream in (sys.stdout, self._stdout, sys.stderr):
            _flush(stream)  # into the pipes, while they are still fd 1 and 2
        self._restore_fds()
        pump = self._pump
        while pump is not None and pump.is_alive():
            pump.join(0.1)  # a timeout, so that the deadline's signal handler can run
        assert self._sink is not None
        self._sink.target = self._send

    def stop(self) -> None:
        """The pump sends nothing more: the caller writes to the connection itself now."""
        if not self.armed:
            return
        with self._lock:  # wait for a send under way
            self._stopped = True
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    def end(self) -> None:
        """After every request, on every path."""
        if self.armed:
            self.stop()
            self._restore_fds()
            os.close(self._stop_w)
            if self._sink is not None:
                self._sink.target = self._send
            self._pump = None
            self.armed = False
        if self.wrapped:
            # A script's os.fdopen(1) object closes fd 1 when it is collected, which the
            # script's namespace, a reference cycle, delays: collected now (milliseconds, so
            # only then), while the worker can still put its own descriptors back.
            self.wrapped = False
            gc.collect()
            self._restore_fds()
        self.serving = False
        self._body = self._sink = self._stdout = self._emit = None
        self._send = _nowhere

    def _restore_fds(self) -> None:
        for fd, saved in zip(_STDIO, self._saved):
            os.dup2(saved, fd)

    # -- the pump thread ----------------------------------------------------------------

    def _run_pump(self, out_r: int, err_r: int, in_w: int, stop_r: int,
                  source: Callable[[int], bytes], remaining: int, lines: Lines) -> None:
        """Until fd 1's last holder closes it: its bytes to the response, fd 2's lines to
        the error log, the request body into fd 0."""
        poll = select.poll()
        for fd in (out_r, err_r, stop_r):
            poll.register(fd, select.POLLIN)
        if remaining > 0:
            poll.register(in_w, select.POLLOUT)
        else:
            in_w = _close(in_w)
        pending = b""
        try:
            while out_r >= 0:
                for fd, _ in poll.poll():
                    if fd == stop_r:
                        return
                    if fd == out_r:
                        data = os.read(out_r, _CHUNK)
                        if not data or not self._forward(data):
                            poll.unregister(out_r)
                            out_r = _close(out_r)  # children writing on get EPIPE, as the client is gone
                    elif fd == err_r:
                        data = os.read(err_r, _CHUNK)
                        if data:
                            lines.write(data)
                        else:
                            poll.unregister(err_r)
                            err_r = _close(err_r)
                    elif fd == in_w:
                        try:
                            if not pending:
                                pending = source(min(_CHUNK, remaining))
                                if not pending:
                                    raise EOFError
                            n = os.write(in_w, pending)
                            pending = pending[n:]
                            remaining -= n
                        except BlockingIOError:
                            continue
                        except (EOFError, OSError):  # no reader left, or the body ended early
                            remaining = 0
                        if remaining <= 0:
                            poll.unregister(in_w)
                            in_w = _close(in_w)
            if err_r >= 0:  # what was written to fd 2 before fd 1 closed
                os.set_blocking(err_r, False)
                try:
                    while data := os.read(err_r, _CHUNK):
                        lines.write(data)
                except BlockingIOError:
                    pass
            lines.finish()
        finally:
            for fd in (out_r, err_r, in_w, stop_r):
                _close(fd)

    def _forward(self, data: bytes) -> bool:
        with self._lock:
            if self._stopped:
                return False
            try:
                self._send(data)
                return True
            except OSError:  # the web server is gone
                return False


def _keep(fd: int) -> int:
    """A copy of the worker's own fd (or /dev/null if it has none), to put back after."""
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


def _read_stdin(n: int) -> bytes:
    return os.read(0, n)


def _write_stdout(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def _nowhere(data: bytes) -> None:
    raise BrokenPipeError(errno.EPIPE, "no request is being served")


def _close(fd: int) -> int:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
    return -1


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass
