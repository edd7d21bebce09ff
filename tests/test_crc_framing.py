"""CRC32C and unit framing (docs/bitstream.md): check values, round trips, every error path, fuzz."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from m3cvcav.bitstream import crc
from m3cvcav.bitstream.framing import MAX_UNIT_PAYLOAD, RawUnit, iter_units, pack_unit, read_leb128, write_leb128
from m3cvcav.core.errors import BitstreamError


def test_crc32c_check_values():
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(b"") == 0
    assert crc.crc32c(bytes(32)) == 0x8A9136AA
    assert crc.crc32c(b"\xff" * 32) == 0x62A8AB43


@given(st.binary(max_size=300), st.integers(0, 300))
def test_crc32c_continues_and_matches_fallback(data, cut):
    cut = min(cut, len(data))
    assert crc.crc32c(data[cut:], crc.crc32c(data[:cut])) == crc.crc32c(data) == crc.crc32c_python(data)
    assert crc.crc32c(memoryview(data)[cut:], crc.crc32c_python(data[:cut])) == crc.crc32c(data)


def test_crc32c_backend_switch(monkeypatch):
    data = bytes(range(256)) * 40
    monkeypatch.setenv("M3CVC_NATIVE", "0")
    fallback = crc.crc32c(data)
    monkeypatch.delenv("M3CVC_NATIVE")
    assert crc.crc32c(data) == fallback == crc.crc32c_python(data)


@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"), (MAX_UNIT_PAYLOAD, b"\x80\x80\x80\x08"),
    ((1 << 28) - 1, b"\xff\xff\xff\x7f"),
])
def test_leb128_known_values(n, encoded):
    assert write_leb128(n) == encoded
    assert read_leb128(b"\xaa" + encoded + b"\xbb", 1) == (n, 1 + len(encoded))


def test_leb128_errors():
    with pytest.raises(BitstreamError, match="negative"):
        write_leb128(-1)
    with pytest.raises(BitstreamError, match="truncated"):
        read_leb128(b"\x80\x80", 0)
    with pytest.raises(BitstreamError, match="truncated"):
        read_leb128(b"", 0)
    with pytest.raises(BitstreamError, match="minimal"):
        read_leb128(b"\x81\x00", 0)
    with pytest.raises(BitstreamError, match="minimal"):
        read_leb128(b"\x80\x80\x00", 0)
    with pytest.raises(BitstreamError, match="longer than 4"):
        read_leb128(b"\x80\x80\x80\x80\x01", 0)
    assert read_leb128(b"\x80\x80\x80\x80\x01", 0, max_bytes=5) == (1 << 28, 5)


@given(st.integers(0, (1 << 28) - 1))
def test_leb128_round_trip(n):
    enc = write_leb128(n)
    assert len(enc) <= 4
    assert read_leb128(enc, 0) == (n, len(enc))


def test_pack_unit_layout():
    unit = pack_unit(7, b"abc")
    assert unit[:5] == b"\x07\x03abc"
    assert struct.unpack("<I", unit[5:])[0] == crc.crc32c(b"\x07\x03abc")
    with pytest.raises(BitstreamError, match="outside"):
        pack_unit(256, b"")
    with pytest.raises(BitstreamError, match="exceeds"):
        pack_unit(1, bytes(MAX_UNIT_PAYLOAD + 1))


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=200)), max_size=8))
def test_units_round_trip(units):
    blob = b"".join(pack_unit(t, p) for t, p in units)
    got = list(iter_units(memoryview(blob)))
    assert [(u.unit_type, u.payload, u.crc_ok) for u in got] == [(t, p, True) for t, p in units]
    assert sum(u.size for u in got) == len(blob)
    assert [u.offset for u in got] == [sum(got[j].size for j in range(i)) for i in range(len(got))]


def test_iter_units_offset_and_big_payload():
    big = bytes(range(256)) * 600
    blob = b"HDR!" + pack_unit(1, big) + pack_unit(2, b"")
    got = list(iter_units(blob, offset=4))
    assert got == [RawUnit(1, big, 4, 1 + 3 + len(big) + 4, True), RawUnit(2, b"", 4 + got[0].size, 6, True)]


def test_crc_mismatch_is_reported_not_raised():
    blob = bytearray(pack_unit(3, b"payload") + pack_unit(4, b"next"))
    blob[4] ^= 0x01
    got = list(iter_units(bytes(blob)))
    assert [u.crc_ok for u in got] == [False, True]
    assert got[1].payload == b"next"
    blob = bytearray(pack_unit(3, b"payload"))
    blob[-1] ^= 0x80
    assert [u.crc_ok for u in iter_units(bytes(blob))] == [False]


def test_iter_units_errors_name_the_offset():
    good = pack_unit(1, b"x")
    with pytest.raises(BitstreamError, match=f"offset {len(good)}.*truncated"):
        list(iter_units(good + pack_unit(2, b"hello")[:-1]))
    with pytest.raises(BitstreamError, match="offset 0.*limit"):
        list(iter_units(b"\x01" + write_leb128(MAX_UNIT_PAYLOAD + 1) + bytes(8)))
    with pytest.raises(BitstreamError, match="offset 1"):
        list(iter_units(b"\x01\x80"))
    with pytest.raises(BitstreamError, match="offset 1.*minimal"):
        list(iter_units(b"\x01\x80\x00" + bytes(4)))


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_only_raise_bitstream_error(data):
    try:
        for unit in iter_units(data):
            assert unit.offset + unit.size <= len(data)
            assert len(unit.payload) <= len(data)
    except BitstreamError:
        pass


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), min_size=1, max_size=4),
       st.integers(0, 10_000), st.integers(0, 255))
def test_fuzz_mutated_streams(units, where, xor):
    blob = bytearray(b"".join(pack_unit(t, p) for t, p in units))
    blob[where % len(blob)] ^= xor
    try:
        list(iter_units(bytes(blob)))
    except BitstreamError:
        pass
    cut = bytes(blob[: where % len(blob)])
    try:
        list(iter_units(cut))
    except BitstreamError:
        pass
