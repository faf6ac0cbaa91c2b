"""HTTP/1.1 message framing for the development front end (RFC 9112), with hard limits.

http.server's parser caps header lines only per line (64 KiB each, 100 of them), cannot read
chunked request bodies and does not report its errors as values, so the front end parses
requests here: every malformed or oversized request becomes a :class:`RequestRejected` carrying
the status to answer with. Names are kept as sent; bytes are decoded as ISO-8859-1, which
round-trips any octet (RFC 9110 section 5.5), so nothing is lost on the way to FastCGI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BufferedIOBase

# RFC 9110 section 5.6.2: a field name is a token.
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)\r?\n")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
READ_SIZE = 64 * 1024
MAX_CHUNK_LINE = 4096

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    414: "URI Too Long", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


class RequestRejected(Exception):
    """A request the front end answers with ``status`` (and then closes the connection)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ClientGone(Exception):
    """The client closed the connection or stopped sending mid-request: nobody to answer."""


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int


@dataclass
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    body: BodyReader = field(repr=False)

    @property
    def protocol(self) -> str:
        return "HTTP/%d.%d" % self.version

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def wants_keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    def path_and_query(self) -> tuple[str, str]:
        path, _, query = self.target.partition("?")
        return path, query


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """All values of a field (``name`` in lower case), joined with commas (RFC 9110 5.3)."""
    values = [v for n, v in headers if n.lower() == name]
    return ", ".join(values) if values else None


def reason(status: int) -> str:
    return REASONS.get(status, "Unknown")


def read_request(rfile: BufferedIOBase, limits: Limits) -> Request | None:
    """Read a request head; ``None`` if the client closed an idle connection."""
    budget = limits.max_header_bytes
    line = rfile.readline(budget + 1)
    while line in (b"\r\n", b"\n"):  # RFC 9112 section 2.2: ignore CRLF before a request
        line = rfile.readline(budget + 1)
    if not line:
        return None
    if len(line) > budget or not line.endswith(b"\n"):
        if len(line) > budget:
            raise RequestRejected(414, "The request line is too long.")
        raise ClientGone("connection closed in the request line")
    match = REQUEST_LINE.fullmatch(line)
    if match is None:
        raise RequestRejected(400, "Malformed request line.")
    method, target, major, minor = match.groups()
    if int(major) != 1:
        raise RequestRejected(505, "Only HTTP/1.0 and HTTP/1.1 are supported.")
    headers = read_headers(rfile, budget - len(line), limits.max_headers)
    version = (1, int(minor))
    body = body_reader(rfile, headers, limits.max_body_bytes)
    request = Request(method.decode("ascii"), target.decode("latin-1"), version, headers, body)
    check_target(request)
    return request


def read_headers(rfile: BufferedIOBase, budget: int, max_headers: int) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(budget + 1)
        budget -= len(line)
        if budget < 0:
            raise RequestRejected(431, "The request header fields are too large.")
        if not line.endswith(b"\n"):
            raise ClientGone("connection closed in the request head")
        if line in (b"\r\n", b"\n"):
            return headers
        if len(headers) >= max_headers:
            raise RequestRejected(431, "Too many request header fields.")
        headers.append(parse_header_line(line))


