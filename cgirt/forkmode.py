"""Fork mode: each request runs in a fresh child forked from the worker.

Exact CGI process isolation (globals, threads, os._exit, atexit, signals die with the
child) at the cost of a fork, not of an interpreter start. The child answers the request
itself; the worker waits for it with a deadline, and answers for it when it dies silently.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
from typing import Callable

from .errors import HttpError, RequestTimeout
from .fastcgi import FastCGIRequest
from .supervisor import _die_with_parent

_NOTHING, _STARTED, _ENDED = 0, 1, 2


class ChildDied(HttpError):
    status, reason = 502, "Bad Gateway"


class ForkRunner:
    def __init__(self, timeout: float, kill_grace: float) -> None:
        self.timeout = timeout
        self.kill_grace = kill_grace
        self._flag: mmap.mmap | None = None

    def run(self, req: FastCGIRequest, serve: Callable[[], None],
            error_page: Callable[[FastCGIRequest, HttpError], None]) -> None:
        if self._flag is None:
            self._flag = mmap.mmap(-1, 1)
        flag = self._flag
        flag[0] = _NOTHING
        # The worker's own deadline timer stops here; the child gets the remaining time.
        remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0] or self.timeout
        pid = os.fork()
        if pid == 0:
            self._child(req, serve, flag, remaining)
        req.conn.keep_conn = False  # the child consumed records this process never saw
        timed_out = not self._wait(pid, remaining + self.kill_grace / 2)
        if flag[0] == _ENDED:
            req.ended = True
            return
        if flag[0] == _NOTHING:
            error_page(req, RequestTimeout() if timed_out else ChildDied())
        req.end()

    def _child(self, req: FastCGIRequest, serve: Callable[[], None], flag: mmap.mmap,
               remaining: float) -> None:
        code = 0
        try:
            _die_with_parent()

            def started() -> None:
                flag[0] = _STARTED

            req.on_first_write = started
            signal.setitimer(signal.ITIMER_REAL, remaining)
            serve()
            signal.setitimer(signal.ITIMER_REAL, 0)
            req.end()
            flag[0] = _ENDED
        except BaseException:  # noqa: B036 - the child must never return into the worker
            code = 1
        finally:
            os._exit(code)

    def _wait(self, pid: int, seconds: float) -> bool:
        """Wait for the child; kill it after `seconds`. True if it ended by itself."""
        fd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([fd], [], [], seconds)
            if not ready:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return bool(ready)
        finally:
            os.close(fd)
