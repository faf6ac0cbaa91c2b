"""The runner's inline FastCGI name-value decoder (cgirt.fastcgi.records) agrees with flup's decode_pair."""

from __future__ import annotations

import pytest
from flup.server import fcgi_base as fb

from cgirt.fastcgi.records import ProtocolError, decode_params

PAIRS = [
    (b"QUERY_STRING", b"a=1&b=2"),
    (b"EMPTY", b""),
    (b"N" * 127, b"v" * 128),  # the one-byte / four-byte length boundary
    (b"LONG", b"x" * 70000),
    (b"\xff\xfeNAME", b"caf\xc3\xa9 \xe9"),  # undecodable bytes survive as surrogates
]


def _flup(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data):
        pos, (name, value) = fb.decode_pair(data, pos)
        out[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return out


@pytest.mark.parametrize("pairs", [PAIRS, PAIRS[:4]], ids=["with non-ASCII bytes", "ASCII only"])
def test_same_as_flup(pairs: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(fb.encode_pair(n, v) for n, v in pairs)
    params: dict[str, str] = {}
    decode_params(data, params)
    assert params == _flup(data)
    assert len(params) == len(pairs)
    if len(pairs) == len(PAIRS):
        assert params["\udcff\udcfeNAME"] == "café \udce9"


@pytest.mark.parametrize("cut", [1, 5, 100])
def test_truncated_is_a_protocol_error(cut: int) -> None:
    data = b"".join(fb.encode_pair(n, v) for n, v in PAIRS[:3])
    with pytest.raises(ProtocolError):
        decode_params(data[:-cut], {})
