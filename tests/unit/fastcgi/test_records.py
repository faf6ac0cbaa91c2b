"""The FastCGI codec (cgirt.fastcgi.records): framing and name-value pairs."""

from __future__ import annotations

import pytest

from cgirt.fastcgi import records as fr


@pytest.mark.parametrize("n, encoded", [(0, b"\x00"), (127, b"\x7f"),
                                        (128, b"\x80\x00\x00\x80"),
                                        (70000, b"\x80\x01\x11\x70")])
def test_length_encoding_switches_to_four_bytes_at_128(n: int, encoded: bytes) -> None:
    assert fr.encode_length(n) == encoded


def test_pairs_round_trip_short_and_long() -> None:
    pairs = {b"A": b"1", b"LONG": b"x" * 300, b"E": b"", b"N" * 200: b"v"}
    stream = b"".join(fr.encode_pair(k, v) for k, v in pairs.items())
    assert fr.decode_pairs(stream) == pairs


def test_truncated_pairs_are_a_protocol_error() -> None:
    with pytest.raises(fr.ProtocolError):
        fr.decode_pairs(fr.encode_pair(b"NAME", b"value")[:-1])


def test_records_are_padded_to_eight_bytes() -> None:
    data = fr.encode_record(fr.STDIN, 1, b"abc")
    version, rtype, request_id, length, padding = fr.HEADER.unpack(data[:8])
    assert (version, rtype, request_id, length, padding) == (1, fr.STDIN, 1, 3, 5)
    assert len(data) % 8 == 0


def test_record_content_is_limited() -> None:
    with pytest.raises(ValueError):
        fr.encode_record(fr.STDIN, 1, bytes(0x10000))


def test_params_longer_than_a_record_span_several_and_end_empty() -> None:
    records, rest = fr.split_records(fr.params_records(1, [(b"BIG", b"x" * 100_000), (b"SMALL", b"y")]))
    assert rest == b"" and [len(c) for _, _, c in records][-1] == 0 and len(records) == 3
    assert {t for t, _, _ in records} == {fr.PARAMS}
    stream = b"".join(c for _, _, c in records)
    assert fr.decode_pairs(stream) == {b"BIG": b"x" * 100_000, b"SMALL": b"y"}



def test_pairs_of_any_bytes_round_trip_exactly() -> None:
    # decode_pairs is decode_params undone; non-UTF-8 bytes must survive the detour via str.
    pairs = {b"\xff\xfeNAME": b"caf\xc3\xa9 \xe9", b"\xed\xa0\x80": b"\x80"}
    assert fr.decode_pairs(fr.encode_pairs(pairs.items())) == pairs


def test_stream_records_need_no_padding_when_split() -> None:
    data = bytes(range(256)) * 600  # 153600 bytes: three records
    records, rest = fr.split_records(fr.stream_records(fr.STDOUT, 3, data))
    assert rest == b""
    assert [len(c) for _, _, c in records] == [fr.STREAM_CHUNK, fr.STREAM_CHUNK, len(data) - 2 * fr.STREAM_CHUNK]
    assert b"".join(c for _, _, c in records) == data and {r for _, r, _ in records} == {3}


def test_a_whole_request_reads_back_as_a_web_server_sends_it() -> None:
    raw = fr.request_records(7, {"REQUEST_METHOD": "POST", "X": "\udcff"}, b"body", keep_conn=True)
    records, rest = fr.split_records(raw + raw[:11])
    assert rest == raw[:11]  # an incomplete record is left for the next read
    assert [t for t, _, _ in records] == [fr.BEGIN_REQUEST, fr.PARAMS, fr.PARAMS, fr.STDIN, fr.STDIN]
    assert fr.BEGIN_BODY.unpack(records[0][2]) == (fr.RESPONDER, fr.KEEP_CONN)
    params: dict[str, str] = {}
    fr.decode_params(records[1][2], params)
    assert params == {"REQUEST_METHOD": "POST", "X": "\udcff"}
    assert records[3][2] == b"body" and records[4][2] == b""


def test_end_records_end_the_stream_then_the_request() -> None:
    records, rest = fr.split_records(fr.end_records(5, 3))
    assert rest == b"" and [(t, r) for t, r, _ in records] == [(fr.STDOUT, 5), (fr.END_REQUEST, 5)]
    assert fr.END_BODY.unpack(records[1][2]) == (3, fr.REQUEST_COMPLETE)


@pytest.mark.parametrize("pairs", [
    {b"A": b"1", b"B" * 127: b"c" * 127},  # one-byte lengths only
    {b"A" * 128: b"1", b"B": b"c" * 128, b"C" * 200: b"d" * 300, b"E": b""},  # four-byte ones too
    {b"": b""},
])
def test_ascii_params_decode_with_either_length_form(pairs: dict[bytes, bytes]) -> None:
    params: dict[str, str] = {}
    fr.decode_params(fr.encode_pairs(pairs.items()), params)
    assert params == {k.decode(): v.decode() for k, v in pairs.items()}


@pytest.mark.parametrize("cut", [1, 2, 5, 8])
def test_a_pair_running_past_its_record_is_a_protocol_error(cut: int) -> None:
    stream = fr.encode_pair(b"FIRST", b"1") + fr.encode_pair(b"NAME", b"value" * 30)
    with pytest.raises(fr.ProtocolError):
        fr.decode_params(stream[:-cut], {})
    with pytest.raises(fr.ProtocolError):  # the same, not ASCII
        fr.decode_params(fr.encode_pair(b"\xe9", b"1") + stream[:-cut], {})
