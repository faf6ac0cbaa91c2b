"""Persistent mode: the script's cached code runs in this worker, its process state restored after."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import RequestTimeout, ScriptFailed
from ..log import ErrorLog
from .cache import ScriptCache, SiteModules
from .executors import Finish, Work
from .sandbox import LineTagger, ProcessState, RequestBody, StdStreams, run_script
from .streams import Descriptors

if TYPE_CHECKING:
    from ..fastcgi.server import FastCGIRequest


class PersistentExecutor:
    """Built in the master; `start` in the worker, before the first request."""

    def __init__(self, scripts: ScriptCache, modules: SiteModules, errlog: ErrorLog,
                 finish: Finish) -> None:
        self.scripts = scripts
        self.modules = modules
        self.errlog = errlog
        self.finish = finish
        self._state: ProcessState | None = None
        self._streams: StdStreams | None = None
        self.descriptors = Descriptors()

    def start(self) -> None:
        self._state = ProcessState(site_root=self.modules.site_root)
        self._streams = StdStreams()
        self.descriptors.install(LineTagger)

    def watch_new_modules(self) -> None:
        """Watch the library modules imported since the last request (each request does it
        first; fork mode's template does it once for all its children)."""
        if self._state is not None and self._state.library is not None:
            self._state.library.watch_new()

    def execute(self, req: FastCGIRequest, work: Work) -> None:
        parser = work.response_parser(req.write)
        self.run(req, work, RequestBody(req.stdin.read, work.body_length), parser.write)
        self.finish(req, work, parser)

    def run(self, req: FastCGIRequest, work: Work, body: RequestBody,
            write: Callable[[bytes], object]) -> None:
        """The script alone, its output to `write`."""
        assert self._state is not None and self._streams is not None
        target = work.target
        req.release_output()  # an internal redirect's first script may have held it
        self.modules.refresh()
        try:
            code = self.scripts.get(target.path, target.stat)
        except SyntaxError as exc:
            raise ScriptFailed(log=f"syntax error: {exc.msg} (line {exc.lineno})",
                               script=target.path) from None
        except OSError as exc:
            raise ScriptFailed(log=f"cannot read script: {exc.strerror}", script=target.path) from None
        emit = lambda line: self.errlog.line(target.path, line)  # noqa: E731
        stdio = self._streams.aim(body, write, emit)
        fds = self.descriptors
        fds.begin(code, body, stdio[1], write, emit)

        def before_flush() -> None:
            fds.settle()  # the children's output first: it was written before
            req.hold_output()

        flushed = False
        try:
            result = run_script(self._state, code, target.path, work.env, stdio,
                                [target.path, *work.argv], before_flush=before_flush,
                                restore=work.restore)
            flushed = result.stdout_flushed
        finally:
            fds.end()
            self._streams.release(flushed)
        self.modules.collect()
        for change in result.changes:
            self.errlog.line(target.path, change)
        if result.timed_out:
            raise RequestTimeout()
        if result.recycle:
            req.conn.control.recycle_after_request()
