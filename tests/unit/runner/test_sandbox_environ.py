"""The request's environment as the process sees it: os.environ's bytes and the C array."""

from __future__ import annotations

import ctypes

import pytest

from cgirt.runner import sandbox
from cgirt.runner.sandbox import c_environment, encode_environment


def _c_strings(pointers: "ctypes.Array[ctypes.c_char] | object") -> list[bytes]:
    out = []
    for address in pointers:  # type: ignore[attr-defined]
        if address == 0:
            break
        out.append(ctypes.string_at(address))
    return out


@pytest.mark.parametrize("env", [
    {},
    {"REQUEST_METHOD": "GET", "QUERY_STRING": "", "HTTP_X": "é ü"},
    {"PATH_INFO": "/a\udcffb", "": "empty name"},  # undecodable bytes come back as they came
    {"HTTP_X": "a\x00b", "Y": "1"},  # a NUL: the split cannot be trusted, one by one
])
@pytest.mark.parametrize("argz", [True, False], ids=["argz_extract", "python"])
def test_encoded_as_python_encodes_an_environment(env: dict[str, str], argz: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # glibc's argz_extract builds the pointers when there is one; Python does elsewhere.
    assert sandbox._argz_extract is not None  # this glibc has it: both ways are tested
    if not argz:
        monkeypatch.setattr(sandbox, "_argz_extract", None)
    encoded, (blob, pointers) = encode_environment(env)
    assert encoded == {k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape")
                       for k, v in env.items()}
    assert list(encoded) == [k.encode("utf-8", "surrogateescape") for k in env]  # order kept
    # What C code reads (a NUL ends a C string, as putenv would have refused it).
    assert _c_strings(pointers) == [(k + b"=" + v).split(b"\0")[0] for k, v in encoded.items()]
    assert pointers[-1] == 0
    assert blob.endswith(b"\0")


def test_c_environment_points_into_its_own_buffer() -> None:
    blob, pointers = c_environment({b"A": b"1", b"BB": b"22"})
    assert _c_strings(pointers) == [b"A=1", b"BB=22"]
    assert pointers[0] == ctypes.cast(blob, ctypes.c_void_p).value


def test_the_same_names_again_get_their_own_values() -> None:
    """The second request with a web server's names takes their kept layout: only the values
    are its own, a name with a % in it included (the layout is a format string)."""
    first = {"REQUEST_METHOD": "GET", "X%sY": "%s", "QUERY_STRING": "a=1"}
    second = {"REQUEST_METHOD": "POST", "X%sY": "%d%%", "QUERY_STRING": "b=é"}
    encode_environment(first)
    assert "\0".join(first) in sandbox._LAYOUTS  # kept: the next call takes it
    encoded, (_, pointers) = encode_environment(second)
    assert encoded == {b"REQUEST_METHOD": b"POST", b"X%sY": b"%d%%", b"QUERY_STRING": "b=é".encode()}
    assert _c_strings(pointers) == [b"REQUEST_METHOD=POST", b"X%sY=%d%%", "QUERY_STRING=b=é".encode()]
    # A NUL in a value: one by one, even with the names' layout kept.
    encoded, (_, pointers) = encode_environment({**second, "QUERY_STRING": "a\0b"})
    assert encoded[b"QUERY_STRING"] == b"a\0b"
    assert _c_strings(pointers) == [b"REQUEST_METHOD=POST", b"X%sY=%d%%", b"QUERY_STRING=a"]
