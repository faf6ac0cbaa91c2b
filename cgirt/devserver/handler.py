"""One client connection of the development front end, and the threaded server holding them.

Requests on a connection are served in sequence while keep-alive holds: paths under
``/cgi-bin/`` go to the FastCGI backend, everything else is a static file from ``htdocs/``.
"""

from __future__ import annotations

import html
import logging
import os
import selectors
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from email.utils import formatdate
from typing import IO, Any

from . import staticfiles
from .config import DevFrontConfig
from ..fastcgi.client import BackendClosed, BackendError, BackendTimeout, BackendRequest
from .gateway import (SERVER_SOFTWARE, CgiHead, Endpoint, body_allowed, cgi_params,
                               parse_head, read_head)
from .http1 import (ChunkedWriter, ClientGone, RequestRejected, Request, format_head,
                         read_request, reason)

error_log = logging.getLogger("cgirt.error")
access_log = logging.getLogger("cgirt.access")

CGI_PREFIX = "/cgi-bin/"
# Chunked request bodies are spooled so the script gets a CONTENT_LENGTH (CGI has no other
# way to say how long the body is); past this size the spool moves to a temporary file.
SPOOL_IN_MEMORY = 1024 * 1024


class Abort(Exception):
    """The response is already under way and cannot be completed: drop the connection."""


def error_page(status: int, detail: str) -> bytes:
    title = f"{status} {reason(status)}"
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"</head>\n<body><h1>{title}</h1>\n<p>{html.escape(detail)}</p>\n"
            f"<hr><p><small>{SERVER_SOFTWARE} (development front end)</small></p>"
            f"</body></html>\n").encode("utf-8")


