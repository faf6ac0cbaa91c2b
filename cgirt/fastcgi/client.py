"""A small FastCGI client: one request per connection, streamed in both directions.

flup's own client (``flup.client.fcgi_app``) fails on every call on Python 3 and buffers
whole responses, so the development front end speaks the protocol itself, with the codec in
:mod:`cgirt.fastcgi.records`.

The caller drives the request in order: :meth:`BackendRequest.send_params`, any number of
:meth:`~BackendRequest.send_stdin`, :meth:`~BackendRequest.end_stdin`, then
:meth:`~BackendRequest.read_stdout` until it returns ``b""``. Every failure is one of the
:class:`BackendError` subclasses, so a front end maps them to 502/504 in one place.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

from .records import (CANT_MPX_CONN, END_BODY, END_REQUEST, HEADER, MAX_CONTENT, OVERLOADED,
                      REQUEST_COMPLETE, STDERR, STDIN, STDOUT, UNKNOWN_ROLE, VERSION_1,
                      begin_record, encode_record, params_records, stream_records)

# The only request on its connection; any non-zero id will do.
REQUEST_ID = 1


class BackendError(Exception):
    """The FastCGI backend could not serve the request (a gateway error)."""


class BackendUnavailable(BackendError):
    """Connecting to the backend failed: nothing listens, or it refused."""


class BackendTimeout(BackendError):
    """The backend did not answer (or accept input) within the timeout."""


class BackendClosed(BackendError):
    """The backend closed the connection before ending the request (it died)."""


class BackendProtocolError(BackendError):
    """The backend sent something that is not valid FastCGI, or refused the request."""


@dataclass(frozen=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


BackendAddress = UnixAddress | TcpAddress


def parse_address(text: str) -> BackendAddress:
    """``unix:/path``, ``/path`` (a unix socket), ``host:port`` or ``[v6]:port``."""
    if text.startswith("unix:"):
        text = text[len("unix:"):]
        if not text:
            raise ValueError("empty unix socket path")
        return UnixAddress(text)
    if text.startswith("/"):
        return UnixAddress(text)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a unix:/path or host:port address: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return TcpAddress(host, int(port))


def connect(address: BackendAddress, timeout: float) -> socket.socket:
    try:
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection((address.host, address.port), timeout=timeout)
    except TimeoutError as exc:
        raise BackendTimeout(f"connecting to {address} timed out") from exc
    except OSError as exc:
        raise BackendUnavailable(f"cannot connect to {address}: {exc.strerror or exc}") from exc


class BackendRequest:
    """One FCGI_RESPONDER request on its own connection (no FCGI_KEEP_CONN).

    A connection per request keeps failure handling trivial: whatever goes wrong, closing
    the socket aborts the request on the backend's side too.
    """

    def __init__(self, sock: socket.socket, address: BackendAddress,
                 on_stderr: Callable[[bytes], None] | None = None) -> None:
        self._sock = sock
        self._address = address
        self._reader = io.BufferedReader(socket.SocketIO(sock, "rb"), MAX_CONTENT + 8)
        self._on_stderr = on_stderr
        self._ended = False
        self.app_status: int | None = None

    @classmethod
    def open(cls, address: BackendAddress, *, connect_timeout: float,
             io_timeout: float, on_stderr: Callable[[bytes], None] | None = None,
             ) -> BackendRequest:
        """Connect and begin a request; ``io_timeout`` bounds every later send and receive."""
        sock = connect(address, connect_timeout)
        sock.settimeout(io_timeout)
        request = cls(sock, address, on_stderr)
        try:
            request._send(begin_record(REQUEST_ID))
        except BaseException:
            request.close()  # a backend that hung up at once: no socket left behind
            raise
        return request

    def __enter__(self) -> BackendRequest:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        """For a caller that must interrupt a blocked read from another thread."""
        return self._sock

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def send_params(self, params: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> None:
        self._send(params_records(REQUEST_ID, params))

    def send_stdin(self, data: bytes) -> None:
        """Forward a piece of the request body; empty data is ignored (it would end stdin)."""
        if data:
            self._send(stream_records(STDIN, REQUEST_ID, data))

    def end_stdin(self) -> None:
        self._send(encode_record(STDIN, REQUEST_ID))

    def read_stdout(self) -> bytes:
        """The next piece of the response (CGI output), or ``b""`` once the request ended.

        Stderr records met on the way go to ``on_stderr``; management records are skipped.
        """
        while not self._ended:
            rtype, request_id, content = self._read_record()
            if request_id == 0:
                continue  # management records (GET_VALUES_RESULT, UNKNOWN_TYPE)
            if request_id != REQUEST_ID:
                raise BackendProtocolError(f"record for unknown request id {request_id}")
            if rtype == STDOUT and content:
                return content
            if rtype == STDERR and content and self._on_stderr is not None:
                self._on_stderr(content)
            elif rtype == END_REQUEST:
                self._end(content)
            elif rtype not in (STDOUT, STDERR):
                raise BackendProtocolError(f"unexpected record type {rtype}")
        return b""

    def _end(self, content: bytes) -> None:
        if len(content) < END_BODY.size:
            raise BackendProtocolError("short FCGI_END_REQUEST record")
        app_status, protocol_status = END_BODY.unpack_from(content)
        if protocol_status != REQUEST_COMPLETE:
            reasons = {CANT_MPX_CONN: "cannot multiplex", OVERLOADED: "overloaded",
                       UNKNOWN_ROLE: "unknown role"}
            reason = reasons.get(protocol_status, f"protocol status {protocol_status}")
            raise BackendProtocolError(f"backend rejected the request: {reason}")
        self.app_status = app_status
        self._ended = True

    def _read_record(self) -> tuple[int, int, bytes]:
        header = self._read_exact(HEADER.size)
        version, rtype, request_id, length, padding = HEADER.unpack(header)
        if version != VERSION_1:
            raise BackendProtocolError(f"FastCGI version {version} in a record header")
        body = self._read_exact(length + padding)
        return rtype, request_id, body[:length]

    def _read_exact(self, n: int) -> bytes:
        try:
            data = self._reader.read(n)
        except TimeoutError as exc:
            raise BackendTimeout(f"{self._address} did not answer in time") from exc
        except OSError as exc:
            raise BackendClosed(f"{self._address} closed the connection before ending the "
                                f"request ({exc.strerror or exc})") from exc
        if len(data) != n:
            raise BackendClosed(f"{self._address} closed the connection before ending the request")
        return data

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise BackendTimeout(f"{self._address} did not accept input in time") from exc
        except OSError as exc:
            raise BackendClosed(f"writing to {self._address}: {exc.strerror or exc}") from exc
