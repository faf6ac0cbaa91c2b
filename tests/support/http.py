"""HTTP requests to servers listening on a unix socket or TCP, for tests."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def connection(address: str, timeout: float = 60.0) -> http.client.HTTPConnection:
    if address.startswith("unix:"):
        return UnixHTTPConnection(address[5:], timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def fetch(address: str, path: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: float = 60.0) -> HttpResponse:
    conn = connection(address, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, resp.reason, resp.getheaders(), data)
    finally:
        conn.close()
