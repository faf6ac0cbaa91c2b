"""CGI output → response, a data-driven corpus of script outputs (as gunicorn's *.http files)."""

from __future__ import annotations

import pytest

from cgirt.runner.response import ResponseParser
from tests.support.fcgi import cgi_params

from .conftest import StartRunner

CASES = [
    # (script output, expected kind, expected forwarded bytes or message fragment)
    (b"Content-Type: text/plain\n\nhi\n", "sent",
     b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhi\n"),
    (b"Content-Type: text/plain\r\n\r\nhi", "sent",
     b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhi"),
    (b"Status: 404\nContent-Type: text/plain\n\nx", "sent",
     b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nx"),
    (b"Status: 299 Custom Thing\n\n", "sent", b"Status: 299 Custom Thing\r\n\r\n"),
    (b"Set-Cookie: a=1\nSet-Cookie: b=2\n\n", "sent",
     b"Status: 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"),
    (b"Location: http://example.com/\n\nbody", "sent",
     b"Status: 302 Found\r\nLocation: http://example.com/\r\n\r\nbody"),
    (b"Status: 301 Moved Permanently\nLocation: /new\n\n", "sent",
     b"Status: 301 Moved Permanently\r\nLocation: /new\r\n\r\n"),
    (b"Location: /cgi-bin/other.py?x=1\n\nignored body", "redirect", "/cgi-bin/other.py?x=1"),
    (b"<!--: spam\nContent-Type: text/html\n\n<p>", "sent",
     b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n<p>"),
    (b"\nbody without headers", "sent", b"Status: 200 OK\r\n\r\nbody without headers"),
    (b"not a header\n\nbody", "malformed", "Bad header: not a header"),
    (b"Status: abc\n\n", "malformed", "malformed Status header"),
    (b"Content-Type: text/plain\n", "no-headers", "before the blank line"),
    (b"", "no-headers", "end of script output before headers"),
]


@pytest.mark.parametrize("piece", [3, 1 << 20], ids=["pieces", "whole"])
@pytest.mark.parametrize("output, kind, expected", CASES)
def test_corpus(output: bytes, kind: str, expected: object, piece: int) -> None:
    sent: list[bytes] = []
    parser = ResponseParser(sent.append)
    # In small pieces, as a script may write it; or whole, as a buffered stdout sends it.
    for i in range(0, len(output), piece):
        parser.write(output[i:i + piece])
    outcome = parser.finish()
    assert outcome.kind == kind
    if kind == "sent":
        assert b"".join(sent) == expected
    elif kind == "redirect":
        assert outcome.location == expected and not sent
    else:
        assert expected in outcome.message and not sent


def test_head_sends_headers_only() -> None:
    sent: list[bytes] = []
    parser = ResponseParser(sent.append, head_only=True)
    parser.write(b"Content-Type: text/plain\n\nbody")
    parser.write(b"more body")
    assert b"".join(sent) == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"


def test_nph_status_line_becomes_status() -> None:
    sent: list[bytes] = []
    parser = ResponseParser(sent.append, nph=True)
    parser.write(b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/plain\r\n\r\ntea")
    assert parser.finish().kind == "sent"
    assert b"".join(sent) == b"Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\n\r\ntea"


def test_oversized_header_block_is_refused() -> None:
    parser = ResponseParser(lambda b: None)
    parser.write(b"X-Big: " + b"a" * 70000)
    assert parser.finish().kind == "malformed"


def test_body_is_streamed_not_buffered() -> None:
    sent: list[bytes] = []
    parser = ResponseParser(sent.append)
    parser.write(b"Content-Type: a/b\n\n")
    parser.write(b"x" * 100)
    assert sent[-1] == b"x" * 100


def test_header_names_are_checked_the_same_way_on_every_response() -> None:
    # Names once seen are remembered (with their lower case): the second response must be
    # parsed exactly as the first, a bad name dropped again, a known one still recognised.
    output = b"<!--: spam\nSTATUS: 404\nX-Mixed-Case: v\nlocation: http://example.com/\n\n"
    for _ in range(3):
        sent: list[bytes] = []
        parser = ResponseParser(sent.append)
        parser.write(output)
        assert parser.finish().kind == "sent"
        assert b"".join(sent) == (b"Status: 404 Not Found\r\nX-Mixed-Case: v\r\n"
                                  b"location: http://example.com/\r\n\r\n")


NPH_SCRIPT = 'import sys\nsys.stdout.write("HTTP/1.1 201 Created\\r\\nContent-Type: text/plain\\r\\n\\r\\nmade")\n'


def test_a_script_named_nph_gives_a_whole_response(in_process: StartRunner) -> None:
    """By its file name only: the same output from another script is a malformed header."""
    runner = in_process({"nph-made.py": NPH_SCRIPT, "made.py": NPH_SCRIPT})
    resp = runner.request(cgi_params("/cgi-bin/nph-made.py"))
    assert (resp.status, resp.body) == (201, b"made")
    assert runner.request(cgi_params("/cgi-bin/made.py")).status == 500
