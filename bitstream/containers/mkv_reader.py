"""Matroska reader for m3cvc streams: PyAV demuxes the packets; the sequence header comes from the video track's
CodecPrivate (after its 40-byte BITMAPINFOHEADER), which PyAV does not expose for a stream without a decoder, so the
Tracks element is located with a small bounded EBML scan."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from m3cvcav.core.errors import BitstreamError
from m3cvcav.core.log import get_logger

from ..units import CorruptSegment, decode_sequence_header
from . import ebml as E
from .base import StreamReader

log = get_logger(__name__)

MAX_TRACKS_BYTES = 1 << 20
MAX_SCAN_ELEMENTS = 4096
_MASTERS_TO_ENTER = {E.SEGMENT, E.TRACKS, E.TRACK_ENTRY}


def _read_vint(f: BinaryIO, keep_marker: bool) -> tuple[int, int] | None:
    first = f.read(1)
    if not first:
        return None
    b = first[0]
    width = 1
    while width <= 8 and not b & (0x80 >> (width - 1)):
        width += 1
    if width > 8:
        raise BitstreamError("invalid EBML variable-length integer; the Matroska file is corrupt")
    rest = f.read(width - 1)
    if len(rest) != width - 1:
        return None
    value = int.from_bytes(first + rest, "big")
    if not keep_marker:
        value &= (1 << (7 * width)) - 1
        if value == (1 << (7 * width)) - 1:
            value = -1  # unknown size
    return value, width


def find_codec_private(f: BinaryIO) -> tuple[int, bytes]:
    """(position among TrackEntries, CodecPrivate) of the first track with CodecID V_MS/VFW/FOURCC and FourCC M3CV."""
    file_size = f.seek(0, 2)
    f.seek(0)
    track_pos = -1
    codec_id: bytes | None = None
    private: bytes | None = None
    end_stack: list[int] = []
    for _ in range(MAX_SCAN_ELEMENTS):
        while end_stack and f.tell() >= end_stack[-1]:
            end_stack.pop()
        head = _read_vint(f, keep_marker=True)
        size = _read_vint(f, keep_marker=False) if head else None
        if head is None or size is None:
            break
        element_id, size = head[0], size[0]
        if element_id in _MASTERS_TO_ENTER:
            if element_id == E.TRACK_ENTRY:
                track_pos += 1
                codec_id = private = None
            if size >= 0:
                end_stack.append(f.tell() + size)
            continue
        if element_id == E.CLUSTER or size < 0:
            break
        if element_id in (E.CODEC_ID, E.CODEC_PRIVATE) and track_pos >= 0:
            if size > MAX_TRACKS_BYTES:
                raise BitstreamError(f"Matroska track element of {size} bytes is over {MAX_TRACKS_BYTES}; corrupt file")
            data = f.read(size)
            if element_id == E.CODEC_ID:
                codec_id = data.rstrip(b"\x00")
            else:
                private = data
            if codec_id == b"V_MS/VFW/FOURCC" and private is not None and private[16:20] == b"M3CV":
                return track_pos, private
            continue
        if f.tell() + size > file_size:
            break
        f.seek(size, 1)
    raise BitstreamError("this Matroska file has no m3cvc video track (V_MS/VFW/FOURCC with FourCC M3CV)")


class MkvReader(StreamReader):
    container = "matroska"

    def __init__(self, f: BinaryIO, path: Path | None = None, prefix: bytes = b""):
        import av

        self.path = path
        if path is None:  # a stream: Matroska needs random access for its header, so it is read into memory
            f = io.BytesIO(prefix + f.read())
        self._file = f
        track_pos, private = find_codec_private(f)
        # The sequence header follows the 40-byte header; biSize is not used (FFmpeg writes 40 + extra bytes there).
        self.header, size = decode_sequence_header(private[40:])
        self.header_unit = private[40:40 + size]
        f.seek(0)
        try:
            self._av = av.open(str(path) if path is not None else f, "r", format="matroska",
                               metadata_errors="replace")  # tags that are not UTF-8 must not stop reading
        except av.FFmpegError as err:
            raise BitstreamError(f"PyAV cannot demux this Matroska file: {err}") from None
        streams = self._av.streams
        if track_pos >= len(streams) or streams[track_pos].type != "video":
            self._av.close()
            raise BitstreamError("the m3cvc track is not among the streams FFmpeg demuxes; the file is corrupt")
        self._video = streams[track_pos]
        self.tags = {str(k): str(v) for k, v in self._av.metadata.items()}
        self.video_bytes = 0
        self.track_bytes: dict[str, int] = {}
        self.has_audio = bool(streams.audio)

    def packets(self) -> Iterator[bytes | CorruptSegment]:
        """The segment packets; ``track_bytes`` sums every track's packets on the way (video: what ffprobe sums)."""
        import av

        try:
            for packet in self._av.demux():
                if packet.size == 0:
                    continue
                kind = packet.stream.type
                self.track_bytes[kind] = self.track_bytes.get(kind, 0) + packet.size
                if packet.stream.index != self._video.index:
                    continue
                self.video_bytes += packet.size
                data = bytes(packet)
                if data != b"\x00":  # every block but the continuation marker is a segment packet (key flag or not)
                    yield data
        except av.FFmpegError as err:
            log.warning("Matroska demuxing stopped early (%s): the file is damaged or cut short; "
                        "every complete segment was read", err)

    def close(self) -> None:
        self._av.close()
        self._file.close()