class Handler(socketserver.StreamRequestHandler):
    """One client connection: requests in sequence while keep-alive holds."""

    server: FrontServer
    rbufsize = 64 * 1024
    wbufsize = 0  # responses are framed by hand and must not sit in a buffer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.config.client_timeout)
        self.backend_sock: socket.socket | None = None
        self.server.track(self, True)

    def finish(self) -> None:
        self.server.track(self, False)
        try:
            super().finish()
        except OSError:
            pass  # the client is gone; nothing left to flush

    def abort(self) -> None:
        """Called from the shutting-down server: wake this thread wherever it blocks."""
        for sock in (self.connection, self.backend_sock):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle(self) -> None:
        while not self.server.closing and self.handle_one():
            pass

    def handle_one(self) -> bool:
        """Serve one request; whether the connection may carry another."""
        self.status, self.sent = 0, 0
        request: Request | None = None
        try:
            request = read_request(self.rfile, self.server.config.limits)
            if request is None:
                return False
            keep = self.dispatch(request)
            return keep and request.wants_keep_alive() and request.body.done
        except RequestRejected as exc:
            self.send_simple(request, exc.status, error_page(exc.status, exc.detail), False)
            return False
        except (ClientGone, Abort, OSError):
            return False  # OSError includes the client's timeout and reset
        finally:
            if request is not None:
                self.log_access(request)

    def dispatch(self, request: Request) -> bool:
        raw_path, query = request.path_and_query()
        try:
            url_path = staticfiles.normalise(staticfiles.decode_path(raw_path))
        except staticfiles.StaticError as exc:
            raise RequestRejected(exc.status, str(exc)) from exc
        if url_path.startswith(CGI_PREFIX):
            return self.forward(request, url_path, query)
        return self.serve_static(request, url_path, query)

    # -- static files ----------------------------------------------------------------

    def serve_static(self, request: Request, url_path: str, query: str) -> bool:
        if request.method not in ("GET", "HEAD"):
            body = error_page(405, f"{request.method} is not allowed on static files.")
            return self.send_simple(request, 405, body, True, [("Allow", "GET, HEAD")])
        try:
            found = staticfiles.lookup(self.server.docroot, url_path)
            if isinstance(found, staticfiles.Redirect):
                location = found.location + ("?" + query if query else "")
                body = error_page(301, f"Moved to {location}")
                return self.send_simple(request, 301, body, True, [("Location", location)])
            fd = staticfiles.open_file(found)
        except staticfiles.StaticError as exc:
            detail = "Not found." if exc.status == 404 else "Access to this path is forbidden."
            return self.send_simple(request, exc.status, error_page(exc.status, detail), True)
        with os.fdopen(fd, "rb") as file:
            headers = [("Content-Type", found.content_type),
                       ("Content-Length", str(found.size)),
                       ("Last-Modified", formatdate(found.mtime, usegmt=True))]
            self.write_head(request, 200, "OK", headers, True)
            if request.method == "GET" and found.size:
                self.sent = self.connection.sendfile(file, 0, found.size)
                if self.sent != found.size:
                    raise Abort("the file shrank while it was being sent")
        return True

    # -- FastCGI forwarding ----------------------------------------------------------

    def forward(self, request: Request, url_path: str, query: str) -> bool:
        if staticfiles.has_traversal(url_path):
            raise RequestRejected(403, "Dot segments (. and ..) are not allowed in script paths.")
        self.continue_if_expected(request)
        length, body = self.request_body(request)
        client, server_addr = self.client_address, self.connection.getsockname()
        endpoint = Endpoint(str(client[0]), int(client[1]), str(server_addr[0]),
                            self.server.port, self.server.server_name_param)
        params = cgi_params(request, url_path, query, self.server.docroot_param,
                            endpoint, length)
        config = self.server.config
        try:
            with BackendRequest.open(config.backend, connect_timeout=config.connect_timeout,
                                     io_timeout=config.response_timeout,
                                     on_stderr=log_script_stderr) as backend:
                self.server.attach_backend(self, backend.sock)
                send_request(backend, params, body)
                self.discard_body(request)
                head_bytes, start = read_head(backend.read_stdout,
                                              config.max_response_header_bytes)
                head = parse_head(head_bytes)
                return self.relay(request, head, start, backend.read_stdout)
        except BackendError as exc:
            if self.status:
                error_log.warning("%s: response cut short: %s", url_path, exc)
                raise Abort(str(exc)) from exc
            status = 504 if isinstance(exc, BackendTimeout) else 502
            error_log.warning("%s: %d: %s", url_path, status, exc)
            page = error_page(status, f"The FastCGI backend at {config.backend} failed: {exc}")
            self.discard_body(request)
            return self.send_simple(request, status, page, request.body.done)
        finally:
            self.backend_sock = None
            if isinstance(body, Spool):
                body.close()

    def discard_body(self, request: Request) -> None:
        """Read and drop the body the backend did not take, so the client sees the answer.

        Closing a socket with unread input resets the connection, and a client still busy
        sending would never read the response (nginx's lingering close, in short). The
        size was already checked against the limit.
        """
        try:
            request.body.drain()
        except (ClientGone, RequestRejected, OSError):
            pass  # still unfinished: the response says Connection: close

    def continue_if_expected(self, request: Request) -> None:
        expect = request.header("expect")
        if expect is None:
            return
        if expect.lower() != "100-continue":
            raise RequestRejected(417, f"Unsupported expectation: {expect}")
        if request.version >= (1, 1) and not request.body.done:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def request_body(self, request: Request) -> tuple[int | None, Iterable[bytes]]:
        if not request.body.chunked:
            # nginx's CONTENT_LENGTH is the header as sent: empty when there was none.
            declared = request.header("content-length")
            return (None if declared is None else request.body.length), request.body
        spool = Spool(request.body)
        return spool.size, spool

    def relay(self, request: Request, head: CgiHead, start: bytes,
              read: Callable[[], bytes]) -> bool:
        """Send the CGI response as HTTP; whether the connection is still usable."""
        headers = list(head.headers)
        send_body = body_allowed(request.method, head.status)
        declared = head.header("content-length")
        chunked = send_body and declared is None and request.version >= (1, 1)
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        keep = declared is not None or chunked or not send_body
        self.write_head(request, head.status, head.reason or reason(head.status), headers, keep)
        remaining = int(declared) if declared is not None else None
        writer = ChunkedWriter(self.wfile) if chunked else None
        piece = start
        while True:
            if piece and send_body:
                remaining = self.write_body(piece, remaining, writer)
            piece = read()
            if not piece:
                break
        if send_body and remaining:
            raise Abort("the script sent less than its Content-Length")
        if writer is not None:
            writer.finish()
        return keep

    def write_body(self, piece: bytes, remaining: int | None,
                   writer: ChunkedWriter | None) -> int | None:
        if remaining is not None:
            # Bytes beyond the declared length are dropped: they would be parsed by the
            # client as the start of the next response.
            piece = piece[:remaining]
            remaining -= len(piece)
        if writer is not None:
            writer.write(piece)
        else:
            self.wfile.write(piece)
        self.sent += len(piece)
        return remaining

    # -- responses -------------------------------------------------------------------

    def write_head(self, request: Request | None, status: int, status_text: str,
                   headers: list[tuple[str, str]], keep: bool) -> None:
        version = request.version if request is not None else (1, 1)
        names = {n.lower() for n, _ in headers}
        extra = [("Date", formatdate(usegmt=True))] if "date" not in names else []
        if "server" not in names:
            extra.append(("Server", SERVER_SOFTWARE))
        if not keep or request is None or not request.wants_keep_alive() \
                or not request.body.done:
            extra.append(("Connection", "close"))
        elif version < (1, 1):
            extra.append(("Connection", "keep-alive"))
        self.status = status
        self.wfile.write(format_head((1, 1), status, status_text, extra + headers))

    def send_simple(self, request: Request | None, status: int, body: bytes, keep: bool,
                    headers: Sequence[tuple[str, str]] = ()) -> bool:
        """A complete small response (error pages, redirects)."""
        all_headers = [("Content-Type", "text/html; charset=utf-8"),
                       ("Content-Length", str(len(body))), *headers]
        self.write_head(request, status, reason(status), all_headers, keep)
        if request is None or request.method != "HEAD":
            self.wfile.write(body)
            self.sent = len(body)
        return keep

    def log_access(self, request: Request) -> None:
        """One line in the Combined Log Format."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = f"{request.method} {request.target} {request.protocol}"
        access_log.info('%s - - [%s] "%s" %d %s "%s" "%s"', self.client_address[0], when,
                        line, self.status, self.sent or "-", request.header("referer") or "-",
                        request.header("user-agent") or "-")


def send_request(backend: BackendRequest, params: list[tuple[bytes, bytes]],
                 body: Iterable[bytes]) -> None:
    try:
        backend.send_params(params)
        for piece in body:
            backend.send_stdin(piece)
        backend.end_stdin()
    except BackendClosed:
        # A script may answer (or die after answering) without reading all its input; what
        # it wrote is still readable, so reading the response decides between relaying it
        # and a 502.
        pass


class Spool:
    """A chunked request body, stored so that its length is known before it is sent."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            for piece in pieces:
                self._file.write(piece)
        except BaseException:
            self._file.close()
            raise
        self.size = self._file.tell()
        self._file.seek(0)

    def __iter__(self) -> Iterator[bytes]:
        while piece := self._file.read(64 * 1024):
            yield piece

    def close(self) -> None:
        self._file.close()


