"""FastCGI on flup's protocol classes, tuned for one request at a time per worker.

flup supplies the records, the request and its input stream. What is replaced here, by
subclassing, is the per-record socket work on the hot path (flup selects before every record
and sends header, content and padding as three writes), the broken FCGI_GET_VALUES reply,
and the connection end (flup closes with unread input, which makes the kernel send a reset
that can destroy a response the web server has not read yet).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from typing import Any, Callable, Protocol

from flup.server import fcgi_base as fb

from .supervisor import Control

log = logging.getLogger("cgirt.error")

_HEADER = struct.Struct(fb.FCGI_Header)
_LENGTH = struct.Struct("!L")
_MAX_CONTENT = 65528  # largest multiple of 8 below 65535: records need no padding
_RECV = 65536
_CLOSE_DRAIN_SECONDS = 5.0
MAX_PARAMS_BYTES = 1024 * 1024  # nginx and Apache send a few KiB; more is an attack
KEEP_CONN_IDLE_SECONDS = 5.0


class ProtocolError(Exception):
    """The web server sent something that is not FastCGI; the connection is dropped."""


def decode_params(data: bytes, params: dict[str, str]) -> None:
    """FastCGI name-value pairs into `params`.

    Does what a loop over flup's decode_pair does, inline: about thirty pairs arrive with every
    request, and a call per pair cost more than the decoding. Names and values are decoded as
    Python decodes a real process environment, so a script sees the same str under cgirt as
    under classic CGI.
    """
    try:
        _decode_params(data, params)
    except (IndexError, struct.error):
        raise ProtocolError("a truncated FastCGI name-value pair") from None


def _decode_params(data: bytes, params: dict[str, str]) -> None:
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos]
        if n & 0x80:
            n = _LENGTH.unpack_from(data, pos)[0] & 0x7FFFFFFF
            pos += 4
        else:
            pos += 1
        v = data[pos]
        if v & 0x80:
            v = _LENGTH.unpack_from(data, pos)[0] & 0x7FFFFFFF
            pos += 4
        else:
            pos += 1
        if pos + n + v > end:
            raise ProtocolError("a FastCGI name-value pair longer than its record")
        name = data[pos : pos + n].decode("utf-8", "surrogateescape")
        pos += n
        params[name] = data[pos : pos + v].decode("utf-8", "surrogateescape")
        pos += v


class ClientGone(BrokenPipeError):
    """The web server closed the connection; what a CGI script sees as a broken pipe."""


class FastCGIRequest(fb.Request):  # type: ignore[misc]
    """A flup request whose responses are written as large single-send records."""

    def __init__(self, conn: "FastCGIConnection", inputStreamClass: type, timeout: int) -> None:
        super().__init__(conn, inputStreamClass, timeout)
        self.conn = conn
        self.stdout_started = False
        self.ended = False
        self.params_done = False
        self.on_first_write: Callable[[], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send response bytes (CGI-style headers, then body) as FCGI_STDOUT records."""
        if self.ended:
            return
        if data:
            if not self.stdout_started:
                self.stdout_started = True
                if self.on_first_write is not None:
                    self.on_first_write()
            self.conn.send_stream(fb.FCGI_STDOUT, self.requestId, data)

    def end(self, app_status: int = 0) -> None:
        """End the stream and the request; idempotent."""
        if self.ended:
            return
        self.ended = True
        self.conn.send_end(self.requestId, app_status)

    def run(self) -> None:
        try:
            self.server.app(self)
        finally:
            try:
                self.end(0)
            except OSError:
                pass
            self.conn.request_done(self)


