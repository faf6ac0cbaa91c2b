"""Run a cached script as `__main__` with a CGI process's state, restored afterwards.

Everything process-global that a CGI script may read or change is set up for the request
and put back after it, on every path, in one context manager: os.environ (and the C
environment that subprocesses inherit), stdio, argv, the current directory, sys.path,
`__main__`, atexit handlers, signal handlers, the umask, sys.excepthook, cgi.maxlen; and,
through interpreter.py and libwatch.py, interpreter-wide settings and library modules.
"""

from __future__ import annotations

import _signal
import _thread
import array
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
from dataclasses import dataclass, field
from itertools import accumulate
from types import CodeType
from typing import Any, Callable, Mapping

from ..errors import RequestTimeout
from .interpreter import InterpreterState
from .libwatch import LibraryWatch
from .streams import fileno as _stdio_fileno

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
# Threads running besides the main one, in C: threading.active_count() takes a lock in
# Python, twice per request. Threads started by _thread directly are counted too.
_thread_count: Callable[[], int] = _thread._count


class RequestBody(io.RawIOBase):
    """Exactly CONTENT_LENGTH bytes of the request body, then EOF."""

    def __init__(self, read: Callable[[int], bytes], length: int) -> None:
        self._read = read
        self.remaining = length

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return _stdio_fileno(0)

    def divert(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """Read the rest from `read`; returns what it read from until now."""
        old, self._read = self._read, read
        return old

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


def _no_request(data: bytes) -> None:
    raise BrokenPipeError("no request is being served")


class _Sink(io.RawIOBase):
    """The bottom of a script's stdout: re-aimed at each request's response."""

    def __init__(self, write: Callable[[bytes], Any] = _no_request) -> None:
        self.target = write

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return _stdio_fileno(1)

    def write(self, data: Any) -> int:
        self.target(bytes(data))
        return len(data)


def _no_log(line: str) -> None:
    pass


class LineTagger(io.RawIOBase):
    """stderr of a script: each complete line goes to `emit` (the site's error log)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self._partial = b""

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return _stdio_fileno(2)

    def write(self, data: Any) -> int:
        chunk = self._partial + bytes(data)
        *lines, self._partial = chunk.split(b"\n")
        for line in lines:
            self.emit(line.decode("utf-8", "backslashreplace"))
        return len(data)

    def finish(self) -> None:
        """Emit the last line, if it had no newline."""
        if self._partial:
            self.emit(self._partial.decode("utf-8", "backslashreplace"))
            self._partial = b""

    def close(self) -> None:
        self.finish()
        super().close()


def text_stdout(write: Callable[[bytes], Any]) -> io.TextIOWrapper:
    # write_through keeps print() and sys.stdout.buffer.write() in the order they were called.
    return io.TextIOWrapper(io.BufferedWriter(_Sink(write), 65536), encoding="utf-8",
                            errors="surrogateescape", write_through=True)


class _BodySource(io.RawIOBase):
    """The bottom of a script's stdin: re-aimed at each request's body."""

    def __init__(self, body: RequestBody) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return _stdio_fileno(0)

    def readinto(self, buffer: Any) -> int:
        return self.body.readinto(buffer)


def text_stdin(body: io.RawIOBase) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedReader(body, 65536), encoding="utf-8",
                            errors="surrogateescape")


def text_stderr(emit: Callable[[str], None]) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(LineTagger(emit)), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


# What each stream is built with; one a script has changed (reconfigure, detach, close) is
# replaced rather than handed to the next request.
_STDOUT_SETTINGS = ("utf-8", "surrogateescape", False, True)
_STDERR_SETTINGS = ("utf-8", "backslashreplace", True, False)
_STDIN_SETTINGS = ("utf-8", "surrogateescape", False, False)


def _intact(stream: io.TextIOWrapper, raw: io.RawIOBase, settings: tuple[str, str, bool, bool]) -> bool:
    try:
        return (not stream.closed and stream.buffer.raw is raw  # type: ignore[attr-defined]
                and (stream.encoding, stream.errors, stream.line_buffering,
                     stream.write_through) == settings)
    except ValueError:  # detached
        return False


class StdStreams:
    """A worker's stdin, stdout and stderr for scripts: built once and re-aimed at each
    request, since three text streams over buffered ones cost a tenth of a small request.

    A stream comes back to the next request only if it is as it was built and empty: a
    script that closed, detached or reconfigured one, or a response cut off with output
    still buffered, gets it replaced. Being the same objects from request to request, they
    are also what a library module captured at import (Trac's WSGI gateway takes
    `stdin=sys.stdin` as a default argument) keeps reading and writing."""

    def __init__(self) -> None:
        self.stdout = text_stdout(_no_request)
        self.stderr = text_stderr(_no_log)
        self._no_body = RequestBody(lambda n: b"", 0)
        self._source = _BodySource(self._no_body)
        self.stdin = text_stdin(self._source)
        self._had_body = False

    def aim(self, body: RequestBody, write: Callable[[bytes], Any],
            emit: Callable[[str], None]) -> tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]:
        self.stdout.buffer.raw.target = write  # type: ignore[attr-defined]
        self.stderr.buffer.raw.emit = emit  # type: ignore[attr-defined]
        self._source.body = body
        self._had_body = body.remaining > 0
        return self.stdin, self.stdout, self.stderr

    def release(self, stdout_flushed: bool) -> None:
        """After the request: disarm the streams, and replace any a script has changed."""
        sink = self.stdout.buffer.raw  # type: ignore[attr-defined]
        if stdout_flushed and _intact(self.stdout, sink, _STDOUT_SETTINGS):
            sink.target = _no_request
        else:
            self.stdout = text_stdout(_no_request)
        tagger = self.stderr.buffer.raw  # type: ignore[attr-defined]
        if _intact(self.stderr, tagger, _STDERR_SETTINGS):
            tagger.emit = _no_log
        else:
            self.stderr = text_stderr(_no_log)
        self._source.body = self._no_body
        if not _intact(self.stdin, self._source, _STDIN_SETTINGS) or (self._had_body and _unread(self.stdin)):
            self._source = _BodySource(self._no_body)
            self.stdin = text_stdin(self._source)


def _unread(stdin: io.TextIOWrapper) -> bool:
    """True if a body the script did not read to its end is left in the stream's buffers."""
    try:
        return bool(stdin.read())  # from the buffers only: the source is aimed at no body
    except (OSError, ValueError):
        return True


CEnvironment = tuple[bytes, "array.array[int]"]


def c_environment(encoded: Mapping[bytes, bytes]) -> CEnvironment:
    """A C `environ` array for `encoded`: one buffer of NUL-ended "NAME=value" strings and the
    NULL-ended array of pointers into it (both must be kept alive while it is in use)."""
    return _c_array(list(map(_join_pair, encoded.items())))


def _c_array(items: list[bytes]) -> CEnvironment:
    blob = b"\0".join(items) + b"\0"
    # The address of the bytes' own buffer: id() plus the offset measured at import, instead
    # of a ctypes.cast (a microsecond per request).
    address = id(blob) + _BYTES_DATA
    pointers = array.array(_POINTER, accumulate(map(_plus_one, map(len, items)), initial=address))
    pointers[-1] = 0  # the entry after the last string ends the array
    return blob, pointers


def encode_environment(env: Mapping[str, str]) -> tuple[dict[bytes, bytes], CEnvironment]:
    """`env` encoded as Python encodes a process environment (os.environ's data), and its C
    array. All values are encoded by one call, then split: an encode per name and value
    cost a third of the request's environment work. The names come from a web server's
    params, the same ones in the same order request after request: their encoded forms and
    the format string of the C environment's buffer are kept (`_layout`), by the names
    joined. A NUL in a name or value (no real environment has one) makes the split
    ambiguous: then one by one."""
    if not env:
        return {}, c_environment({})
    n = len(env) - 1
    names, values = "\0".join(env), "\0".join(env.values())  # two joins: no tuple per item
    layout = _LAYOUTS.get(names) or _layout(names, n)
    if layout is None or values.count("\0") != n:
        encoded = {k.encode(_fs_encoding, "surrogateescape"): v.encode(_fs_encoding, "surrogateescape")
                   for k, v in env.items()}
        return encoded, c_environment(encoded)
    template, keys = layout
    encoded = dict(zip(keys, values.encode(_fs_encoding, "surrogateescape").split(b"\0")))
    if _argz_extract is None:
        return encoded, c_environment(encoded)
    # "NAME=value" strings made by one format (encoding commutes with concatenation), each
    # ended by a NUL and with none inside (checked above): glibc's argz_extract fills the
    # array of pointers in one foreign call, instead of a Python integer or two per variable.
    blob = (template % tuple(env.values())).encode(_fs_encoding, "surrogateescape")
    count = n + 2
    pointers = _NULLS[:count] if count <= len(_NULLS) else array.array(_POINTER, bytes(count * _POINTER_SIZE))
    _argz_extract(id(blob) + _BYTES_DATA, len(blob), pointers.buffer_info()[0])
    return encoded, (blob, pointers)


# Names joined by NUL → the C buffer's format string and the encoded names.
_LAYOUTS: dict[str, tuple[str, list[bytes]]] = {}
_LAYOUTS_KEPT = 64  # names come from web servers' configurations: a few sets


def _layout(names: str, n: int) -> tuple[str, list[bytes]] | None:
    if names.count("\0") != n:
        return None  # a NUL inside a name
    split = names.split("\0")
    layout = ("".join(name.replace("%", "%%") + "=%s\0" for name in split),
              names.encode(_fs_encoding, "surrogateescape").split(b"\0"))
    if len(_LAYOUTS) >= _LAYOUTS_KEPT:
        _LAYOUTS.clear()
    _LAYOUTS[names] = layout
    return layout


def _bytes_data_offset() -> int:
    probe = b"cgirt"
    return int(ctypes.cast(probe, ctypes.c_void_p).value or 0) - id(probe)  # type: ignore[arg-type]  # bytes converts


_BYTES_DATA = _bytes_data_offset()
_join_pair = b"=".join
_plus_one = (1).__add__


_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)
_POINTER = "Q" if _POINTER_SIZE == 8 else "I"
_NULLS = array.array(_POINTER, bytes(256 * _POINTER_SIZE))  # sliced: a new array, zeroed