def log_script_stderr(data: bytes) -> None:
    for line in data.decode("utf-8", "replace").splitlines():
        error_log.warning("script stderr: %s", line)

class FrontServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Accepts connections and runs a :class:`Handler` thread for each.

    Its own accept loop replaces ``serve_forever``: that one polls for its shutdown flag,
    so every stop took up to a poll interval; here a byte on a pipe wakes the loop at once.
    """

    # Non-daemon threads joined on close: whoever stops the front end knows that no
    # request is still running.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: DevFrontConfig, docroot: str, docroot_param: str) -> None:
        self.config = config
        self.docroot = docroot
        self.docroot_param = docroot_param
        self.closing = False
        self._handlers: set[Handler] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        super().__init__((config.host, config.port), Handler)
        self._wake_r, self._wake_w = os.pipe()
        self.port: int = self.socket.getsockname()[1]
        self.server_name_param = config.server_name or config.host

    def serve(self) -> None:
        """Accept until :meth:`stop`; returns at once if already stopped."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self.closing:
                    for key, _ in selector.select():
                        if key.fileobj is self.socket and not self.closing:
                            self.accept_one()
        finally:
            self._stopped.set()

    def accept_one(self) -> None:
        try:
            connection, client_address = self.get_request()
        except OSError:
            return  # the client gave up between select and accept
        try:
            self.process_request(connection, client_address)
        except Exception:
            self.handle_error(connection, client_address)
            self.shutdown_request(connection)

    def stop(self, serving: bool) -> None:
        """Stop accepting, wake every connection thread, and wait for all of them."""
        with self._lock:
            # Under the lock: a handler registering after the snapshot sees the flag.
            self.closing = True
            handlers = list(self._handlers)
        os.write(self._wake_w, b"x")
        if serving:
            self._stopped.wait()
        for handler in handlers:
            handler.abort()
        self.server_close()  # joins the connection threads
        os.close(self._wake_r)
        os.close(self._wake_w)

    def attach_backend(self, handler: Handler, sock: socket.socket) -> None:
        """Make a backend socket reachable by :meth:`stop` before blocking on it."""
        with self._lock:
            # Same lock as stop()'s snapshot: either stop() sees this socket, or this sees
            # the flag; a request can never sit out the response timeout after a stop.
            if self.closing:
                raise Abort("the front end is stopping")
            handler.backend_sock = sock

    def track(self, handler: Handler, alive: bool) -> None:
        with self._lock:
            if alive:
                self._handlers.add(handler)
            else:
                self._handlers.discard(handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error_log.exception("unexpected error serving %s", client_address)