class FastCGIConnection(fb.Connection):  # type: ignore[misc]
    def __init__(self, sock: socket.socket, addr: Any, server: "FastCGIServer", control: Control) -> None:
        super().__init__(sock, addr, server, 0)
        self._rbuf = bytearray()
        self.control = control
        self.broken = False
        self.sending = False
        self.keep_conn = False
        self._in_request = False
        self._params_bytes = 0
        self._input_ended = False  # the empty FCGI_STDIN record has been processed

    # -- reading ----------------------------------------------------------------------

    def _fill(self, need: int) -> None:
        while len(self._rbuf) < need:
            try:
                chunk = self._sock.recv(_RECV)
            except (socket.timeout, OSError):
                raise EOFError from None
            if not chunk:
                raise EOFError
            self._rbuf += chunk

    def read_record(self) -> fb.Record:
        self._fill(fb.FCGI_HEADER_LEN)
        version, rtype, request_id, length, padding = _HEADER.unpack_from(self._rbuf)
        total = fb.FCGI_HEADER_LEN + length + padding
        self._fill(total)
        rec = fb.Record(rtype, request_id)
        rec.version = version
        rec.contentLength = length
        rec.paddingLength = padding
        rec.contentData = bytes(self._rbuf[fb.FCGI_HEADER_LEN : fb.FCGI_HEADER_LEN + length])
        del self._rbuf[:total]
        return rec

    def process_input(self) -> None:
        rec = self.read_record()
        if rec.version != fb.FCGI_VERSION_1:
            raise ProtocolError(f"FastCGI version {rec.version}")
        handler = self._dispatch.get(rec.type)
        if handler is not None:
            handler(self, rec)
        elif rec.requestId == fb.FCGI_NULL_REQUEST_ID:
            self._do_unknown_type(rec)

    def _do_params(self, inrec: fb.Record) -> None:
        req = self._requests.get(inrec.requestId)
        if req is None:
            return
        if req.params_done:
            # Read while the script reads its body: running the request again here would
            # nest a second run of the script inside the first.
            self.broken = True
            self._keepGoing = False
            raise ProtocolError("FCGI_PARAMS after the end of the params")
        if inrec.contentLength:
            self._params_bytes += inrec.contentLength
            if self._params_bytes > MAX_PARAMS_BYTES:
                raise ProtocolError(f"more than {MAX_PARAMS_BYTES} bytes of FastCGI params")
            decode_params(inrec.contentData, req.params)
        else:
            req.params_done = True
            self.keep_conn = bool(req.flags & fb.FCGI_KEEP_CONN)
            self._in_request = True
            self.control.request_started()
            req.run()

    def _do_begin(self, inrec: fb.Record) -> None:
        if inrec.contentLength != struct.calcsize(fb.FCGI_BeginRequestBody):
            raise ProtocolError("a FCGI_BEGIN_REQUEST record of the wrong length")
        self._params_bytes = 0
        fb.Connection._do_begin_request(self, inrec)

    def _do_stdin(self, inrec: fb.Record) -> None:
        if not inrec.contentLength:
            self._input_ended = True
        fb.Connection._do_stdin(self, inrec)

    def _do_get_values(self, inrec: fb.Record) -> None:
        # flup looks the names up as bytes in a str-keyed dict and always answers empty.
        out = b""
        pos = 0
        while pos < inrec.contentLength:
            try:
                pos, (name, _) = fb.decode_pair(inrec.contentData, pos)
            except (struct.error, IndexError):
                raise ProtocolError("a malformed FCGI_GET_VALUES record") from None
            cap = self.server.capability.get(name.decode("latin-1"))
            if cap is not None:
                out += fb.encode_pair(name, str(cap).encode("latin-1"))
        self.send_record(fb.FCGI_GET_VALUES_RESULT, 0, out)

    _dispatch: dict[int, Callable[..., None]] = {
        fb.FCGI_GET_VALUES: _do_get_values,
        fb.FCGI_BEGIN_REQUEST: _do_begin,
        fb.FCGI_ABORT_REQUEST: fb.Connection._do_abort_request,
        fb.FCGI_PARAMS: _do_params,
        fb.FCGI_STDIN: _do_stdin,
        fb.FCGI_DATA: fb.Connection._do_data,
    }

    # -- writing ----------------------------------------------------------------------

    def send_record(self, rtype: int, request_id: int, content: bytes | memoryview = b"") -> None:
        length = len(content)
        padding = -length & 7
        self._send(
            _HEADER.pack(fb.FCGI_VERSION_1, rtype, request_id, length, padding)
            + bytes(content)
            + b"\x00" * padding
        )

    def send_stream(self, rtype: int, request_id: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _MAX_CONTENT):
            self.send_record(rtype, request_id, view[start : start + _MAX_CONTENT])

    def send_end(self, request_id: int, app_status: int) -> None:
        body = struct.pack(fb.FCGI_EndRequestBody, app_status, fb.FCGI_REQUEST_COMPLETE)
        head = _HEADER.pack(fb.FCGI_VERSION_1, fb.FCGI_END_REQUEST, request_id, len(body), 0)
        # An empty FCGI_STDOUT ends the stream; sent with END_REQUEST in one write.
        eos = _HEADER.pack(fb.FCGI_VERSION_1, fb.FCGI_STDOUT, request_id, 0, 0)
        self._send(eos + head + body)

    def writeRecord(self, rec: fb.Record) -> None:
        self.send_record(rec.type, rec.requestId, rec.contentData)

    def _send(self, data: bytes) -> None:
        if self.broken:
            raise ClientGone(errno.EPIPE, "the web server closed the connection")
        self.sending = True
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientGone(errno.EPIPE, f"the web server closed the connection ({exc})") from None
        finally:
            self.sending = False

    # -- life cycle -------------------------------------------------------------------

    def end_request(self, req: Any, appStatus: int = 0, protocolStatus: int = fb.FCGI_REQUEST_COMPLETE, remove: bool = True) -> None:
        # Only reached for FCGI_CANT_MPX_CONN: a second request on a busy connection.
        body = struct.pack(fb.FCGI_EndRequestBody, appStatus, protocolStatus)
        self.send_record(fb.FCGI_END_REQUEST, req.requestId, body)

    def request_done(self, req: FastCGIRequest) -> None:
        self._requests.pop(req.requestId, None)
        if self._in_request:
            self._in_request = False
            self.control.request_finished()
        if not self.keep_conn or self.broken or self.control.stopping:
            self._keepGoing = False

    def run(self) -> None:
        self._keepGoing = True
        self._sock.settimeout(self.server.io_timeout)
        try:
            while self._keepGoing:
                if not self._rbuf and self.keep_conn and not self._requests:
                    if not self._wait_idle():
                        break
                self.process_input()
        except EOFError:
            pass
        except ClientGone:
            pass
        except ProtocolError as exc:
            log.warning("dropping a connection: %s", exc)
            self.broken = True
        finally:
            if self._in_request:
                self._in_request = False
                self.control.request_finished()
            self._close()

    def _wait_idle(self) -> bool:
        """Between requests on a kept connection: give up when idle too long or stopping."""
        deadline = time.monotonic() + KEEP_CONN_IDLE_SECONDS
        self._sock.settimeout(0.25)
        try:
            while not self.control.stopping and time.monotonic() < deadline:
                try:
                    chunk = self._sock.recv(_RECV)
                except socket.timeout:
                    continue
                if not chunk:
                    return False
                self._rbuf += chunk
                return True
            return False
        finally:
            self._sock.settimeout(self.server.io_timeout)

    def _close(self) -> None:
        """Half-close, then read until the web server closes, so no reset destroys the reply.

        A reset comes from closing with unread input. When the web server has already sent
        everything it will send (the empty FCGI_STDIN that ends the input, and no kept
        connection), reading what is buffered is enough: waiting for its close as well would
        keep the worker idle for a round trip on every request."""
        if not self.broken:
            try:
                self._sock.shutdown(socket.SHUT_WR)
                if not self.keep_conn and self._input_sent():
                    self._sock.close()
                    return
                deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
                self._sock.settimeout(0.5)
                while time.monotonic() < deadline:
                    try:
                        if not self._sock.recv(_RECV):
                            break
                    except socket.timeout:
                        continue
            except OSError:
                pass
        self._sock.close()

    def _input_sent(self) -> bool:
        """Read what the socket holds without waiting; True if the input has ended with it."""
        self._sock.setblocking(False)
        try:
            while True:
                chunk = self._sock.recv(_RECV)
                if not chunk:
                    return True  # the web server closed its side: nothing more can come
                self._rbuf += chunk
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self._sock.settimeout(0.5)
        if self._input_ended:
            return True
        pos = 0
        while pos + fb.FCGI_HEADER_LEN <= len(self._rbuf):
            _, rtype, _, length, padding = _HEADER.unpack_from(self._rbuf, pos)
            if rtype == fb.FCGI_STDIN and length == 0:
                return True
            pos += fb.FCGI_HEADER_LEN + length + padding
        return False


def io_timeout(config: Any) -> float:
    """How long a read or write on the web server's connection may stall."""
    return float(max(config.timeout, 30.0))


class RequestApp(Protocol):
    def __call__(self, req: FastCGIRequest) -> None: ...


class FastCGIServer(fb.BaseFCGIServer):  # type: ignore[misc]
    """flup's server base, used for its capabilities; connections are driven by the supervisor."""

    request_class = FastCGIRequest

    def __init__(self, app: RequestApp, max_conns: int, io_timeout: float = 60.0) -> None:
        super().__init__(None, multithreaded=False, multiprocess=True)
        self.app = app
        self.io_timeout = io_timeout
        self.capability = {
            fb.FCGI_MAX_CONNS: max_conns,
            fb.FCGI_MAX_REQS: max_conns,
            fb.FCGI_MPXS_CONNS: 0,
        }

    def handle_connection(self, sock: socket.socket, addr: Any, control: Control) -> None:
        FastCGIConnection(sock, addr, self, control).run()
