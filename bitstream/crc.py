"""CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by every unit and packet (docs/bitstream.md)."""
from __future__ import annotations

_POLY = 0x82F63B78
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes, value: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``value`` (the CRC of the preceding bytes, 0 to start)."""
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
