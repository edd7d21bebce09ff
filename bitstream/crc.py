"""CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by every unit and packet (docs/bitstream.md).

Uses the native core when it is built (see ``m3cvcav.bitstream.entropy.implementation``), else a table-driven Python loop with
the same results.
"""
from __future__ import annotations

from ._native import core

_POLY = 0x82F63B78
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c_python(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C in pure Python (the fallback)."""
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in memoryview(data).cast("B"):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``value`` (the CRC of the preceding bytes, 0 to start)."""
    native = core()
    if native is None:
        return crc32c_python(data, value)
    ffi, lib = native
    view = memoryview(data).cast("B")
    return int(lib.m3cv_crc32c(value & 0xFFFFFFFF, ffi.from_buffer(view), len(view)))
