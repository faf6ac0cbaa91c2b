"""Request → FastCGI params, and CGI response head → HTTP status and headers."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from cgirt.devserver.gateway import (BadCgiResponse, Endpoint, body_allowed, cgi_params,
                               parse_head, read_head)
from cgirt.devserver.http1 import Limits, Request, read_request

ENDPOINT = Endpoint("10.0.0.2", 40000, "10.0.0.1", 8080, "example.test")


def request(head: bytes) -> Request:
    parsed = read_request(io.BufferedReader(io.BytesIO(head)), Limits(8192, 100, 1000))
    assert parsed is not None
    return parsed


def params_of(head: bytes, url_path: str = "/cgi-bin/s.py/x",
              length: int | None = None) -> dict[bytes, bytes]:
    req = request(head)
    _, query = req.path_and_query()
    return dict(cgi_params(req, url_path, query, "/srv/site/htdocs", ENDPOINT, length))


def test_params_follow_nginx_fastcgi_params() -> None:
    params = params_of(b"POST /cgi-bin/s.py/x?q=1 HTTP/1.1\r\nHost: example.test\r\n"
                       b"Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n", length=3)
    assert params == {
        b"GATEWAY_INTERFACE": b"CGI/1.1", b"SERVER_SOFTWARE": b"cgirt-devfront",
        b"QUERY_STRING": b"q=1", b"REQUEST_METHOD": b"POST",
        b"CONTENT_TYPE": b"text/plain", b"CONTENT_LENGTH": b"3",
        b"SCRIPT_NAME": b"/cgi-bin/s.py/x", b"REQUEST_URI": b"/cgi-bin/s.py/x?q=1",
        b"DOCUMENT_URI": b"/cgi-bin/s.py/x", b"DOCUMENT_ROOT": b"/srv/site/htdocs",
        b"SERVER_PROTOCOL": b"HTTP/1.1", b"REQUEST_SCHEME": b"http",
        b"REMOTE_ADDR": b"10.0.0.2", b"REMOTE_PORT": b"40000", b"SERVER_ADDR": b"10.0.0.1",
        b"SERVER_PORT": b"8080", b"SERVER_NAME": b"example.test",
        b"REMOTE_USER": b"", b"REDIRECT_STATUS": b"200",
        # Every header, as nginx passes them: Content-Type and -Length too.
        b"HTTP_HOST": b"example.test", b"HTTP_CONTENT_TYPE": b"text/plain",
        b"HTTP_CONTENT_LENGTH": b"3",
    }


def test_header_variables() -> None:
    params = params_of(b"GET /cgi-bin/s.py HTTP/1.1\r\nHost: h\r\nProxy: http://evil\r\n"
                       b"Cookie: a=1\r\nCookie: b=2\r\nAccept: x\r\nAccept: y\r\n"
                       b"X_Spoof: 1\r\nX-Name: caf\xc3\xa9\r\n\r\n")
    assert b"HTTP_PROXY" not in params and b"HTTP_X_SPOOF" not in params
    assert params[b"HTTP_COOKIE"] == b"a=1; b=2"
    assert params[b"HTTP_ACCEPT"] == b"x, y"
    assert params[b"HTTP_X_NAME"] == b"caf\xc3\xa9"  # the octets as sent
    assert params[b"CONTENT_LENGTH"] == b"" and params[b"CONTENT_TYPE"] == b""
    assert b"SCRIPT_FILENAME" not in params and b"PATH_INFO" not in params


def test_decoded_path_is_sent_as_its_octets() -> None:
    params = params_of(b"GET /cgi-bin/caf%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n",
                       url_path="/cgi-bin/caf\xe9")
    assert params[b"SCRIPT_NAME"] == "/cgi-bin/caf\xe9".encode()
    assert params[b"REQUEST_URI"] == b"/cgi-bin/caf%C3%A9"


# -- CGI response heads (RFC 3875 section 6) ----------------------------------------------

HEADS: list[tuple[bytes, int, str, list[tuple[str, str]]]] = [
    (b"Content-Type: text/html", 200, "", [("Content-Type", "text/html")]),
    (b"Status: 404 Not Here\r\nContent-Type: text/plain", 404, "Not Here",
     [("Content-Type", "text/plain")]),
    (b"Status: 500", 500, "", []),
    (b"status:201 Created", 201, "Created", []),
    (b"Location: http://example.test/", 302, "", [("Location", "http://example.test/")]),
    (b"Location: /local", 302, "", [("Location", "/local")]),
    (b"Status: 303 See Other\nLocation: /x", 303, "See Other", [("Location", "/x")]),
    (b"Content-Type: a/b\nSet-Cookie: a=1\nSet-Cookie: b=2", 200, "",
     [("Content-Type", "a/b"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
    (b"Content-Type: a/b\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
     b"Keep-Alive: 5", 200, "", [("Content-Type", "a/b")]),
    (b"Content-Type: a/b\r\nContent-Length: 12\r\nX-Empty:", 200, "",
     [("Content-Type", "a/b"), ("Content-Length", "12"), ("X-Empty", "")]),
]


@pytest.mark.parametrize("head, status, reason, headers", HEADS)
def test_parse_head(head: bytes, status: int, reason: str,
                    headers: list[tuple[str, str]]) -> None:
    parsed = parse_head(head)
    assert (parsed.status, parsed.reason, parsed.headers) == (status, reason, headers)


@pytest.mark.parametrize("head", [
    b"", b"just text", b"Content-Type: a/b\r\n continued", b"Bad Name: 1",
    b"Status: abc", b"Status: 99 Low", b"Status: 600 High", b"Status: 100 Continue",
    b"Content-Length: ten",
])
def test_parse_head_rejects(head: bytes) -> None:
    with pytest.raises(BadCgiResponse):
        parse_head(head)


def reader(*pieces: bytes) -> Callable[[], bytes]:
    queue = list(pieces)
    return lambda: queue.pop(0) if queue else b""


@pytest.mark.parametrize("pieces", [
    (b"Content-Type: a/b\r\n\r\nbody",),
    (b"Content-Type: a/b\r", b"\n\r", b"\nbody"),
    (b"Content-Type: a/b\n\nbody",),
    (b"Content-Type: a/b\n", b"\n", b"body"),
])
def test_read_head_across_pieces(pieces: tuple[bytes, ...]) -> None:
    read = reader(*pieces)
    head, start = read_head(read, 1000)
    assert head == b"Content-Type: a/b"
    assert start + read() == b"body"  # the rest of the body is read by the caller


@pytest.mark.parametrize("pieces, message", [
    ((), "no output"),
    ((b"Content-Type: a/b\r\n",), "ended before"),
    ((b"X-Long: " + b"a" * 2000,), "larger than"),
])
def test_read_head_failures(pieces: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(BadCgiResponse, match=message):
        read_head(reader(*pieces), 1000)


@pytest.mark.parametrize("method, status, allowed", [
    ("GET", 200, True), ("HEAD", 200, False), ("GET", 204, False), ("GET", 304, False),
    ("POST", 404, True),
])
def test_body_allowed(method: str, status: int, allowed: bool) -> None:
    assert body_allowed(method, status) is allowed
