"""A property-based fuzz of the FastCGI record parser (cgirt.fastcgi.server), in process, over a
socketpair: whatever the web server sends, the connection ends within a bound, nothing
escapes `handle_connection` (an escape would cost the worker), the request clock is
stopped, and what is sent back is well-formed FastCGI.

The real-runner side of this (malformed, oversized and random records; a stalled body) is
in tests/integration/test_hostile_fastcgi.py.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgirt.fastcgi.records import BEGIN_BODY as BEGIN_STRUCT, HEADER, begin_record
from cgirt.fastcgi.server import FastCGIServer
from tests.support.fcgi import BEGIN, PARAMS, STDIN, pair, record

SENT_TYPES = {3, 6, 7, 10, 11}  # END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, UNKNOWN_TYPE


class Clock:
    """The supervisor's side of a worker, reduced to what the connection uses."""

    def __init__(self) -> None:
        self.started = self.finished = 0
        self.stopping = False
        self.listener_fd = -1

    def request_started(self, method: str = "", uri: str = "", script: str = "") -> None:
        self.started += 1

    def request_finished(self) -> None:
        self.finished += 1

    def recycle_after_request(self) -> None:
        self.stopping = True


def app(req: Any) -> None:
    """Reads the whole body, as a script's cgi.FieldStorage would, then answers."""
    body = req.stdin.read()
    req.write(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n%d\n" % len(body))


def serve(data: bytes, io_timeout: float = 1.0) -> tuple[bytes, Clock]:
    server = FastCGIServer(app, max_conns=1, io_timeout=io_timeout)
    ours, theirs = socket.socketpair()
    clock = Clock()
    escaped: list[BaseException] = []

    def run() -> None:
        try:
            server.handle_connection(theirs, None, clock)
        except BaseException as exc:  # noqa: B036 - exactly what must not happen
            escaped.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    out = bytearray()
    ours.settimeout(15)
    try:
        try:
            ours.sendall(data)
            ours.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server gave up on the input early: allowed
        while True:
            try:
                chunk = ours.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        ours.close()
        thread.join(15)
    assert not thread.is_alive(), "the connection did not end"
    assert not escaped, f"escaped handle_connection: {escaped[0]!r}"
    return bytes(out), clock


def check_output(out: bytes) -> None:
    pos = 0
    while pos < len(out):
        assert len(out) - pos >= 8, "a truncated record header"
        version, rtype, _rid, length, padding = HEADER.unpack_from(out, pos)
        assert version == 1 and rtype in SENT_TYPES, (version, rtype)
        pos += 8 + length + padding
    assert pos == len(out), "a record cut short"


def params_blob(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(pair(k, v) for k, v in pairs)


BEGIN_BODY = st.builds(BEGIN_STRUCT.pack,
                       st.sampled_from([1, 1, 1, 2, 3, 0, 65535]), st.sampled_from([0, 1, 255]))

a_record = st.one_of(
    st.builds(lambda rid, body: record(BEGIN, rid, body), st.integers(0, 3),
              st.one_of(BEGIN_BODY, st.binary(max_size=12))),
    st.builds(lambda rid, ps: record(PARAMS, rid, params_blob(ps)), st.integers(0, 3),
              st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=200)), max_size=6)),
    st.builds(lambda rid, blob: record(PARAMS, rid, blob), st.integers(0, 3), st.binary(max_size=64)),
    st.builds(lambda rid: record(PARAMS, rid), st.integers(0, 3)),
    st.builds(lambda rid, body: record(STDIN, rid, body), st.integers(0, 3), st.binary(max_size=300)),
    st.builds(lambda rid: record(STDIN, rid), st.integers(0, 3)),
    st.builds(record, st.integers(0, 255), st.integers(0, 3), st.binary(max_size=64)),
    # A header that lies about its length or version.
    st.builds(lambda v, t, rid, n, pad, tail: HEADER.pack(v, t, rid, n, pad) + tail,
              st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535),
              st.integers(0, 65535), st.integers(0, 255), st.binary(max_size=32)),
)

a_request = st.builds(
    lambda head, rest: head + b"".join(rest),
    st.just(begin_record(1)
            + record(PARAMS, 1, params_blob([(b"REQUEST_METHOD", b"POST"),
                                              (b"CONTENT_LENGTH", b"5")]))),
    st.lists(a_record, max_size=8),
)


@settings(max_examples=int(os.environ.get("CGIRT_FUZZ_EXAMPLES", "1000")), deadline=None,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(a_request, st.lists(a_record, max_size=10).map(b"".join), st.binary(max_size=200)))
def test_any_input_ends_the_connection_cleanly(data: bytes) -> None:
    out, clock = serve(data)
    check_output(out)
    assert clock.started == clock.finished, "the request clock was left running"


def test_a_valid_request_is_answered() -> None:
    data = (begin_record(1)
            + record(PARAMS, 1, params_blob([(b"CONTENT_LENGTH", b"5")])) + record(PARAMS, 1)
            + record(STDIN, 1, b"hello") + record(STDIN, 1))
    out, clock = serve(data)
    check_output(out)
    assert b"Status: 200 OK" in out and clock.started == clock.finished == 1
