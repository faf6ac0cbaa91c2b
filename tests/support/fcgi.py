"""A minimal FastCGI client for tests: one request, whole response, raw records visible."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7
_HDR = struct.Struct("!BBHHBx")


def record(rtype: int, rid: int, content: bytes = b"") -> bytes:
    pad = -len(content) & 7
    return _HDR.pack(1, rtype, rid, len(content), pad) + content + b"\0" * pad


def pair(name: bytes, value: bytes) -> bytes:
    def ln(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack("!L", n | 0x80000000)
    return ln(len(name)) + ln(len(value)) + name + value


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
    p = b"".join(pair(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in params.items())
    out = record(BEGIN, rid, struct.pack("!HB5x", 1, 1 if keep else 0))
    for i in range(0, len(p), 65528):
        out += record(PARAMS, rid, p[i:i + 65528])
    out += record(PARAMS, rid)
    s.sendall(out)
    for i in range(0, len(body), 65528):
        s.sendall(record(STDIN, rid, body[i:i + 65528]))
    s.sendall(record(STDIN, rid))


def read_response(s: socket.socket, read_limit: int | None = None) -> Response:
    resp = Response()
    buf = b""
    out = bytearray()
    while True:
        while len(buf) < 8:
            chunk = s.recv(65536)
            if not chunk:
                return _finish(resp, out)
            buf += chunk
        _, rtype, _, length, pad = _HDR.unpack_from(buf)
        while len(buf) < 8 + length + pad:
            chunk = s.recv(65536)
            if not chunk:
                return _finish(resp, out)
            buf += chunk
        content = buf[8:8 + length]
        buf = buf[8 + length + pad:]
        if rtype == STDOUT:
            out += content
            if read_limit is not None and len(out) >= read_limit:
                return _finish(resp, out)
        elif rtype == STDERR:
            resp.stderr += content
        elif rtype == END:
            resp.ended = True
            resp.app_status = struct.unpack("!L", content[:4])[0]
            return _finish(resp, out)


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
