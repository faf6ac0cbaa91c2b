"""The runner's request path in this process: whole FastCGI requests through a real CgiApp.

What one worker does, without the supervisor and without a web server: the app is built and
booted (`child_init`) here, and each request goes as FastCGI records over a socketpair
through `FastCGIServer.handle_connection`, the same call a worker makes for a connection.
Used by unit tests (tests/unit/runner/conftest.py) and by `python -m bench.hotpath`.

A request and its response must each fit the socketpair's buffers (a few hundred KiB): the
request is written whole before the app runs, and the response read after it has ended.
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path
from typing import Any, Callable

from cgirt import site as site_layout
from cgirt.config import RunnerConfig
from cgirt.fastcgi.records import request_records
from cgirt.fastcgi.server import FastCGIServer, SingleRequestControl, io_timeout
from cgirt.runner.app import CgiApp
from tests.support.fcgi import Response, parse_response


class InProcessRunner:
    def __init__(self, site: Path, make_app: Callable[[RunnerConfig], CgiApp] = CgiApp,
                 **settings: Any) -> None:
        self.site = site
        self.config = RunnerConfig.from_sources(overrides={"site": str(site), **settings})
        self.app = make_app(self.config)  # a subclass's, as `cgirt host` builds its own
        self.server = FastCGIServer(self.app, max_conns=1, io_timeout=io_timeout(self.config))
        self.control = SingleRequestControl()
        self._saved: tuple[Any, ...] | None = None

    def start(self) -> None:
        """Boot as a worker does: error log, preloads, site loader, deadline signal, and the
        fork-mode template (a child of this process until `stop`)."""
        site_layout.ensure_state(self.site)  # as `cgirt serve` does before it builds the app
        self._saved = (signal.getsignal(signal.SIGALRM), list(sys.path_hooks),
                       sys.dont_write_bytecode)
        self.app.child_init()

    def stop(self) -> None:
        """Undo what booting did to this process, so the next test starts clean."""
        signal.setitimer(signal.ITIMER_REAL, 0)  # each request arms it and leaves it armed
        self.app.forks.stop()
        self.app.errlog.close()
        state = self.app.persistent._state
        if state is not None and state.library is not None:
            state.library.close()  # else the next runner's watch finds the modules taken
        if self._saved is not None:
            handler, hooks, no_bytecode = self._saved
            signal.signal(signal.SIGALRM, handler)
            sys.path_hooks[:] = hooks
            sys.path_importer_cache.clear()
            sys.dont_write_bytecode = no_bytecode

    def raw(self, data: bytes) -> bytes:
        """Send `data` as the web server's whole input; everything the app sent back."""
        ours, theirs = socket.socketpair()
        try:
            theirs.sendall(data)
            theirs.shutdown(socket.SHUT_WR)  # as nginx does once the response has ended
            self.server.handle_connection(ours, None, self.control)
            out = b""
            while chunk := theirs.recv(1 << 20):
                out += chunk
            return out
        finally:
            ours.close()  # closed by the connection already, unless it failed
            theirs.close()

    def request(self, params: dict[str, str], body: bytes = b"") -> Response:
        """A request as a web server sends it; the parsed response."""
        return parse_response(self.raw(request_records(1, params, body)))