def parse_header_line(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    # Obsolete line folding and whitespace before the colon are rejected, not repaired:
    # both are classic request-smuggling vectors (RFC 9112 sections 5.1 and 5.2).
    if not colon or not TOKEN.fullmatch(name):
        raise RequestRejected(400, "Malformed request header field.")
    value = value.strip(b" \t\r\n")
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise RequestRejected(400, "Malformed request header field value.")
    return name.decode("ascii"), value.decode("latin-1")


def check_target(request: Request) -> None:
    if not request.target.startswith("/"):
        raise RequestRejected(400, "Only origin-form request targets (/path?query) are accepted.")
    if request.version >= (1, 1) and request.header("host") is None:
        raise RequestRejected(400, "HTTP/1.1 requests need a Host header.")


def body_reader(rfile: BufferedIOBase, headers: list[tuple[str, str]],
                max_body: int) -> BodyReader:
    te = header_value(headers, "transfer-encoding")
    cl = header_value(headers, "content-length")
    if te is not None:
        if cl is not None:
            raise RequestRejected(400, "Both Transfer-Encoding and Content-Length were sent.")
        if te.strip().lower() != "chunked":
            raise RequestRejected(501, f"Transfer-Encoding {te!r} is not supported.")
        return BodyReader(rfile, None, True, max_body)
    if cl is None:
        return BodyReader(rfile, 0, False, max_body)
    values = {v.strip() for v in cl.split(",")}
    if len(values) != 1 or not (length := values.pop()).isdigit():
        raise RequestRejected(400, "Invalid Content-Length.")
    if int(length) > max_body:
        raise RequestRejected(413, f"The request body is larger than {max_body} bytes.")
    return BodyReader(rfile, int(length), False, max_body)


class BodyReader:
    """The request body as an iterator of pieces, never more than READ_SIZE at a time."""

    def __init__(self, rfile: BufferedIOBase, length: int | None, chunked: bool, max_body: int) -> None:
        self._rfile = rfile
        self.length = length
        self.chunked = chunked
        self._max_body = max_body
        self.done = length == 0 and not chunked
        # One generator for the reader's life: iterating again (drain() after a partial
        # read) continues where the last reader stopped instead of starting over.
        self._pieces = self._all()

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def drain(self) -> None:
        for _ in self._pieces:
            pass

    def _all(self) -> Iterator[bytes]:
        if not self.done:
            yield from self._chunked() if self.chunked else self._sized()
        self.done = True

    def _sized(self) -> Iterator[bytes]:
        remaining = self.length or 0
        while remaining:
            piece = self._read(min(remaining, READ_SIZE))
            remaining -= len(piece)
            yield piece

    def _chunked(self) -> Iterator[bytes]:
        total = 0
        while True:
            size = self._chunk_size()
            if size == 0:
                self._skip_trailers()
                return
            total += size
            if total > self._max_body:
                raise RequestRejected(413, f"The request body is larger than {self._max_body} bytes.")
            while size:
                piece = self._read(min(size, READ_SIZE))
                size -= len(piece)
                yield piece
            if self._line() not in (b"\r\n", b"\n"):
                raise RequestRejected(400, "Malformed chunked request body.")

    def _chunk_size(self) -> int:
        digits = self._line().split(b";", 1)[0].strip()
        if not digits or len(digits) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in digits):
            raise RequestRejected(400, "Malformed chunk size in the request body.")
        return int(digits, 16)

    def _skip_trailers(self) -> None:
        budget = MAX_CHUNK_LINE * 4
        while (line := self._line()) not in (b"\r\n", b"\n"):
            budget -= len(line)
            if budget < 0:
                raise RequestRejected(431, "The request trailer fields are too large.")

    def _line(self) -> bytes:
        line = self._rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE:
            raise RequestRejected(400, "A line of the chunked request body is too long.")
        if not line.endswith(b"\n"):
            raise ClientGone("connection closed in the request body")
        return line

    def _read(self, n: int) -> bytes:
        piece = self._rfile.read1(n)
        if not piece:
            raise ClientGone("connection closed in the request body")
        return piece


def format_head(version: tuple[int, int], status: int, status_text: str,
                headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/{version[0]}.{version[1]} {status} {status_text}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ChunkedWriter:
    """Writes a body in chunked transfer coding; :meth:`finish` writes the last chunk."""

    def __init__(self, wfile: BufferedIOBase) -> None:
        self._wfile = wfile

    def write(self, data: bytes) -> None:
        if data:
            self._wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    def finish(self) -> None:
        self._wfile.write(b"0\r\n\r\n")
