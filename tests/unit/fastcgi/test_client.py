"""The FastCGI client against a scripted peer on a unix socket (no flup involved)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cgirt.fastcgi import client as fc
from cgirt.fastcgi import records as fr

Script = Callable[[socket.socket], None]


def record(rtype: int, content: bytes = b"", request_id: int = fc.REQUEST_ID,
           version: int = fr.VERSION_1) -> bytes:
    return fr.HEADER.pack(version, rtype, request_id, len(content), 0) + content


def end_request(app_status: int = 0, protocol_status: int = fr.REQUEST_COMPLETE) -> bytes:
    return record(fr.END_REQUEST, fr.END_BODY.pack(app_status, protocol_status))


def read_records(conn: socket.socket) -> Iterator[tuple[int, int, bytes]]:
    """Records from the client until its stdin stream ends."""
    reader = conn.makefile("rb")
    while True:
        header = reader.read(fr.HEADER.size)
        if len(header) < fr.HEADER.size:
            return
        _, rtype, request_id, length, padding = fr.HEADER.unpack(header)
        content = reader.read(length + padding)[:length]
        yield rtype, request_id, content
        if rtype == fr.STDIN and not content:
            return


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[[Script], fc.UnixAddress]]:
    """Start a one-connection FastCGI peer that runs a script against the client."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(script: Script) -> fc.UnixAddress:
        path = str(tmp_path / f"peer{len(listeners)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                script(conn)

        thread = threading.Thread(target=serve)
        thread.start()
        threads.append(thread)
        return fc.UnixAddress(path)

    yield start
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    for listener in listeners:
        listener.close()


def open_request(address: fc.UnixAddress, stderr: list[bytes] | None = None,
                 timeout: float = 5.0) -> fc.BackendRequest:
    on_stderr = stderr.append if stderr is not None else None
    return fc.BackendRequest.open(address, connect_timeout=5.0, io_timeout=timeout,
                                  on_stderr=on_stderr)


def read_all(request: fc.BackendRequest) -> bytes:
    pieces = []
    while piece := request.read_stdout():
        pieces.append(piece)
    return b"".join(pieces)


# -- framing ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("unix:/run/cgirt.sock", fc.UnixAddress("/run/cgirt.sock")),
    ("/run/cgirt.sock", fc.UnixAddress("/run/cgirt.sock")),
    ("127.0.0.1:9000", fc.TcpAddress("127.0.0.1", 9000)),
    ("[::1]:9000", fc.TcpAddress("::1", 9000)),
    ("localhost:1", fc.TcpAddress("localhost", 1)),
])
def test_parse_address(text: str, expected: fc.BackendAddress) -> None:
    assert fc.parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "unix:", "localhost", "host:0", "host:70000", ":80",
                                  "host:port"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        fc.parse_address(text)


# -- a request against a peer ----------------------------------------------------------


def test_full_request_streams_params_stdin_stdout_and_stderr(
        peer: Callable[[Script], fc.UnixAddress]) -> None:
    seen: dict[str, object] = {}

    def script(conn: socket.socket) -> None:
        records = list(read_records(conn))
        seen["types"] = [r[0] for r in records]
        begin = records[0][2]
        seen["role"], seen["flags"] = fr.BEGIN_BODY.unpack(begin)
        params = b"".join(c for t, _, c in records if t == fr.PARAMS)
        seen["params"] = fr.decode_pairs(params)
        seen["stdin"] = b"".join(c for t, _, c in records if t == fr.STDIN)
        conn.sendall(record(fr.STDOUT, b"Status: 200 OK\r\n\r\n")
                     + record(fr.STDERR, b"warning\n")
                     + record(fr.GET_VALUES_RESULT, b"", request_id=0)
                     + record(fr.STDOUT, b"body")
                     + record(fr.STDOUT) + record(fr.STDERR) + end_request(7))

    stderr: list[bytes] = []
    with open_request(peer(script), stderr) as request:
        request.send_params({b"REQUEST_METHOD": b"POST", b"CONTENT_LENGTH": b"70000"})
        request.send_stdin(b"a" * 70_000)
        request.send_stdin(b"")  # must not end the stream early
        request.end_stdin()
        assert read_all(request) == b"Status: 200 OK\r\n\r\nbody"
        assert request.read_stdout() == b""
        assert request.app_status == 7
    assert stderr == [b"warning\n"]
    assert seen["role"] == fr.RESPONDER and seen["flags"] == 0  # no FCGI_KEEP_CONN
    assert seen["params"] == {b"REQUEST_METHOD": b"POST", b"CONTENT_LENGTH": b"70000"}
    assert seen["stdin"] == b"a" * 70_000
    types = seen["types"]
    assert isinstance(types, list)
    assert types[0] == fr.BEGIN_REQUEST and types.count(fr.STDIN) == 3  # 65535 + rest + end


def finish_input_then(reply: bytes) -> Script:
    def script(conn: socket.socket) -> None:
        for _ in read_records(conn):
            pass
        if reply:
            conn.sendall(reply)
    return script


def send_empty_request(request: fc.BackendRequest) -> None:
    request.send_params({})
    request.end_stdin()


def test_backend_closing_before_end_request_is_backend_closed(
        peer: Callable[[Script], fc.UnixAddress]) -> None:
    with open_request(peer(finish_input_then(record(fr.STDOUT, b"partial")))) as request:
        send_empty_request(request)
        assert request.read_stdout() == b"partial"
        with pytest.raises(fc.BackendClosed):
            request.read_stdout()


def test_silent_backend_times_out(peer: Callable[[Script], fc.UnixAddress]) -> None:
    release = threading.Event()

    def script(conn: socket.socket) -> None:
        for _ in read_records(conn):
            pass
        release.wait(10)

    try:
        with open_request(peer(script), timeout=0.2) as request:
            send_empty_request(request)
            with pytest.raises(fc.BackendTimeout):
                request.read_stdout()
    finally:
        release.set()


@pytest.mark.parametrize("reply, message", [
    (end_request(protocol_status=fr.OVERLOADED), "overloaded"),
    (end_request(protocol_status=fr.CANT_MPX_CONN), "multiplex"),
    (record(fr.STDOUT, b"x", version=2), "version"),
    (record(fr.STDOUT, b"x", request_id=9), "request id"),
    (record(fr.END_REQUEST, b"\0\0"), "short"),
    (record(fr.DATA, b"x"), "record type"),
])
def test_protocol_violations(peer: Callable[[Script], fc.UnixAddress], reply: bytes,
                             message: str) -> None:
    with open_request(peer(finish_input_then(reply))) as request:
        send_empty_request(request)
        with pytest.raises(fc.BackendProtocolError, match=message):
            read_all(request)


def test_nothing_listening_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(fc.BackendUnavailable, match="cannot connect"):
        fc.BackendRequest.open(fc.UnixAddress(str(tmp_path / "absent.sock")),
                               connect_timeout=1.0, io_timeout=1.0)


def test_refused_tcp_port_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        with pytest.raises(fc.BackendUnavailable):
            fc.BackendRequest.open(fc.TcpAddress("127.0.0.1", port), connect_timeout=1.0,
                                   io_timeout=1.0)


def test_backend_gone_while_sending_is_backend_closed(
        peer: Callable[[Script], fc.UnixAddress]) -> None:
    def script(conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_RDWR)

    address = peer(script)
    with pytest.raises(fc.BackendClosed):
        # Even the BEGIN_REQUEST record may already be refused, so open inside the check.
        with open_request(address) as request:
            for _ in range(200):  # until the closed peer's socket refuses more input
                request.send_stdin(bytes(65535))
