"""FastCGI on flup's protocol classes, tuned for one request at a time per worker.

flup supplies the protocol's constants, the request and its input streams. What is replaced
here, by subclassing, is the per-record work on the hot path (flup selects before every
record, builds an object for each, and sends header, content and padding as three writes),
the broken FCGI_GET_VALUES reply, and the connection end (flup closes with unread input,
which makes the kernel send a reset that can destroy a response the web server has not read
yet).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import time
from typing import Any, Callable, Protocol

from flup.server import fcgi_base as fb

from .records import (BEGIN_BODY, END_BODY, HEADER, ProtocolError, decode_pairs, decode_params,
                      encode_pair, end_records, stream_records)

log = logging.getLogger("cgirt.error")

_TIMEVAL = struct.Struct("@ll")
_HOLD_LIMIT = 256 * 1024
_RECV = 65536
_CLOSE_DRAIN_SECONDS = 5.0
MAX_PARAMS_BYTES = 1024 * 1024  # nginx and Apache send a few KiB; more is an attack
KEEP_CONN_IDLE_SECONDS = 5.0


class Control(Protocol):
    """What a connection asks of the process that serves it (a supervised worker, or a
    process that serves a single request)."""

    def request_started(self, method: str = "", uri: str = "", script: str = "") -> None:
        """What the request is, for the status page: method, URI and script."""

    def request_finished(self) -> None: ...

    @property
    def stopping(self) -> bool: ...

    def recycle_after_request(self) -> None: ...

    @property
    def listener_fd(self) -> int:
        """The socket new connections wait on (-1: none): a kept connection idle while one
        waits there is closed, so that the worker serves the waiting one."""


class SingleRequestControl:
    """The Control of a process that serves exactly one request, then ends."""

    stopping = True
    listener_fd = -1

    def request_started(self, method: str = "", uri: str = "", script: str = "") -> None:
        pass

    def request_finished(self) -> None:
        pass

    def recycle_after_request(self) -> None:
        pass


class WebServerGone(BrokenPipeError):
    """The web server closed the connection; what a CGI script sees as a broken pipe."""


class FastCGIRequest(fb.Request):  # type: ignore[misc]
    """A flup request whose responses are written as large single-send records.

    Output is sent as it is written, except once `hold_output()` is called (when the script
    has ended and only its last buffered bytes are left): those go out with the end of the
    request in one write, which saves a system call and a wake-up of the web server on
    nearly every request."""

    def __init__(self, conn: "FastCGIConnection", inputStreamClass: type, timeout: int) -> None:
        # Not flup's __init__: its two output streams are never used here (responses are
        # written by write() below), and building them cost a tenth of a small request.
        self._conn = conn
        self._timeout = timeout
        self.server = conn.server
        self.params: dict[str, str] = {}
        self.stdin = inputStreamClass(conn)
        self.data = inputStreamClass(conn)
        self.conn = conn
        self.stdout_started = False
        self.ended = False
        self.params_done = False
        self.on_first_write: Callable[[], None] | None = None
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        # For the access log: the status and header block come whole in the first write
        # (the response parser and the error pages send them so).
        self.status = 0
        self.head_bytes = 0
        self.sent_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send response bytes (CGI-style headers, then body) as FCGI_STDOUT records."""
        if self.ended or not data:
            return
        self.sent_bytes += len(data)
        if not self.stdout_started:
            self.stdout_started = True
            self._note_head(bytes(data[:4096]))
            if self.on_first_write is not None:
                self.on_first_write()
        records = stream_records(fb.FCGI_STDOUT, self.requestId, data)
        if self._held is None:
            self.conn.send(records)
            return
        self._held.append(records)
        self._held_bytes += len(records)
        if self._held_bytes >= _HOLD_LIMIT:
            self._release()

    def _note_head(self, start: bytes) -> None:
        if start.startswith(b"Status: ") and start[8:11].isdigit():
            self.status = int(start[8:11])
        end = start.find(b"\r\n\r\n")
        self.head_bytes = end + 4 if end >= 0 else len(start)

    def hold_output(self) -> None:
        if self._held is None:
            self._held, self._held_bytes = [], 0

    def release_output(self) -> None:
        """Send what is held, and send further output at once again."""
        self._release()
        self._held = None

    def _release(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._held_bytes = 0
            self.conn.send(data)

    def end(self, app_status: int = 0) -> None:
        """End the stream and the request (with any held output, in one write); idempotent."""
        if self.ended:
            return
        self.ended = True
        held = b"".join(self._held) if self._held else b""
        self._held = None
        self.conn.send(held + end_records(self.requestId, app_status))

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
    """One web server connection: records in, one request at a time, records out.

    Reads go through one buffer (`_rbuf` from `_rpos`), parsed in place: flup builds a
    Record object per record and selects before each read, which cost more than the rest of
    a small request's protocol work. The socket stays blocking; its stall limit is the
    kernel's (SO_RCVTIMEO, SO_SNDTIMEO), set once a read would wait, so no poll precedes each
    read and write as with a Python socket timeout. Writes during a request are bounded by
    the request's own deadline as well."""

    def __init__(self, sock: socket.socket, addr: Any, server: "FastCGIServer", control: Control) -> None:
        super().__init__(sock, addr, server, 0)
        self._rbuf = b""  # bytes, not bytearray: a slice is then the one copy a record needs
        self._rpos = 0
        self.control = control
        self.broken = False
        self.sending = False
        self.keep_conn = False
        self._in_request = False
        self._params_bytes = 0
        self._input_ended = False  # the empty FCGI_STDIN record has been processed
        self.handed_off = False  # another process answered and closes properly: just close
        self._idle = False  # given up between requests, nothing unread: just close
        self._io_timeout_set = False

    @classmethod
    def adopt(cls, fd: int, server: "FastCGIServer", control: Control, buffered: bytes) -> "FastCGIConnection":
        """A connection passed from another process (fork mode's worker), with the bytes
        that process had read from it and not parsed."""
        conn = cls(socket.socket(fileno=fd), None, server, control)
        # At once: the response is written before any read would wait and set it.
        set_io_timeout(conn._sock, server.io_timeout)
        conn._io_timeout_set = True
        conn._rbuf = buffered
        return conn

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def resume_request(self, request_id: int, flags: int, params: dict[str, str]) -> "FastCGIRequest":
        """The request whose begin and params another process has read: its stdin records
        are read from here on."""
        req: FastCGIRequest = self.server.request_class(self, self._inputStreamClass, self._timeout)
        req.requestId, req.flags, req.params, req.aborted = request_id, flags, params, False
        req.params_done = True
        self._requests[request_id] = req
        return req

    # -- reading ----------------------------------------------------------------------

    def take_buffered(self) -> bytes:
        """The bytes read but not yet parsed, removed from this connection."""
        data = self._rbuf[self._rpos :]
        self._rbuf, self._rpos = b"", 0
        return data

    def _fill(self, need: int) -> None:
        """Make `need` unparsed bytes available from _rpos."""
        if self._rpos:
            self._rbuf, self._rpos = self._rbuf[self._rpos :], 0
        while len(self._rbuf) < need:
            try:
                chunk = self._sock.recv(_RECV, 0 if self._io_timeout_set else socket.MSG_DONTWAIT)
            except BlockingIOError:
                if self._io_timeout_set:
                    raise EOFError from None  # stalled past the io timeout
                # Only now, when a read would wait: a web server usually sends the whole
                # request at once, and then the two system calls are not needed at all.
                set_io_timeout(self._sock, self.server.io_timeout)
                self._io_timeout_set = True
                continue
            except OSError:
                raise EOFError from None
            if not chunk:
                raise EOFError
            self._rbuf += chunk

    def process_input(self) -> None:
        """Read and handle one record."""
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < fb.FCGI_HEADER_LEN:
            self._fill(fb.FCGI_HEADER_LEN)
            buf, pos = self._rbuf, 0
        version, rtype, request_id, length, padding = HEADER.unpack_from(buf, pos)
        if version != fb.FCGI_VERSION_1:
            raise ProtocolError(f"FastCGI version {version}")
        end = pos + fb.FCGI_HEADER_LEN + length
        if len(buf) < end + padding:
            self._fill(fb.FCGI_HEADER_LEN + length + padding)
            buf, pos, end = self._rbuf, 0, fb.FCGI_HEADER_LEN + length
        content = buf[pos + fb.FCGI_HEADER_LEN : end]
        self._rpos = end + padding
        if rtype == fb.FCGI_PARAMS:
            self._on_params(request_id, content)
        elif rtype == fb.FCGI_STDIN:
            if not content:
                self._input_ended = True
            req = self._requests.get(request_id)
            if req is not None:
                req.stdin.add_data(content)
        elif rtype == fb.FCGI_BEGIN_REQUEST:
            self._on_begin(request_id, content)
        else:
            self._on_other(rtype, request_id, content)

    def _on_begin(self, request_id: int, content: bytes) -> None:
        if len(content) != BEGIN_BODY.size:
            raise ProtocolError("a FCGI_BEGIN_REQUEST record of the wrong length")
        self._params_bytes = 0
        role, flags = BEGIN_BODY.unpack(content)
        req = self.server.request_class(self, self._inputStreamClass, self._timeout)
        req.requestId, req.role, req.flags, req.aborted = request_id, role, flags, False
        if self._requests:
            self.end_request(req, 0, fb.FCGI_CANT_MPX_CONN, remove=False)
        else:
            self._requests[request_id] = req

    def _on_params(self, request_id: int, content: bytes) -> None:
        req = self._requests.get(request_id)
        if req is None:
            return
        if req.params_done:
            # Read while the script reads its body: running the request again here would
            # nest a second run of the script inside the first.
            self.broken = True
            self._keepGoing = False
            raise ProtocolError("FCGI_PARAMS after the end of the params")
        if content:
            self._params_bytes += len(content)
            if self._params_bytes > MAX_PARAMS_BYTES:
                raise ProtocolError(f"more than {MAX_PARAMS_BYTES} bytes of FastCGI params")
            decode_params(content, req.params)
        else:
            req.params_done = True
            self.keep_conn = bool(req.flags & fb.FCGI_KEEP_CONN)
            self._in_request = True
            p = req.params
            script = p.get("SCRIPT_FILENAME", "")
            if not script.startswith("/"):  # Apache's proxy:fcgi://...: the URL's path says more
                script = p.get("SCRIPT_NAME", "")
            self.control.request_started(p.get("REQUEST_METHOD", ""), p.get("REQUEST_URI", ""),
                                         script)
            req.run()

    def _on_other(self, rtype: int, request_id: int, content: bytes) -> None:
        """The rare records, as flup handles them (FCGI_GET_VALUES as flup means to)."""
        if rtype == fb.FCGI_GET_VALUES:
            self._get_values(content)
            return
        rec = fb.Record(rtype, request_id)
        rec.contentData, rec.contentLength = content, len(content)
        if rtype == fb.FCGI_ABORT_REQUEST:
            fb.Connection._do_abort_request(self, rec)
        elif rtype == fb.FCGI_DATA:
            fb.Connection._do_data(self, rec)
        elif request_id == fb.FCGI_NULL_REQUEST_ID:
            self._do_unknown_type(rec)

    def _get_values(self, content: bytes) -> None:
        # flup looks the names up as bytes in a str-keyed dict and always answers empty.
        out = b""
        for name in decode_pairs(content):
            cap = self.server.capability.get(name.decode("latin-1"))
            if cap is not None:
                out += encode_pair(name, str(cap).encode("latin-1"))
        self.send_record(fb.FCGI_GET_VALUES_RESULT, 0, out)

    # -- writing ----------------------------------------------------------------------

    def send_record(self, rtype: int, request_id: int, content: bytes | memoryview = b"") -> None:
        self.send(stream_records(rtype, request_id, content))

    def writeRecord(self, rec: fb.Record) -> None:
        self.send_record(rec.type, rec.requestId, rec.contentData)

    def send(self, data: bytes) -> None:
        if self.broken:
            raise WebServerGone(errno.EPIPE, "the web server closed the connection")
        self.sending = True
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.broken = True
            raise WebServerGone(errno.EPIPE, f"the web server closed the connection ({exc})") from None
        finally:
            self.sending = False

    # -- life cycle -------------------------------------------------------------------

    def end_request(self, req: Any, appStatus: int = 0, protocolStatus: int = fb.FCGI_REQUEST_COMPLETE, remove: bool = True) -> None:
        # Only reached for FCGI_CANT_MPX_CONN: a second request on a busy connection.
        self.send_record(fb.FCGI_END_REQUEST, req.requestId, END_BODY.pack(appStatus, protocolStatus))

    def request_done(self, req: FastCGIRequest) -> None:
        self._requests.pop(req.requestId, None)
        if self._in_request:
            self._in_request = False
            self.control.request_finished()
        if not self.keep_conn or self.broken or self.control.stopping:
            self._keepGoing = False

    def run(self) -> None:
        self._keepGoing = True
        try:
            while self._keepGoing:
                if self._rpos >= len(self._rbuf) and self.keep_conn and not self._requests:
                    if not self._wait_idle():
                        break
                self.process_input()
        except EOFError:
            pass
        except WebServerGone:
            pass
        except ProtocolError as exc:
            log.warning("dropping a connection: %s", exc)
            self.broken = True
        finally:
            if self._in_request:
                self._in_request = False
                self.control.request_finished()
            self.close()

    def _wait_idle(self) -> bool:
        """Between requests on a kept connection: True once the next request's bytes are
        here. False (the connection is closed) when idle too long, when stopping, or when a
        new connection waits on the listener: a worker serves one connection at a time, and
        nginx opens a new one whenever its kept ones are busy, so a connection kept idle
        would leave that one waiting for its idle timeout. nginx reconnects as it needs."""
        deadline = time.monotonic() + KEEP_CONN_IDLE_SECONDS
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        listener = self.control.listener_fd
        if listener >= 0:
            poller.register(listener, select.POLLIN)
        while not self.control.stopping and time.monotonic() < deadline:
            ready = dict(poller.poll(250))
            if self._sock.fileno() in ready:
                try:
                    chunk = self._sock.recv(_RECV, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    return False
                if not chunk:
                    return False
                self._rbuf += chunk
                return True
            if listener in ready:
                break
        self._idle = True
        return False

    def close(self) -> None:
        """Close so that no reset destroys the reply.

        A reset comes from closing with unread input. When the web server has already sent
        everything it will send (the empty FCGI_STDIN that ends the input, and no kept
        connection), nothing is unread and a plain close is right: waiting for the web
        server's close as well would keep the worker idle for a round trip on every request.
        So too for a kept connection given up between requests with nothing to read (a
        request sent at that very instant is reset, and nginx retries a kept connection's
        failure on a new one). Otherwise half-close and read until the web server closes."""
        if not (self.broken or self.handed_off or self._idle) and (self.keep_conn or not self._input_sent()):
            try:
                self._sock.shutdown(socket.SHUT_WR)
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
        """True if the web server has sent all its input and this side has read it: the
        empty FCGI_STDIN was handled or is buffered, or the web server has closed its side."""
        if self._input_ended or self._buffered_input_end():
            return True
        try:
            while True:
                chunk = self._sock.recv(_RECV, socket.MSG_DONTWAIT)
                if not chunk:
                    return True  # the web server closed its side: nothing more can come
                self._rbuf += chunk
        except OSError:  # EAGAIN: nothing more for now
            pass
        return self._buffered_input_end()

    def _buffered_input_end(self) -> bool:
        buf, pos = self._rbuf, self._rpos
        while pos + fb.FCGI_HEADER_LEN <= len(buf):
            _, rtype, _, length, padding = HEADER.unpack_from(buf, pos)
            if rtype == fb.FCGI_STDIN and length == 0:
                return True
            pos += fb.FCGI_HEADER_LEN + length + padding
        return False


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """A blocking socket whose reads and writes fail (EAGAIN) after stalling `seconds`."""
    if sock.gettimeout() is not None:
        sock.settimeout(None)
    whole = int(seconds)
    tv = _TIMEVAL.pack(whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


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
