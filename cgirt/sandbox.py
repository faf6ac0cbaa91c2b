"""Run a cached script as `__main__` with a CGI process's state, restored afterwards.

Everything process-global that a CGI script may read or change is set up for the request
and put back after it, on every path, in one context manager: os.environ (and the C
environment that subprocesses inherit), stdio, argv, the current directory, sys.path,
`__main__`, atexit handlers, signal handlers, the umask, sys.excepthook, cgi.maxlen.
"""

from __future__ import annotations

import _signal
import atexit
import builtins
import ctypes
import io
import os
import signal
import sys
import threading
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Callable, Iterator, Mapping

from .errors import RequestTimeout

_WATCHED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGCHLD",
                 "SIGQUIT", "SIGALRM")
)
# The C function itself: signal.getsignal wraps every answer in an enum, which costs more
# than the system call; this runs for every watched signal after every request.
_getsignal = _signal.getsignal
_libc = ctypes.CDLL(None)
_c_environ = ctypes.c_void_p.in_dll(_libc, "environ")
_fs_encoding = sys.getfilesystemencoding()


class RequestBody(io.RawIOBase):
    """Exactly CONTENT_LENGTH bytes of the request body, then EOF."""

    def __init__(self, read: Callable[[int], bytes], length: int) -> None:
        self._read = read
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.remaining)
        if n <= 0:
            return 0
        try:
            data = self._read(n)
        except EOFError:
            data = b""
        if not data:
            raise ConnectionResetError("the request body ended before CONTENT_LENGTH bytes")
        buffer[: len(data)] = data
        self.remaining -= len(data)
        return len(data)


class _Sink(io.RawIOBase):
    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._write(bytes(data))
        return len(data)


