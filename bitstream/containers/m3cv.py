"""The ``.m3cv`` container (docs/bitstream.md §7): "M3CV", the sequence header unit, framed segment packets (a header
check byte; the payload's units carry their own CRC32C) and an optional seek index; streamable both ways (no seeking
needed to write or read)."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from m3cvcav.core.errors import BitstreamError, UnsupportedVersionError
from m3cvcav.core.log import get_logger

from ..crc import crc32c
from ..framing import iter_units, pack_unit, read_leb128, unzigzag, write_leb128, zigzag
from ..units import (BASE, SEGMENT_HEADER, CorruptSegment, Segment, SequenceHeader, decode_sequence_header,
                     encode_sequence_header, peek_segment_header)
from .base import AtomicOutput, StreamReader, StreamWriter

log = get_logger(__name__)

MAGIC = b"M3CV"
FLAG_KEY = 0x01
FLAG_INDEX = 0x80
MAX_PACKET = 1 << 26
MAX_INDEX_ENTRIES = 1 << 20
RESYNC_WINDOW = 1 << 20
MAX_SEQUENCE_HEADER = 1 << 16
_TRAILER = struct.Struct("<I")
SEEK_INDEX = 0x09  # the one unit of an index packet (a container unit: never inside a segment)
_MAX_PACKET_HEAD = 4 + 10 + 1 + 1


def pack_packet(payload: bytes, pts: int, flags: int) -> bytes:
    """One framed packet: size | pts | flags | check (low byte of the CRC32C of the three) | payload (framed units)."""
    if not 1 <= len(payload) <= MAX_PACKET:
        raise BitstreamError(f"packet of {len(payload)} bytes is outside 1..{MAX_PACKET}")
    head = write_leb128(len(payload)) + write_leb128(zigzag(pts)) + bytes((flags,))
    return head + bytes((crc32c(head) & 0xFF,)) + payload


def units_intact(payload: bytes | bytearray | memoryview) -> bool:
    """Whether ``payload`` is a run of complete units whose CRCs all match (a packet payload, §7)."""
    try:
        return all(u.crc_ok for u in iter_units(payload))
    except BitstreamError:
        return False


def base_damaged_only(payload: bytes | bytearray | memoryview) -> bool:
    """Whether ``payload`` is a run of complete units, an intact segment header first, in which only BASE units fail
    their CRC: the segment decodes up to the damage (§5.10), so the packet is read, not resynchronised past."""
    try:
        units = list(iter_units(payload))
    except BitstreamError:
        return False
    return bool(units) and units[0].unit_type == SEGMENT_HEADER and units[0].crc_ok \
        and all(u.crc_ok or u.unit_type == BASE for u in units)


class M3cvWriter(StreamWriter):
    container = "m3cv"

    def __init__(self, out: AtomicOutput, header: SequenceHeader, tags: dict[str, str] | None):
        super().__init__(out, header, tags)
        self._offset = 0
        self._index: list[tuple[int, int]] = []
        self._emit(MAGIC + encode_sequence_header(header))

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        self._offset += len(data)

    def write_packet(self, packet: bytes, segment: Segment | None = None) -> None:
        head = segment.header if segment is not None else peek_segment_header(packet)
        if head is None:
            raise BitstreamError("write_packet: the packet does not start with an intact segment header")
        self._index.append((self._offset, head.first_pts))
        self.video_bytes += len(packet)
        self._emit(pack_packet(packet, head.first_pts, FLAG_KEY))
        if self.out.tmp is None:  # a caller's stream (e.g. a pipe): hand each segment on as soon as it is written
            self.out.file.flush()

    def _finish(self) -> None:
        if not self.out.seekable or not self._index:
            return
        body = bytearray(write_leb128(len(self._index)))
        prev_off = prev_pts = 0
        for off, pts in self._index:
            body += write_leb128(off - prev_off) + write_leb128(zigzag(pts - prev_pts))
            prev_off, prev_pts = off, pts
        packet = pack_packet(pack_unit(SEEK_INDEX, bytes(body)), 0, FLAG_INDEX)
        self._emit(packet + _TRAILER.pack(len(packet)))


class _Buffer:
    """Forward-only buffered input: bytes are kept from the current packet on, never the whole stream."""

    def __init__(self, f: BinaryIO, data: bytes = b""):
        self.f, self.buf, self.base, self.eof = f, bytearray(data), 0, False

    def fill(self, n: int) -> int:
        """Try to have ``n`` bytes buffered; returns how many are."""
        while len(self.buf) < n and not self.eof:
            chunk = self.f.read(max(1 << 16, n - len(self.buf)))
            if not chunk:
                self.eof = True
            self.buf += chunk
        return len(self.buf)

    def drop(self, n: int) -> None:
        del self.buf[:n]
        self.base += n


def _parse_head(buf: bytearray, pos: int) -> tuple[int, int, int, int] | None:
    """(size, pts, flags, header length) of a packet header at ``pos`` whose check byte matches, or None."""
    try:
        size, p = read_leb128(buf, pos, 4)
        z, p = read_leb128(buf, p, 10)
    except BitstreamError:
        return None
    if not 1 <= size <= MAX_PACKET or z >= 1 << 63 or p + 1 >= len(buf) or buf[p] & 0x7E \
            or crc32c(buf[pos:p + 1]) & 0xFF != buf[p + 1]:
        return None
    return size, unzigzag(z), buf[p], p + 2 - pos


class M3cvReader(StreamReader):
    container = "m3cv"

    def __init__(self, f: BinaryIO, path: Path | None = None, prefix: bytes = b""):
        self.path, self._file, self.tags = path, f, {}
        self.video_bytes = 0
        self._buf = b = _Buffer(f, prefix)
        b.fill(4 + 1 + 4)
        if bytes(b.buf[:4]) != MAGIC:
            raise BitstreamError("not an m3cvc .m3cv stream (no M3CV magic); check the file")
        try:
            length, pos = read_leb128(b.buf, 5, 4)
            if length > MAX_SEQUENCE_HEADER:
                raise BitstreamError(f"sequence header of {length} bytes is over {MAX_SEQUENCE_HEADER}")
            b.fill(pos + length + 4)
            self.header_unit = bytes(b.buf[4:pos + length + 4])
            self.header, size = decode_sequence_header(self.header_unit)
        except UnsupportedVersionError:
            raise
        except BitstreamError as err:
            raise BitstreamError(f".m3cv file header: {err}") from None
        b.drop(4 + size)

    def _packet_at(self, pos: int, resync: bool) -> tuple[int, int, int, bytes, bool] | None:
        """(total bytes, pts, flags, payload, crc_ok) of the packet at buffer offset ``pos``; None if there is none."""
        b = self._buf
        b.fill(pos + _MAX_PACKET_HEAD)
        head = _parse_head(b.buf, pos)
        if head is None:
            return None
        size, pts, flags, hlen = head
        if resync and not flags & FLAG_INDEX and (pos + hlen >= len(b.buf) or b.buf[pos + hlen] != SEGMENT_HEADER):
            return None
        total = hlen + size
        if b.fill(pos + total) < pos + total:
            return None
        payload = bytes(b.buf[pos + hlen:pos + total])
        crc_ok = units_intact(payload)
        if resync and not crc_ok:
            return None
        return total, pts, flags, payload, crc_ok

    def _resync(self) -> int | None:
        """Buffer offset of the next intact packet within RESYNC_WINDOW, or None."""
        for pos in range(1, RESYNC_WINDOW):
            if self._buf.fill(pos + 1) <= pos:
                return None
            if self._packet_at(pos, resync=True) is not None:
                return pos
        return None

    def packets(self) -> Iterator[bytes | CorruptSegment]:
        b = self._buf
        while b.fill(1):
            found = self._packet_at(0, resync=False)
            if found is not None and (found[4] or base_damaged_only(found[3])):
                total, _, flags, payload, _ = found
                if flags & FLAG_INDEX:
                    return
                b.drop(total)
                self.video_bytes += len(payload)
                yield payload
                continue
            start = b.base
            skip = self._resync()
            if skip is None and found is None and b.eof:
                log.warning(".m3cv stream ends inside a packet at byte %d: it was cut short; "
                            "every complete segment was read", start)
                return
            if skip is None and not b.eof:
                raise BitstreamError(f".m3cv stream is damaged at byte {start}: no intact packet follows within "
                                     f"{RESYNC_WINDOW} bytes; the file is not usable past that point")
            damaged = bytes(b.buf[:skip])
            b.drop(len(damaged))
            self.video_bytes += len(damaged)
            yield self._corrupt(damaged, start)

    @staticmethod
    def _corrupt(damaged: bytes, start: int) -> CorruptSegment:
        head = _parse_head(bytearray(damaged), 0)
        # The packet header itself may be what is damaged: look for an intact segment header unit where it may start.
        inner = next((h for k in range(1, _MAX_PACKET_HEAD + 1) if (h := peek_segment_header(damaged[k:]))), None)
        reason = f"{len(damaged)} bytes at byte {start} are damaged (CRC mismatch or not a packet)"
        log.warning("corrupt segment: %s; it will be concealed", reason)
        if inner is None:
            return CorruptSegment(-1, head[1] if head else None, 0, reason)
        return CorruptSegment(inner.index, inner.first_pts, inner.frame_count, reason)

    def close(self) -> None:
        if self.path is not None:
            self._file.close()


def read_seek_index(path: str | Path) -> list[tuple[int, int]]:
    """The (file offset, pts) of every segment packet from the seek index at the end of a seekable .m3cv file."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = f.tell()
        if end < 4 + _TRAILER.size:
            raise BitstreamError(f"{path} is too short to hold a seek index")
        f.seek(end - _TRAILER.size)
        size = _TRAILER.unpack(f.read(_TRAILER.size))[0]
        if not 0 < size <= min(end - 4 - _TRAILER.size, MAX_PACKET):
            raise BitstreamError(f"{path} has no seek index (it was written to a pipe or cut short)")
        f.seek(end - _TRAILER.size - size)
        data = bytearray(f.read(size))
    head = _parse_head(data, 0)
    try:
        units = list(iter_units(data, head[3])) if head is not None and head[3] + head[0] == size else []
    except BitstreamError:
        units = []
    if len(units) != 1 or not head[2] & FLAG_INDEX or units[0].unit_type != SEEK_INDEX or not units[0].crc_ok:
        raise BitstreamError(f"{path} has no valid seek index")
    body, pos = units[0].payload, 0
    count, pos = read_leb128(body, pos, 4)
    if count > MAX_INDEX_ENTRIES:
        raise BitstreamError(f"seek index of {path} declares {count} entries, over {MAX_INDEX_ENTRIES}")
    entries, off, pts = [], 0, 0
    for _ in range(count):
        d_off, pos = read_leb128(body, pos, 5)
        z, pos = read_leb128(body, pos, 10)
        off, pts = off + d_off, pts + unzigzag(z)
        entries.append((off, pts))
    return entries
