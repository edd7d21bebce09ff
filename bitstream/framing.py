"""Normative unit framing (docs/bitstream.md): ``type u8 | length LEB128 | payload | crc32c u32 LE``.

The length is an unsigned LEB128, minimally encoded, at most 4 bytes and at most ``MAX_UNIT_PAYLOAD``. The CRC32C covers
the type byte, the length bytes and the payload.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from m3cvcav.core.errors import BitstreamError

from .crc import crc32c

MAX_UNIT_PAYLOAD = 1 << 24
_CRC = struct.Struct("<I")


def write_leb128(n: int) -> bytes:
    """Minimal unsigned LEB128 encoding of ``n`` (≥ 0)."""
    if n < 0:
        raise BitstreamError(f"LEB128 value {n} is negative; only unsigned values can be encoded")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def zigzag(value: int) -> int:
    """Signed to unsigned for LEB128 fields: 0, -1, 1, -2, … → 0, 1, 2, 3, …"""
    return (value << 1) ^ (value >> 63) if value < 0 else value << 1


def unzigzag(z: int) -> int:
    """The inverse of ``zigzag``."""
    return (z >> 1) ^ -(z & 1)


def read_leb128(data: bytes | memoryview, pos: int, max_bytes: int = 4) -> tuple[int, int]:
    """Read a minimal unsigned LEB128 of at most ``max_bytes`` bytes at ``pos``; returns (value, new pos)."""
    value = 0
    end = len(data)
    for i in range(max_bytes):
        if pos + i >= end:
            raise BitstreamError(f"LEB128 at offset {pos} is truncated (data ends at {end}); the stream is cut short")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"LEB128 at offset {pos} is not minimally encoded; the stream is corrupt")
            return value, pos + i + 1
    raise BitstreamError(f"LEB128 at offset {pos} is longer than {max_bytes} bytes; the stream is corrupt")


def pack_unit(unit_type: int, payload: bytes) -> bytes:
    """Frame ``payload`` as one unit of type ``unit_type`` (0..255)."""
    if not 0 <= unit_type <= 0xFF:
        raise BitstreamError(f"unit type {unit_type} is outside 0..255")
    if len(payload) > MAX_UNIT_PAYLOAD:
        raise BitstreamError(f"unit payload of {len(payload)} bytes exceeds the {MAX_UNIT_PAYLOAD}-byte limit; split it")
    head = bytes((unit_type,)) + write_leb128(len(payload))
    return head + bytes(payload) + _CRC.pack(crc32c(payload, crc32c(head)))


@dataclass(frozen=True)
class RawUnit:
    """One framed unit as found in a stream: ``offset`` of its type byte, ``size`` of the whole unit incl. CRC."""

    unit_type: int
    payload: bytes
    offset: int
    size: int
    crc_ok: bool


def iter_units(data: bytes | memoryview, offset: int = 0) -> Iterator[RawUnit]:
    """Walk the units of ``data`` from ``offset`` to its end; CRC mismatches yield ``crc_ok=False``."""
    view = memoryview(data).cast("B")
    end = len(view)
    pos = offset
    while pos < end:
        start = pos
        unit_type = view[pos]
        length, pos = read_leb128(view, pos + 1)
        if length > MAX_UNIT_PAYLOAD:
            raise BitstreamError(
                f"unit at offset {start} declares {length} payload bytes, over the {MAX_UNIT_PAYLOAD}-byte limit; "
                "the stream is corrupt")
        if pos + length + 4 > end:
            raise BitstreamError(
                f"unit at offset {start} declares {length} payload bytes but the data ends at {end}; "
                "the stream is truncated")
        payload = view[pos:pos + length]
        stored = _CRC.unpack_from(view, pos + length)[0]
        crc_ok = crc32c(payload, crc32c(view[start:pos])) == stored
        pos += length + 4
        yield RawUnit(unit_type, bytes(payload), start, pos - start, crc_ok)
