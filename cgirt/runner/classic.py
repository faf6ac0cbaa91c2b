"""Exec mode: classic CGI (RFC 3875), fork + exec of the script file.

For non-Python executables in a cgi-bin (shell, Perl, compiled programs) and as an opt-out
for Python scripts. The same dispatch, environment and response parsing as in-process modes.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
from typing import TYPE_CHECKING, Callable, Mapping

from ..errors import ScriptFailed
from ..log import ErrorLog
from .executors import Finish, Work
from .sandbox import LineTagger, RequestBody

if TYPE_CHECKING:
    from ..fastcgi.server import FastCGIRequest

_CHUNK = 65536


class ExecExecutor:
    """Exec mode as an executor: the script's output is parsed and finished as in-process."""

    def __init__(self, errlog: ErrorLog, finish: Finish) -> None:
        self.errlog = errlog
        self.finish = finish

    def execute(self, req: FastCGIRequest, work: Work) -> None:
        parser = work.response_parser(req.write)
        path = work.target.path
        run_exec(path, work.argv, work.env, RequestBody(req.stdin.read, work.body_length),
                 parser.write, lambda line: self.errlog.line(path, line))
        self.finish(req, work, parser)


def run_exec(
    path: str, argv_words: list[str], env: Mapping[str, str], body: RequestBody,
    send: Callable[[bytes], object], emit_stderr: Callable[[str], None],
) -> int:
    """Run the executable; its stdout goes to `send`. Returns its exit status."""
    try:
        proc = subprocess.Popen(
            [path, *argv_words], cwd=os.path.dirname(path), env=dict(env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            close_fds=True, start_new_session=True,
        )
    except OSError as exc:
        raise ScriptFailed(log=f"cannot execute: {exc.strerror}", script=path) from None
    try:
        feeder = threading.Thread(target=_feed, args=(proc, body), daemon=True)
        feeder.start()
        _pump(proc, send, LineTagger(emit_stderr))
        feeder.join(timeout=5)
        return proc.wait()
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _feed(proc: subprocess.Popen[bytes], body: RequestBody) -> None:
    assert proc.stdin is not None
    try:
        while True:
            chunk = body.read(_CHUNK)
            if not chunk:
                break
            proc.stdin.write(chunk)
        proc.stdin.close()
    except (OSError, ValueError):
        pass  # the script stopped reading, or the body ended early: as under classic CGI


def _pump(proc: subprocess.Popen[bytes], send: Callable[[bytes], object], stderr: LineTagger) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, send)
        sel.register(proc.stderr, selectors.EVENT_READ, stderr.write)
        open_streams = 2
        while open_streams:
            for key, _ in sel.select():
                data = os.read(key.fd, _CHUNK)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data(data)
    stderr.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
