"""A minimal FastCGI client for tests: one request, whole response, raw records visible.

Records are framed by cgirt.fastcgi.records, whose encoders let a test frame malformed input
on purpose (any type, any request id, content that is not what its type expects).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from cgirt.fastcgi.records import (ABORT_REQUEST as ABORT, BEGIN_REQUEST as BEGIN,
                                   END_BODY, END_REQUEST as END, PARAMS, STDERR, STDIN, STDOUT,
                                   encode_pair as pair, encode_record as record, request_records,
                                   split_records)

__all__ = ["ABORT", "BEGIN", "END", "PARAMS", "STDERR", "STDIN", "STDOUT", "pair", "record",
           "Response", "connect", "request", "send_request", "read_response", "parse_response",
           "cgi_params"]


@dataclass
class Response:
    stdout: bytes = b""
    stderr: bytes = b""
    ended: bool = False
    app_status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 0
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def connect(address: str, timeout: float = 30.0) -> socket.socket:
    if address.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address[5:])
    else:
        host, _, port = address.rpartition(":")
        s = socket.create_connection((host, int(port)), timeout=timeout)
    return s


def request(address: str, params: dict[str, str], body: bytes = b"", timeout: float = 30.0,
            read_limit: int | None = None) -> Response:
    s = connect(address, timeout)
    try:
        send_request(s, params, body)
        return read_response(s, read_limit)
    finally:
        s.close()


def send_request(s: socket.socket, params: dict[str, str], body: bytes = b"", rid: int = 1,
                 keep: bool = False) -> None:
    s.sendall(request_records(rid, params, body, keep_conn=keep))


def read_response(s: socket.socket, read_limit: int | None = None) -> Response:
    resp = Response()
    buf = b""
    out = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return _finish(resp, out)
        records, buf = split_records(buf + chunk)
        if _absorb(resp, out, records, read_limit):
            return _finish(resp, out)


def parse_response(data: bytes) -> Response:
    """The response in `data`, all the records a backend sent."""
    resp = Response()
    out = bytearray()
    _absorb(resp, out, split_records(data)[0], None)
    return _finish(resp, out)


def _absorb(resp: Response, out: bytearray, records: list[tuple[int, int, bytes]],
            read_limit: int | None) -> bool:
    """Take in the records; True once the response is complete (or long enough)."""
    for rtype, _, content in records:
        if rtype == STDOUT:
            out += content
            if read_limit is not None and len(out) >= read_limit:
                return True
        elif rtype == STDERR:
            resp.stderr += content
        elif rtype == END:
            resp.ended = True
            resp.app_status = END_BODY.unpack_from(content)[0]
            return True
    return False


def _finish(resp: Response, out: bytearray) -> Response:
    resp.stdout = bytes(out)
    head, sep, body = resp.stdout.partition(b"\r\n\r\n")
    if not sep:
        return resp
    resp.body = body
    for line in head.split(b"\r\n"):
        k, _, v = line.decode("latin-1").partition(":")
        resp.headers.append((k.strip(), v.strip()))
    st = resp.header("Status")
    resp.status = int(st.split()[0]) if st else 200
    return resp


def cgi_params(path: str, query: str = "", method: str = "GET", **extra: str) -> dict[str, str]:
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "test", "REQUEST_METHOD": method,
        "SCRIPT_NAME": path, "QUERY_STRING": query,
        "REQUEST_URI": path + ("?" + query if query else ""), "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5555", "HTTP_HOST": "localhost",
    }
    params.update(extra)
    return params
