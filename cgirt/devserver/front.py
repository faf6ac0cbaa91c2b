"""The development HTTP front end: static files from ``htdocs/``, ``/cgi-bin/`` over FastCGI.

It stands where nginx stands in production, so a newcomer runs the very runner code that
production runs. One thread per connection (the runner, not this, is where concurrency is
bounded); HTTP/1.1 keep-alive; request bodies stream to FCGI_STDIN and responses stream back
with Content-Length or chunked coding, so memory stays bounded whatever the sizes.

Use from Python::

    front = DevFront(DevFrontConfig(site=Path("site"), backend=parse_address("unix:/s")))
    print(front.url)              # bound already (port 0 picks a free port)
    threading.Thread(target=front.serve_forever).start()
    ...
    front.shutdown()              # from any other thread; waits for every connection

or ``python -m cgirt.devserver --site DIR --listen 127.0.0.1:0 --backend unix:/path``,
which prints the URL on one line and serves until SIGINT or SIGTERM.

Not for production: no TLS, no byte ranges, no access control beyond the site layout.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence

from .. import site
from ..config import add_flags, config_from_flags
from ..errors import CgirtError, ExitStatus
from .config import DevFrontConfig, DevFrontError, parse_listen
from .handler import FrontServer

__all__ = ["DevFront", "DevFrontConfig", "DevFrontError", "main", "parse_listen", "run"]


class DevFront:
    """The front end, bound and listening once constructed.

    ``serve_forever()`` runs the accept loop (in any thread); ``shutdown()`` from another
    thread stops it, drops open connections and waits for every connection thread.
    """

    def __init__(self, config: DevFrontConfig) -> None:
        self.config = config
        if not config.site.is_dir():
            raise DevFrontError(f"{config.site} is not a directory (the site)")
        root = config.site / site.DOCUMENT_ROOT
        # A site without htdocs/ has no static files (each is a 404), as behind nginx
        # with a root that does not exist; one can be uploaded later.
        if root.exists() and not root.is_dir():
            raise DevFrontError(f"{root} is not a directory (the site's static files)")
        try:
            # DOCUMENT_ROOT names the root as given, as nginx's `root` does; the resolved
            # path is what static files are checked against.
            self._server = FrontServer(config, os.path.realpath(root), os.path.abspath(root))
        except OSError as exc:
            raise DevFrontError(f"cannot listen on {config.host}:{config.port}: "
                                f"{exc.strerror or exc}") from exc
        self._state = threading.Lock()
        self._serving = False
        self._closed = False

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        with self._state:
            if self._closed:
                return
            self._serving = True
        self._server.serve()

    def shutdown(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        self._server.stop(serving)

    def __enter__(self) -> DevFront:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def run(config: DevFrontConfig, on_ready: Callable[[DevFront], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; call from the main thread (it owns the signals)."""
    stop = {signal.SIGINT, signal.SIGTERM}
    # Blocked before any thread starts, so the signals wait for sigwait() below instead of
    # interrupting a connection thread: no handler runs, nothing needs to be async-safe.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        front = DevFront(config)
        thread = threading.Thread(target=front.serve_forever, name="devfront-accept")
        thread.start()
        try:
            if on_ready is not None:
                on_ready(front)
            signal.sigwait(stop)
        finally:
            front.shutdown()
            thread.join()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def build_parser() -> argparse.ArgumentParser:
    from ..cli import Parser

    parser = Parser(prog="python -m cgirt.devserver",
                    description="cgirt's development HTTP front end")
    add_flags(parser, DevFrontConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli import fail, warn
    from ..logfiles import StampFormatter

    args = build_parser().parse_args(argv)
    try:
        config = config_from_flags(DevFrontConfig, args, warn)
        handler = logging.StreamHandler()
        handler.setFormatter(StampFormatter("%(asctime)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        run(config, on_ready=lambda front: print(front.url, flush=True))
    except CgirtError as exc:
        return fail(f"devserver: {exc}", exc)
    return ExitStatus.OK
