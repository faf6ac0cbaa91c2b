"""The FastCGI codec: record framing and name-value pairs, both ways (FastCGI 1.0, sections 3 to 5).

The one place that knows the wire format. The runner's connection parses records in place
with `HEADER` and `decode_params`; the development front end's client, the tests' raw
client and the benchmarks build requests with the encoders here. Encoders check only what
the format cannot express (a record longer than 65535 bytes), so a test can still frame a
malformed request on purpose: an unknown type, a lying `HEADER`, pairs cut short.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

VERSION_1 = 1

BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

NULL_REQUEST_ID = 0

RESPONDER = 1
KEEP_CONN = 1  # FCGI_BEGIN_REQUEST flag

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

HEADER = struct.Struct("!BBHHBx")  # version, type, request id, content length, padding length
HEADER_LEN = HEADER.size
BEGIN_BODY = struct.Struct("!HB5x")  # role, flags
END_BODY = struct.Struct("!LB3x")  # application status, protocol status
MAX_CONTENT = 0xFFFF
STREAM_CHUNK = 65528  # the largest multiple of 8 below MAX_CONTENT: its records need no padding

_LENGTH = struct.Struct("!L")
_PADDING = tuple(b"\0" * n for n in range(8))


class ProtocolError(Exception):
    """Bytes that are not FastCGI: a pair or record cut short, a wrong version or length."""


# -- records ---------------------------------------------------------------------------


def encode_record(rtype: int, request_id: int, content: bytes | bytearray | memoryview = b"") -> bytes:
    """One record, padded to a multiple of 8 bytes as the specification recommends."""
    length = len(content)
    if length > MAX_CONTENT:
        raise ValueError("a record holds at most 65535 bytes")
    padding = -length & 7
    return b"".join((HEADER.pack(VERSION_1, rtype, request_id, length, padding), content,
                     _PADDING[padding]))


def stream_records(rtype: int, request_id: int, data: bytes | bytearray | memoryview) -> bytes:
    """`data` as records of a stream (STDIN, STDOUT...), without the empty one that ends it."""
    length = len(data)
    if length <= STREAM_CHUNK:
        padding = -length & 7
        return b"".join((HEADER.pack(VERSION_1, rtype, request_id, length, padding),
                         data, _PADDING[padding]))
    view = memoryview(data)
    return b"".join(stream_records(rtype, request_id, view[start : start + STREAM_CHUNK])
                    for start in range(0, length, STREAM_CHUNK))


def begin_record(request_id: int, keep_conn: bool = False, role: int = RESPONDER) -> bytes:
    return encode_record(BEGIN_REQUEST, request_id,
                         BEGIN_BODY.pack(role, KEEP_CONN if keep_conn else 0))


def end_records(request_id: int, app_status: int, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    """The empty FCGI_STDOUT that ends the response stream, then FCGI_END_REQUEST."""
    return (HEADER.pack(VERSION_1, STDOUT, request_id, 0, 0)
            + HEADER.pack(VERSION_1, END_REQUEST, request_id, END_BODY.size, 0)
            + END_BODY.pack(app_status, protocol_status))


def params_records(request_id: int, params: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """FCGI_PARAMS records for the pairs, and the empty one ending the stream."""
    pairs = params.items() if isinstance(params, Mapping) else params
    return (stream_records(PARAMS, request_id, encode_pairs(pairs))
            + encode_record(PARAMS, request_id))


def request_records(request_id: int, params: Mapping[str, str], body: bytes = b"",
                    keep_conn: bool = False) -> bytes:
    """A whole FCGI_RESPONDER request as a web server sends it: begin, params, stdin.
    Values are encoded as a process environment is (UTF-8, undecodable bytes kept)."""
    pairs = ((k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
             for k, v in params.items())
    return (begin_record(request_id, keep_conn) + params_records(request_id, pairs)
            + (stream_records(STDIN, request_id, body) if body else b"") + encode_record(STDIN, request_id))


def split_records(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """The whole records at the start of `data` as (type, request id, content), and the
    bytes after them (an incomplete record). The version byte is not checked."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while len(data) - pos >= HEADER_LEN:
        _, rtype, request_id, length, padding = HEADER.unpack_from(data, pos)
        end = pos + HEADER_LEN + length
        if len(data) < end + padding:
            break
        out.append((rtype, request_id, data[pos + HEADER_LEN : end]))
        pos = end + padding
    return out, data[pos:]


# -- name-value pairs ------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > 0x7FFFFFFF:
        raise ValueError("a name or value is longer than 2**31 - 1 bytes")
    return _LENGTH.pack(n | 0x80000000)


def encode_pair(name: bytes, value: bytes) -> bytes:
    return encode_length(len(name)) + encode_length(len(value)) + name + value


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_pair(name, value) for name, value in pairs)


def decode_params(data: bytes, params: dict[str, str]) -> None:
    """FastCGI name-value pairs into `params`, decoded as Python decodes a real process
    environment, so a script sees the same str under cgirt as under classic CGI.

    On the runner's hot path (about thirty pairs arrive with every request): one loop, no
    call per pair."""
    try:
        _decode_params(data, params)
    except (IndexError, struct.error):
        raise ProtocolError("a truncated FastCGI name-value pair") from None


def _decode_params(data: bytes, params: dict[str, str]) -> None:
    # One decode of the whole record as Latin-1 (one character per byte, so slices line up
    # with byte offsets) gives every name and value that is ASCII, which is all of them in
    # nearly every request; only a pair with other bytes is decoded again, from its bytes.
    # (A length of 128 or more is not ASCII itself, so the record's own isascii() says
    # little once a request carries a long header.)
    text = data.decode("latin-1")
    plain = data.isascii()
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos]
        v = data[pos + 1]
        if (n | v) & 0x80:  # a length of four bytes
            if n & 0x80:
                n = _LENGTH.unpack_from(data, pos)[0] & 0x7FFFFFFF
                pos += 4
            else:
                pos += 1
            v = data[pos]
            if v & 0x80:
                v = _LENGTH.unpack_from(data, pos)[0] & 0x7FFFFFFF
                pos += 4
            else:
                pos += 1
        else:
            pos += 2
        mid = pos + n
        pos = mid + v
        name = text[mid - n : mid]
        value = text[mid:pos]
        if not plain and not (name.isascii() and value.isascii()):
            name = data[mid - n : mid].decode("utf-8", "surrogateescape")
            value = data[mid:pos].decode("utf-8", "surrogateescape")
        params[name] = value
    # Checked once, not per pair: offsets only grow, so a pair that ran past the record's
    # end leaves `pos` past it (the connection is dropped, with its half-decoded params).
    if pos != end:
        raise ProtocolError("a FastCGI name-value pair longer than its record")


def decode_pairs(data: bytes) -> dict[bytes, bytes]:
    """The pairs as bytes (FCGI_GET_VALUES and its result). The str decoding of
    `decode_params` is undone exactly: surrogateescape round-trips any bytes."""
    decoded: dict[str, str] = {}
    decode_params(data, decoded)
    return {k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
            for k, v in decoded.items()}
