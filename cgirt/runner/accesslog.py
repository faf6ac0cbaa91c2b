"""A site's access log: the Combined Log Format, then what the runner alone knows.

    127.0.0.1 - - [30/Nov/2026:09:29:05 +0000] "GET /cgi-bin/hello.py?x=1 HTTP/1.1" 200 14 "-" "curl/7.88.1" 0.000412 4242 persistent 97

After the Combined fields (client, identity, user, time the request started, request line,
status, body bytes, Referer, User-Agent): the request's duration in seconds, the pid of
the worker that served it, the execution mode (`-` when no script was found), and the bytes
of the whole response (CGI header block included) handed to the web server.

One line per request, written by the worker once the response has ended (one `os.write`):
the client never waits for it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Mapping

from ..logfiles import LogFile

_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\U0010ffff]')


def escape(text: str) -> str:
    """As Apache logs request lines and headers: quotes, backslashes and anything not
    printable ASCII as escapes, so a client cannot forge a line or a field."""
    return text if _plain(text) else _UNSAFE.sub(_escape_char, text)


def _plain(text: str) -> bool:
    """Nothing to escape: the usual case, at the cost of four scans in C."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c in '"\\':
        return "\\" + c
    data = c.encode("utf-8", "surrogateescape")
    return "".join(f"\\x{b:02x}" for b in data)


class AccessLog:
    def __init__(self, file: LogFile) -> None:
        self.file = file
        self._pid = os.getpid()
        self._second = -1
        self._stamp = ""

    def open(self) -> None:
        self._pid = os.getpid()  # built in the master, opened in each worker
        self.file.open()

    @staticmethod
    def request_line(params: Mapping[str, str]) -> str:
        return escape(f"{params.get('REQUEST_METHOD', '-')} "
                      f"{params.get('REQUEST_URI') or params.get('SCRIPT_NAME', '-')}")

    def write(self, params: Mapping[str, str], started: float, duration: float, status: int,
              body_bytes: int, response_bytes: int, mode: str, request: str = "") -> None:
        second = int(started)
        if second != self._second:  # strftime costs microseconds: once a second is enough
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            self._second = second
        get = params.get
        user = get("REMOTE_USER") or "-"
        protocol = get("SERVER_PROTOCOL") or "-"
        referer = get("HTTP_REFERER") or "-"
        agent = get("HTTP_USER_AGENT") or "-"
        if not _plain(user + protocol + referer + agent):  # one check for the four
            user, protocol, referer, agent = map(escape, (user, protocol, referer, agent))
        line = (f'{get("REMOTE_ADDR") or "-"} - {user} [{self._stamp}] '
                f'"{request or self.request_line(params)} {protocol}" {status or "-"} '
                f'{body_bytes or "-"} "{referer}" "{agent}" {duration:.6f} {self._pid} {mode} '
                f'{response_bytes}\n')
        try:
            self.file.write(line.encode("utf-8", "surrogateescape"))
        except OSError as exc:  # a full disk must not cost the next request its worker
            logging.getLogger("cgirt.error").error("cannot write the access log %s: %s",
                                                   self.file.path, exc.strerror)
