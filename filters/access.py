"""Decoding for hosts that are not a file-to-file graph: :class:`PacketDecoder` takes segment packets a host demuxed
itself (GStreamer's ``matroskademux`` or the ``m3cvparse`` element, docs/media-frameworks.md) and
:class:`SeekableDecoder` gives any frame by its number (VapourSynth), decoding from the start of the segment that
covers it. Both drive the one codec core (``codec.VideoDecoder``) exactly as :class:`decoder.Decoder` does, so their
frames are the CLI's, bit for bit; :func:`to_yuv` is the CLI's RGB to YUV conversion (``color.from_rgb`` with the
sink's color description)."""
from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import numpy as np

from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.containers.base import decode_packet
from m3cvcav.bitstream.units import (ColorDescription, CorruptSegment, Segment, SequenceHeader,
                                     decode_sequence_header, frame_pts_cfr)
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.core.log import get_logger
from .color import from_rgb, output_color
from .codec import VideoDecoder, open_decoder
from .items import Frame, VideoInfo

log = get_logger(__name__)

CONTINUATION = b"\x00"  # Matroska's block for a segment's later frames (docs/bitstream.md §8): no data


def yuv_format(width: int, height: int) -> str:
    """The planar YUV format the CLI writes a picture of this size in: 4:2:0, or 4:4:4 when a side is odd."""
    return "yuv444p" if width % 2 or height % 2 else "yuv420p"


def to_yuv(frame: Frame, color: ColorDescription, pix_fmt: str | None = None) -> list[np.ndarray]:
    """The frame's planes (Y, U, V: 2-D uint8 arrays) in ``pix_fmt`` (default :func:`yuv_format`), converted as the
    CLI converts for its output (``-f rawvideo``/y4m)."""
    height, width = frame.image.shape[:2]
    vf = from_rgb(frame.image, pix_fmt or yuv_format(width, height), output_color(color))
    planes = []
    for plane in vf.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[:, :plane.width])
    return planes


class PacketDecoder:
    """Segment packets in, frames out, for a host that demuxes (a GStreamer element): ``send(packet)`` returns the
    frames finished so far (a segment's come out when the next packet is sent), ``flush()`` the rest at the end of
    the stream, ``reset()`` forgets the segment held (after a seek). Packets are the container's blocks: Matroska's
    1-byte continuation blocks are ignored, a damaged packet is concealed as the CLI conceals it. ``header`` is the
    sequence header (or its framed unit as stored, e.g. Matroska's CodecPrivate after its 40 bytes)."""

    def __init__(self, header: SequenceHeader | bytes, tags: dict[str, str] | None = None, *,
                 profile: str | None = None, engine: str = "auto", mode: str = "it2v", offload: bool = False,
                 enhance: bool = True):
        if not isinstance(header, SequenceHeader):
            header = decode_sequence_header(bytes(header))[0]
        self.header, self.tags = header, dict(tags or {})
        self.engines, self.codec = open_decoder(header, self.tags, profile=profile, engine=engine, mode=mode,
                                              offload=offload, enhance=enhance)
        self._options = dict(mode=mode, enhance=enhance)
        self.corrupt = 0  # segments concealed, over resets
        self.segments = 0
        self._seen = 0

    @property
    def info(self) -> VideoInfo:
        return VideoInfo.from_header(self.header)

    def send(self, packet: bytes | Segment | CorruptSegment) -> list[Frame]:
        if isinstance(packet, (bytes, bytearray, memoryview)):
            if bytes(packet) == CONTINUATION or not packet:
                return []
            packet = decode_packet(bytes(packet))
        self.segments += 1
        return self._count(self.codec.send(packet))

    def flush(self) -> list[Frame]:
        frames = self._count(self.codec.flush())
        self.reset()
        return frames

    def reset(self) -> None:
        self.codec = VideoDecoder(self.engines, **self._options)
        self.codec.open(self.info)
        self._seen = 0

    def _count(self, frames: list[Frame]) -> list[Frame]:
        self.corrupt += self.codec.corrupt - self._seen
        self._seen = self.codec.corrupt
        return frames

    def close(self) -> None:
        """Nothing to release (the engines are the process's shared ones); for symmetry with the readers."""


@dataclass
class SegmentEntry:
    """One segment of a stream as :class:`SeekableDecoder` indexes it: the frames it covers and their pts."""

    segment: Segment | CorruptSegment
    first_frame: int
    pts: list[int]
    vfr: bool = False

    @property
    def frame_count(self) -> int:
        return len(self.pts)