def _load_argz_extract() -> Callable[[int, int, int], None] | None:
    """glibc's argz_extract(buffer, length, array): a pointer to each NUL-ended string of
    the buffer, then NULL. None where the C library has none (then Python does it)."""
    fn = getattr(_libc, "argz_extract", None)
    if fn is None:
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    fn.restype = None
    extract: Callable[[int, int, int], None] = fn
    return extract


_argz_extract = _load_argz_extract()


@dataclass
class Result:
    exit_status: int = 0
    recycle: bool = False  # the worker should not serve another request
    timed_out: bool = False
    stdout_flushed: bool = False  # nothing the script wrote is left in a buffer
    # What the script changed that cannot be put back (a line each for the site's error log).
    changes: list[str] = field(default_factory=list)


@dataclass
class ProcessState:
    """The worker's own process state, captured once, restored after every request."""

    environ: dict[bytes, bytes] = field(default_factory=lambda: dict(os.environ._data))  # type: ignore[attr-defined]
    # Absolute: the current directory is each request's script directory, so a relative
    # entry ("" for `python -c`) would import from a site between requests.
    path: list[str] = field(default_factory=lambda: [os.path.abspath(p) for p in sys.path])
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    stdio: tuple[Any, Any, Any] = field(default_factory=lambda: (sys.stdin, sys.stdout, sys.stderr))
    main: types.ModuleType | None = field(default_factory=lambda: sys.modules.get("__main__"))
    excepthook: Any = field(default_factory=lambda: sys.excepthook)
    umask: int = field(default_factory=lambda: _read_umask())
    handlers: dict[int, Any] = field(default_factory=lambda: {s: _getsignal(s) for s in _WATCHED_SIGNALS})
    cgi_maxlen: int = 0
    interpreter: InterpreterState = field(default_factory=InterpreterState)
    # Where the site's code lives: writes from there to library modules are watched.
    site_root: str | None = None
    library: LibraryWatch | None = None

    def __post_init__(self) -> None:
        self._worker_data: dict[bytes, bytes] = os.environ._data  # type: ignore[attr-defined]
        # The objects themselves: a script that rebinds os.environ (and has its worker
        # replaced for it) cannot make the restore fail.
        self._environs: tuple[Any, Any] = (os.environ, os.environb)
        self._handler_values = [self.handlers[s] for s in _WATCHED_SIGNALS]
        if self.site_root is not None and self.library is None:
            self.library = LibraryWatch(self.site_root)
        # The worker's C environment moves into an array of its own: glibc's putenv reallocs
        # the array it allocated last, so if that is the one restored after a request (the
        # worker's own, once anything called putenv, as os.environ and Python's locale
        # coercion do), a script's os.environ change brings back freed memory or its own
        # environment.
        self._c_env = c_environment(self.environ)
        _c_environ.value = self._c_env[1].buffer_info()[0]
        self._deferred: Any = None  # what `restore` needs, when run_script left it undone

    def apply(
        self, env: Mapping[str, str], stdio: tuple[Any, Any, Any], argv: list[str], cwd: str,
        atexit_calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]],
    ) -> tuple[dict[str, Any], Any]:
        """Give the process the request's state; returns the script's namespace and what
        `restore` needs. Not a context manager: this runs for every request, and a
        generator-based one cost more than some of the work it wraps."""
        if self._deferred is not None:
            # The last script's changes, left in place for a process about to exit, which
            # runs another script after all (an internal redirect): it starts clean too.
            saved, self._deferred = self._deferred, None
            self.restore(saved)
        # First, so that if it fails nothing else has changed. Not changed back afterwards
        # (a system call per request): the worker itself uses absolute paths only (see
        # `path`), and every request sets its own.
        os.chdir(cwd)
        if self.library is not None:
            self.library.watch_new()
        encoded, c_env = encode_environment(env)
        # Whole, not per key: os.environ's __setitem__ calls putenv, which is slow and makes
        # glibc keep every value forever. The mapping under os.environ and os.environb (one
        # dict, shared) is swapped for the request's, as the C environment is: nothing else
        # holds the worker's own, which comes back untouched.
        self._environs[0]._data = self._environs[1]._data = encoded
        saved_c_environ = _c_environ.value
        _c_environ.value = c_env[1].buffer_info()[0]
        main = types.ModuleType("__main__")
        sys.stdin, sys.stdout, sys.stderr = stdio
        sys.argv = argv
        sys.path[:] = [cwd] + self.path[1:]
        sys.modules["__main__"] = main
        saved_atexit = atexit.register, atexit.unregister
        atexit.register = _recording_register(atexit_calls)
        atexit.unregister = _recording_unregister(atexit_calls)
        return main.__dict__, (c_env, saved_c_environ, saved_atexit)

    def defer(self, saved: Any) -> None:
        """Leave the script's state in place until the next `apply`, if any."""
        self._deferred = saved

    def restore(self, saved: Any) -> list[str]:
        """Put the worker's state back; returns what could not be put back."""
        _, saved_c_environ, (atexit.register, atexit.unregister) = saved
        _c_environ.value = saved_c_environ
        self._environs[0]._data = self._environs[1]._data = self._worker_data
        sys.stdin, sys.stdout, sys.stderr = self.stdio
        sys.argv = list(self.argv)
        sys.path[:] = self.path
        if self.main is not None:
            sys.modules["__main__"] = self.main
        sys.excepthook = self.excepthook
        self._restore_globals()
        # After the environment: time.tzset() must see the worker's own TZ again.
        lost = self.interpreter.restore()
        if self.library is not None:
            lost += [f"changed {module}.{name}, in a library module shared by all requests: "
                     "this worker will be replaced after the response"
                     for module, name in self.library.changes()]
        return lost

    def _restore_globals(self) -> None:
        os.umask(self.umask)
        # All read by one map in C and compared as one list (nearly always equal), rather
        # than a loop in Python around every signal.
        if list(map(_getsignal, _WATCHED_SIGNALS)) != self._handler_values:
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
    before_flush: Callable[[], None] | None = None, restore: bool = True,
) -> Result:
    """Execute `code` as a CGI script would run: as __main__, with its exit status.

    `before_flush` runs when the script and its atexit handlers are done, before its last
    output is flushed. Without `restore` (a process that exits after the response), the
    process state is put back only if another script is run (`ProcessState.apply`)."""
    result = Result()
    atexit_calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
    threads_before = _thread_count()
    namespace, saved = state.apply(env, stdio, argv, os.path.dirname(path), atexit_calls)
    try:
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
            if before_flush is not None:
                before_flush()
            # The script's sys.stdout, and ours if it replaced it (as a process's exit would).
            result.stdout_flushed = _flush(sys.stdout) and (sys.stdout is stdio[1] or _flush(stdio[1]))
            _flush(sys.stderr)
            _end_stderr(stdio[2])
        except RequestTimeout:
            result.timed_out = result.recycle = True
    finally:
        if restore:
            result.changes = state.restore(saved)
        else:
            state.defer(saved)
    if result.changes:
        result.recycle = True
    if _thread_count() > threads_before:
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


def _flush(stream: Any) -> bool:
    try:
        stream.flush()
        return True
    except (OSError, ValueError, AttributeError):
        return False  # the web server went away, or the script closed or replaced its stdout


def _end_stderr(stream: io.TextIOWrapper) -> None:
    """Send the script's last stderr line to the log even if it had no newline."""
    try:
        stream.flush()
        stream.buffer.raw.finish()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        pass  # closed by the script (which logged the line) or detached


def _join_stray_threads() -> bool:
    """Wait briefly for threads a script left; True if some remain (recycle the worker)."""
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join(timeout=1.0)
    return threading.active_count() > 1
