"""A CGI script's output → a response for the web server, following Apache mod_cgi's rules.

Header lines up to the blank line; `Status:`; `Location:` with a local path and no other
status is an internal redirect, with an absolute URL a 302; repeated headers are kept; a
line that is not a header is a 500 ("malformed header from script"); `nph-` scripts give a
whole HTTP response whose status line becomes the Status header. The body is streamed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable

MAX_HEADER_BYTES = 64 * 1024
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_STATUS = re.compile(rb"^\s*(\d{3})(?:\s+(.*))?$")
_NPH_STATUS = re.compile(rb"^HTTP/\d\.\d\s+(\d{3})(?:\s+(.*))?$")


_REASONS = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}
# Header names already checked against _TOKEN, and their lower case: a script sends the
# same few names on every request, and the regular expression cost more than the rest.
_NAMES: dict[bytes, bytes] = {}
_NAMES_KEPT = 256


def reason_for(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


@dataclass
class ResponseOutcome:
    """How the script's response ended, once its output is complete."""

    kind: str  # "sent", "redirect", "malformed", "no-headers"
    location: str = ""
    message: str = ""
    status: int = 0


@dataclass
class ResponseParser:
    """Receives script stdout through write(); forwards a checked response to `send`."""

    send: Callable[[bytes], None]
    head_only: bool = False
    nph: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _state: str = "headers"  # headers → body | redirect | malformed
    status: int = 0
    _outcome: ResponseOutcome | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if self._state == "body":
            if not self.head_only and n:
                self.send(bytes(data))
            return n
        if self._state != "headers":
            return n  # discarded: redirect body or after a malformed header
        if not self._buf and type(data) is bytes:
            # Nearly always: the whole header block in the first write (a script's stdout is
            # buffered), parsed from the bytes as they came, without copying them first.
            end, sep_len = _header_end(data)
            if end >= 0:
                self._complete_headers(data[:end], data[end + sep_len :])
                return n
        self._buf += data
        self._parse_headers()
        return n

    def _parse_headers(self) -> None:
        end, sep_len = _header_end(self._buf)
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                self._fail("malformed", "response headers too large")
            return
        block = bytes(self._buf[:end])
        body = bytes(self._buf[end + sep_len :])
        self._buf = bytearray()
        self._complete_headers(block, body)

    def _complete_headers(self, block: bytes, body: bytes) -> None:
        lines = block.split(b"\n") if block else []
        status: int | None = None
        reason = b""
        headers: list[tuple[bytes, bytes]] = []
        location = b""
        if self.nph and lines and lines[0].startswith(b"HTTP/"):
            m = _NPH_STATUS.match(lines.pop(0).rstrip(b"\r"))
            if m:
                status, reason = int(m.group(1)), (m.group(2) or b"")
        for raw in lines:
            line = raw.rstrip(b"\r")
            name, colon, value = line.partition(b":")
            if not colon:
                return self._fail("malformed", "malformed header from script. Bad header: "
                                  + line.decode("latin-1", "replace")[:200])
            name = name.strip()
            value = value.strip()
            lname = _NAMES.get(name)
            if lname is None:
                if not _TOKEN.match(name):
                    continue  # e.g. cgitb's "<!--: spam" line, meant for browsers, not servers
                lname = name.lower()
                if len(_NAMES) < _NAMES_KEPT:  # names come from scripts: remember a few
                    _NAMES[name] = lname
            if lname == b"status":
                m = _STATUS.match(value)
                if not m:
                    return self._fail("malformed", "malformed Status header from script: "
                                      + value.decode("latin-1", "replace")[:200])
                status, reason = int(m.group(1)), (m.group(2) or b"")
                continue
            if lname == b"location":
                location = value
            headers.append((name, value))
        if location.startswith(b"/") and not self.nph and status in (None, 200):
            self._state = "redirect"
            self._outcome = ResponseOutcome("redirect", location=location.decode("latin-1"))
            return None
        if status is None:
            status = 302 if location else 200
        self.status = status
        out = [b"Status: %d %s\r\n" % (status, reason or reason_for(status))]
        for n, v in headers:
            out.append(b"%s: %s\r\n" % (n, v))
        out.append(b"\r\n")
        if body and not self.head_only:
            out.append(body)
        self._state = "body"
        self.send(b"".join(out))
        return None

    def _fail(self, kind: str, message: str) -> None:
        self._state = "malformed"
        self._outcome = ResponseOutcome(kind, message=message)

    @property
    def headers_sent(self) -> bool:
        return self._state == "body"

    def finish(self) -> ResponseOutcome:
        if self._outcome is not None:
            return self._outcome
        if self._state == "headers":
            if self._buf.strip():
                return ResponseOutcome("no-headers", message="malformed header from script: "
                               "end of output before the blank line that ends the headers")
            return ResponseOutcome("no-headers", message="end of script output before headers")
        return ResponseOutcome("sent", status=self.status)


def _header_end(buf: bytes | bytearray) -> tuple[int, int]:
    """Where the header block ends and the length of the blank line after it, or (-1, 0).

    The block may keep the "\r" of its last line ("\r\n\r\n" is found as "\n\r\n"):
    lines are split on "\n" and lose a trailing "\r" anyway."""
    if buf.startswith(b"\n"):
        return 0, 1
    if buf.startswith(b"\r\n"):
        return 0, 2
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 3
    return (lf, 2) if lf >= 0 else (-1, 0)