class SeekableDecoder:
    """Frame-exact random access to an m3cvc stream by frame number: ``frame(n)`` decodes from the start of the
    segment that covers frame ``n`` (each segment decodes on its own, docs/bitstream.md §6), through the segment
    after it (whose keyframe the generator may use), and keeps the last ``cache`` segments decoded. Reading in order
    decodes every segment once. The frames are those of a serial decode (``m3cvcav.open(path).frames()``); a damaged
    segment is concealed from the last frame of the one before it, as in the CLI. ``frame_count``, ``fps``,
    ``info``, ``duration(n)`` (seconds as a Fraction) describe the stream; the segments are read once, at open
    (m3cvc streams are small: kilobits a second). Thread-safe."""

    def __init__(self, src: str | os.PathLike | BinaryIO, *, cache: int = 3, profile: str | None = None,
                 engine: str = "auto", mode: str = "it2v", offload: bool = False, enhance: bool = True):
        if cache < 1:
            raise UsageError(f"cache={cache}: keep at least one decoded segment")
        reader = open_reader(src)
        try:
            self.header, self.tags = reader.header, dict(reader.tags)
            self.path = reader.path
            segments = [p if isinstance(p, CorruptSegment) else decode_packet(p) for p in reader.packets()]
        finally:
            reader.close()
        if not segments:
            raise BitstreamError(f"{self.path or 'the input'} holds no video data: the file ends before its first "
                                 "segment (truncated?)")
        self.entries = self._index(segments)
        self.frame_count = sum(e.frame_count for e in self.entries)
        if not self.frame_count:
            raise BitstreamError(f"{self.path or 'the input'} holds no frame that can be decoded")
        self._starts = [e.first_frame for e in self.entries]
        self.decoder = PacketDecoder(self.header, self.tags, profile=profile, engine=engine, mode=mode,
                                     offload=offload, enhance=enhance)
        self.cache_size = cache
        self._cache: OrderedDict[int, list[Frame]] = OrderedDict()
        self._held: int | None = None  # the segment the codec holds (sent, its frames not out yet)
        self._lock = threading.Lock()

    @property
    def info(self) -> VideoInfo:
        return VideoInfo.from_header(self.header).with_(frame_count=self.frame_count)

    @property
    def fps(self) -> Fraction:
        return Fraction(self.header.fps)

    @property
    def vfr(self) -> bool:
        """Whether any segment carries its own frame times (FRAME_PTS): durations then follow the pts."""
        return any(e.vfr for e in self.entries)

    def _index(self, segments: list[Segment | CorruptSegment]) -> list[SegmentEntry]:
        entries: list[SegmentEntry] = []
        step = max(1, frame_pts_cfr(0, 2, self.header)[1])
        first = 0
        for i, seg in enumerate(segments):
            if isinstance(seg, Segment):
                pts, vfr = seg.pts(self.header), seg.frame_pts is not None
            elif seg.first_pts is not None and seg.frame_count > 0:
                pts, vfr = frame_pts_cfr(seg.first_pts, seg.frame_count, self.header), False
            else:  # as the generator times it: from the frame after the last one to the next segment's first
                after = next((s for s in segments[i + 1:] if isinstance(s, Segment)), None)
                start = entries[-1].pts[-1] + step if entries and entries[-1].pts else 0
                count = max(0, (after.header.first_pts - start + step - 1) // step) if after is not None else 0
                pts, vfr = frame_pts_cfr(start, count, self.header), False
            entries.append(SegmentEntry(seg, first, pts, vfr))
            first += len(pts)
        return entries

    def segment_of(self, n: int) -> int:
        """The index (in stream order) of the segment that covers frame ``n``."""
        if not 0 <= n < self.frame_count:
            raise IndexError(f"frame {n} is outside 0..{self.frame_count - 1}")
        return bisect.bisect_right(self._starts, n) - 1

    def pts(self, n: int) -> int:
        entry = self.entries[self.segment_of(n)]
        return entry.pts[n - entry.first_frame]

    def duration(self, n: int) -> Fraction:
        """How long frame ``n`` shows, in seconds: 1/fps, or up to the next frame's pts in a VFR stream."""
        if not self.vfr:
            return 1 / self.fps
        if n + 1 < self.frame_count:
            return (self.pts(n + 1) - self.pts(n)) * Fraction(self.header.time_base)
        return 1 / self.fps

    def frame(self, n: int) -> Frame:
        """Frame ``n`` (0-based, in display order), as :class:`Frame` (RGB, pts in the stream's time base)."""
        k = self.segment_of(n)
        with self._lock:
            frames = self._cache.get(k)
            if frames is None:
                frames = self._decode(k)
                self._cache[k] = frames
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(k)
        return frames[n - self.entries[k].first_frame]

    def _decode(self, k: int) -> list[Frame]:
        """The frames of segment ``k``: continuing the codec when it holds ``k`` (reading in order), else starting
        at ``k``, and again from ``k - 1`` when ``k`` had to be concealed (its fade starts at the frame before)."""
        restarted = self._held != k
        if restarted:
            self._restart(k)
        before = self.decoder.corrupt
        frames = self._emit(k)
        if restarted and k > 0 and self.decoder.corrupt > before:
            self._restart(k - 1)
            self._emit(k - 1)
            frames = self._emit(k)
        expected = self.entries[k].frame_count
        if len(frames) != expected:
            log.warning("segment %d gave %d frames for the %d its header names", k, len(frames), expected)
            frames = (frames + frames[-1:] * expected)[:expected] if frames else frames
        return frames

    def _restart(self, k: int) -> None:
        self.decoder.reset()
        self.decoder.send(self.entries[k].segment)
        self._held = k

    def _emit(self, k: int) -> list[Frame]:
        """Send the segment after ``k`` (or flush at the end): the frames of ``k``, which the codec holds."""
        if k + 1 < len(self.entries):
            frames = self.decoder.send(self.entries[k + 1].segment)
            self._held = k + 1
        else:
            frames = self.decoder.flush()
            self._held = None
        return frames

    def close(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return self.frame_count

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