class LineTagger(io.RawIOBase):
    """stderr of a script: each complete line goes to `emit` (the site's error log)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._partial = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = self._partial + bytes(data)
        *lines, self._partial = chunk.split(b"\n")
        for line in lines:
            self._emit(line.decode("utf-8", "backslashreplace"))
        return len(data)

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial.decode("utf-8", "backslashreplace"))
            self._partial = b""
        super().close()


def text_stdout(write: Callable[[bytes], Any]) -> io.TextIOWrapper:
    # write_through keeps print() and sys.stdout.buffer.write() in the order they were called.
    return io.TextIOWrapper(io.BufferedWriter(_Sink(write), 65536), encoding="utf-8",
                            errors="surrogateescape", write_through=True)


def text_stdin(body: RequestBody) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedReader(body, 65536), encoding="utf-8",
                            errors="surrogateescape")


def text_stderr(emit: Callable[[str], None]) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(LineTagger(emit)), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


@dataclass
class Result:
    exit_status: int = 0
    recycle: bool = False  # the worker should not serve another request
    timed_out: bool = False


@dataclass
class ProcessState:
    """The worker's own process state, captured once, restored after every request."""

    environ: dict[bytes, bytes] = field(default_factory=lambda: dict(os.environ._data))  # type: ignore[attr-defined]
    cwd: str = field(default_factory=os.getcwd)
    path: list[str] = field(default_factory=lambda: list(sys.path))
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    stdio: tuple[Any, Any, Any] = field(default_factory=lambda: (sys.stdin, sys.stdout, sys.stderr))
    main: types.ModuleType | None = field(default_factory=lambda: sys.modules.get("__main__"))
    excepthook: Any = field(default_factory=lambda: sys.excepthook)
    umask: int = field(default_factory=lambda: _read_umask())
    handlers: dict[int, Any] = field(default_factory=lambda: {s: _getsignal(s) for s in _WATCHED_SIGNALS})
    cgi_maxlen: int = 0

    @contextmanager
    def applied(
        self, env: Mapping[str, str], stdio: tuple[Any, Any, Any], argv: list[str], cwd: str,
        atexit_calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]],
    ) -> Iterator[dict[str, Any]]:
        data = os.environ._data  # type: ignore[attr-defined]
        encoded = {k.encode(_fs_encoding, "surrogateescape"): v.encode(_fs_encoding, "surrogateescape")
                   for k, v in env.items()}
        # In place, not per key: os.environ's __setitem__ calls putenv, which is slow and
        # makes glibc keep every value forever. The C environment is swapped whole instead.
        data.clear()
        data.update(encoded)
        c_env = (ctypes.c_char_p * (len(encoded) + 1))(*(k + b"=" + v for k, v in encoded.items()), None)
        saved_c_environ = _c_environ.value
        _c_environ.value = ctypes.addressof(c_env)
        main = types.ModuleType("__main__")
        sys.stdin, sys.stdout, sys.stderr = stdio
        sys.argv = argv
        sys.path[:] = [cwd] + self.path[1:]
        sys.modules["__main__"] = main
        saved_register, saved_unregister = atexit.register, atexit.unregister
        atexit.register = _recording_register(atexit_calls)
        atexit.unregister = _recording_unregister(atexit_calls)
        try:
            os.chdir(cwd)
            yield main.__dict__
        finally:
            atexit.register, atexit.unregister = saved_register, saved_unregister
            _c_environ.value = saved_c_environ
            del c_env
            data.clear()
            data.update(self.environ)
            sys.stdin, sys.stdout, sys.stderr = self.stdio
            sys.argv = list(self.argv)
            sys.path[:] = self.path
            if self.main is not None:
                sys.modules["__main__"] = self.main
            sys.excepthook = self.excepthook
            os.chdir(self.cwd)
            self._restore_globals()

    def _restore_globals(self) -> None:
        os.umask(self.umask)
        for s, handler in self.handlers.items():
            # `!=`, not `is not`: a bound method is a new object each time it is looked up.
            if _getsignal(s) != handler:
                signal.signal(s, handler)
        cgi = sys.modules.get("cgi")
        if cgi is not None and getattr(cgi, "maxlen", 0) != self.cgi_maxlen:
            setattr(cgi, "maxlen", self.cgi_maxlen)  # cgi.test() sets it to 50


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _recording_register(calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> Callable[..., Any]:
    def register(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        calls.append((func, args, kwargs))
        return func
    return register


def _recording_unregister(calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> Callable[..., None]:
    def unregister(func: Callable[..., Any]) -> None:
        calls[:] = [c for c in calls if c[0] != func]
    return unregister


def run_script(
    state: ProcessState, code: CodeType, path: str, env: Mapping[str, str],
    stdio: tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper], argv: list[str],
) -> Result:
    """Execute `code` as a CGI script would run: as __main__, with its exit status."""
    result = Result()
    atexit_calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    threads_before = threading.active_count()
    with state.applied(env, stdio, argv, os.path.dirname(path), atexit_calls) as namespace:
        namespace.update(__file__=path, __builtins__=builtins, __cached__=None, __package__=None)
        try:
            try:
                exec(code, namespace)
            except SystemExit as exc:
                result.exit_status = _exit_status(exc.code)
            except RequestTimeout:
                raise
            except BaseException as exc:  # noqa: B036 - the script's crash is reported, as Python would
                result.exit_status = 1
                result.recycle = isinstance(exc, MemoryError)
                _report(exc, state)
            _run_atexit(atexit_calls)
            _flush(sys.stdout)
            _close(sys.stderr)
        except RequestTimeout:
            result.timed_out = result.recycle = True
    if threading.active_count() > threads_before:
        result.recycle = _join_stray_threads() or result.recycle
    return result


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
    return 1


def _report(exc: BaseException, state: ProcessState) -> None:
    """Uncaught exception: the script's own hook (cgitb) if it set one, else a traceback."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # drop our exec frame
    if sys.excepthook is not state.excepthook:
        try:
            sys.excepthook(type(exc), exc, tb)
            return
        except Exception:
            pass
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _run_atexit(calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]) -> None:
    while calls:
        func, args, kwargs = calls.pop()
        try:
            func(*args, **kwargs)
        except SystemExit:
            pass
        except RequestTimeout:
            raise
        except Exception:
            print("Exception ignored in atexit callback", repr(func), file=sys.stderr)
            traceback.print_exc(file=sys.stderr)


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass  # the web server went away, or the script closed its stdout


def _close(stream: Any) -> None:
    try:
        stream.flush()
        stream.buffer.raw.close()
    except (OSError, ValueError):
        pass


def _join_stray_threads() -> bool:
    """Wait briefly for threads a script left; True if some remain (recycle the worker)."""
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join(timeout=1.0)
    return threading.active_count() > 1
