"""HTTP/1.1 request parsing and response framing, on in-memory streams."""

from __future__ import annotations

import io

import pytest

from cgirt.devserver.http1 import ChunkedWriter, ClientGone, RequestRejected, Limits, Request, read_request

LIMITS = Limits(max_header_bytes=1024, max_headers=10, max_body_bytes=100)


def parse(data: bytes, limits: Limits = LIMITS) -> Request | None:
    return read_request(io.BufferedReader(io.BytesIO(data)), limits)


def status_of(data: bytes, limits: Limits = LIMITS) -> int:
    with pytest.raises(RequestRejected) as info:
        request = parse(data, limits)
        if request is not None:
            request.body.drain()
    return info.value.status


def test_a_simple_request() -> None:
    request = parse(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-Twice: 1\r\n"
                    b"x-twice: 2\r\n\r\n")
    assert request is not None
    assert (request.method, request.target, request.protocol) == ("GET", "/a/b?x=1&y=%20",
                                                                   "HTTP/1.1")
    assert request.path_and_query() == ("/a/b", "x=1&y=%20")
    assert request.header("x-twice") == "1, 2"
    assert request.headers[0] == ("Host", "h")
    assert request.body.done and list(request.body) == []


def test_bare_lf_line_endings_and_leading_blank_lines_are_accepted() -> None:
    request = parse(b"\r\n\nGET / HTTP/1.1\nHost: h\n\n")
    assert request is not None and request.header("host") == "h"


def test_header_values_keep_any_octet() -> None:
    request = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n")
    assert request is not None
    assert request.header("x-name") == "caf\xc3\xa9"  # ISO-8859-1: round-trips to bytes


def test_closed_idle_connection_is_not_an_error() -> None:
    assert parse(b"") is None


@pytest.mark.parametrize("data", [b"GET / HTT", b"GET / HTTP/1.1\r\nHost: h\r\n"])
def test_connection_closed_mid_head(data: bytes) -> None:
    with pytest.raises(ClientGone):
        parse(data)


@pytest.mark.parametrize("version, connection, keep", [
    (b"1.1", b"", True), (b"1.1", b"Connection: close\r\n", False),
    (b"1.1", b"Connection: Keep-Alive, Close\r\n", False),
    (b"1.0", b"", False), (b"1.0", b"Connection: keep-alive\r\n", True),
])
def test_keep_alive_rules(version: bytes, connection: bytes, keep: bool) -> None:
    request = parse(b"GET / HTTP/" + version + b"\r\nHost: h\r\n" + connection + b"\r\n")
    assert request is not None and request.wants_keep_alive() is keep


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 1000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(11)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
     400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"a" * 101
     + b"\r\n0\r\n\r\n", 413),
])
def test_bad_requests(data: bytes, status: int) -> None:
    assert status_of(data) == status


def test_repeated_equal_content_lengths_are_one() -> None:
    request = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                    b"Content-Length: 3\r\n\r\nabc")
    assert request is not None and b"".join(request.body) == b"abc"


def test_sized_body_stops_at_its_length() -> None:
    request = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET")
    assert request is not None
    assert b"".join(request.body) == b"abc" and request.body.done


def test_short_body_means_the_client_left() -> None:
    request = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
    assert request is not None
    with pytest.raises(ClientGone):
        request.body.drain()
    assert not request.body.done


def test_chunked_body_with_extensions_and_trailers() -> None:
    request = parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                    b"3;name=value\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")
    assert request is not None and request.body.chunked and request.body.length is None
    assert b"".join(request.body) == b"abc0123456789"
    assert request.body.done


def test_drain_continues_a_partial_read() -> None:
    request = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
                    + b"GET / HTTP/1.1\r\n", Limits(1024, 10, 100))
    assert request is not None
    next(iter(request.body))
    request.body.drain()
    assert request.body.done
    with pytest.raises(StopIteration):
        next(iter(request.body))


def test_chunked_writer() -> None:
    out = io.BytesIO()
    writer = ChunkedWriter(out)
    writer.write(b"hello")
    writer.write(b"")  # an empty chunk would end the body early
    writer.write(b"x" * 26)
    writer.finish()
    assert out.getvalue() == b"5\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n"
