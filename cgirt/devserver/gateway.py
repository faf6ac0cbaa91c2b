"""The two translations of a gateway: HTTP request → FastCGI params, CGI response → HTTP.

Params are what nginx sends with the configuration INSTALL.md documents (its stock
``fastcgi_params``, every request header as ``HTTP_*``), so a script sees in development
exactly the environment it sees in production (tests/integration/test_devfront_parity.py
compares the two). ``SCRIPT_NAME`` is the whole normalised request path and no
``SCRIPT_FILENAME`` is sent: the runner splits off ``PATH_INFO`` and maps the URL to a file
itself, inside its own cgi roots (a web server's SCRIPT_FILENAME is trusted only there), and
gives the script the same SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME and PATH_TRANSLATED that
nginx's split gives it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..fastcgi.client import BackendProtocolError
from .http1 import HOP_BY_HOP, TOKEN, Request

SERVER_SOFTWARE = "cgirt-devfront"
# Proxy would become HTTP_PROXY, which CGI programs' HTTP libraries take for a proxy
# setting (httpoxy, CVE-2016-5385); the nginx configuration blanks it, the runner drops
# it. Every other header is passed, Content-Type, Content-Length and Transfer-Encoding
# included, as nginx passes them.
NOT_FORWARDED = frozenset({"proxy"})
HEAD_END = re.compile(rb"\r?\n\r?\n")
LINE_END = re.compile(rb"\r?\n")
STATUS = re.compile(r"([1-5]\d\d)(?:[ \t]+(.*))?")
NO_BODY_STATUSES = frozenset({204, 304})


class BadCgiResponse(BackendProtocolError):
    """The backend's output is not a CGI response (RFC 3875 section 6)."""


@dataclass(frozen=True)
class Endpoint:
    """The addresses of one HTTP connection, as the CGI variables name them."""

    remote_addr: str
    remote_port: int
    server_addr: str
    server_port: int
    server_name: str


@dataclass(frozen=True)
class CgiHead:
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


def cgi_params(request: Request, url_path: str, query: str, document_root: str,
               endpoint: Endpoint, content_length: int | None) -> list[tuple[bytes, bytes]]:
    path = os.fsencode(url_path)
    params: list[tuple[str | bytes, str | bytes]] = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", SERVER_SOFTWARE),
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", request.method),
        ("CONTENT_TYPE", request.header("content-type") or ""),
        ("CONTENT_LENGTH", "" if content_length is None else str(content_length)),
        ("SCRIPT_NAME", path),
        ("REQUEST_URI", request.target),
        ("DOCUMENT_URI", path),
        ("DOCUMENT_ROOT", os.fsencode(document_root)),
        ("SERVER_PROTOCOL", request.protocol),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", endpoint.remote_addr),
        ("REMOTE_PORT", str(endpoint.remote_port)),
        ("REMOTE_USER", ""),  # nginx's $remote_user: no authentication here
        ("SERVER_ADDR", endpoint.server_addr),
        ("SERVER_PORT", str(endpoint.server_port)),
        ("SERVER_NAME", endpoint.server_name),
        ("REDIRECT_STATUS", "200"),  # in fastcgi_params for PHP; scripts see it behind nginx
    ]
    params += http_variables(request.headers)
    return [(_latin1(k), _latin1(v)) for k, v in params]


def http_variables(headers: list[tuple[str, str]]) -> list[tuple[str | bytes, str | bytes]]:
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        # "X_Forwarded_For" and "X-Forwarded-For" would both become HTTP_X_FORWARDED_FOR;
        # like nginx, drop the underscore spelling so one cannot spoof the other.
        if lower in NOT_FORWARDED or "_" in name:
            continue
        merged.setdefault("HTTP_" + name.upper().replace("-", "_"), []).append(value)
    return [(key, ("; " if key == "HTTP_COOKIE" else ", ").join(values))
            for key, values in merged.items()]


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def read_head(read: Callable[[], bytes], limit: int) -> tuple[bytes, bytes]:
    """Read CGI output up to the blank line ending its header; return (head, start of body)."""
    buffer = b""
    while True:
        end = HEAD_END.search(buffer)
        if end is not None:
            return buffer[:end.start()], buffer[end.end():]
        if len(buffer) > limit:
            raise BadCgiResponse(f"the response header is larger than {limit} bytes")
        piece = read()
        if not piece:
            if not buffer:
                raise BadCgiResponse("the script produced no output")
            raise BadCgiResponse("the output ended before the blank line ending the header")
        buffer += piece


def parse_head(head: bytes) -> CgiHead:
    """Status and header fields of a CGI response (RFC 3875 sections 6.2 and 6.3)."""
    status: int | None = None
    reason = ""
    headers: list[tuple[str, str]] = []
    for line in LINE_END.split(head):
        name, value = _field(line)
        if name.lower() == "status":
            status, reason = _status(value)
        elif name.lower() not in HOP_BY_HOP:
            headers.append((name, value))
    if status is None:
        # A Location without a Status is a client redirect (RFC 3875 6.2.3). A local
        # redirect ("/path") is answered the same way, as nginx does, not re-dispatched.
        status = 302 if any(n.lower() == "location" for n, _ in headers) else 200
    result = CgiHead(status, reason, headers)
    _check_length(result)
    return result


def _field(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not TOKEN.fullmatch(name):
        shown = line[:80].decode("latin-1")
        raise BadCgiResponse(f"malformed header line in the script's output: {shown!r}")
    return name.decode("ascii"), value.strip(b" \t").decode("latin-1")


def _status(value: str) -> tuple[int, str]:
    match = STATUS.fullmatch(value.strip())
    if match is None or match.group(1).startswith("1"):
        raise BadCgiResponse(f"invalid Status header: {value!r}")
    return int(match.group(1)), (match.group(2) or "").strip()


def _check_length(head: CgiHead) -> None:
    length = head.header("content-length")
    if length is not None and not length.strip().isdigit():
        raise BadCgiResponse(f"invalid Content-Length: {length!r}")


def body_allowed(method: str, status: int) -> bool:
    return method != "HEAD" and status not in NO_BODY_STATUSES
