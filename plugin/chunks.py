"""Chunked encoding, the parts that touch frames and bytes: a cheap scene-cut detector, the chunk plan (frame-exact,
bounded lengths), and renumbering of a chunk's coded segments into the stitched stream.

The plan depends only on the decoded input and the two bounds, never on the workers: frames are read in order and a
chunk closes at the first detected cut once it holds ``min_frames``, or at ``max_frames`` (Av1an's model).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import cv2
import numpy as np

from m3cvcav.bitstream.framing import iter_units
from m3cvcav.bitstream.units import (FRAME_PTS, SCENE_CUT, SEGMENT_HEADER, Segment, SegmentHeader, decode_segment,
                                     encode_segment, peek_segment_header)
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.filters.items import Frame

THUMB = (64, 36)  # width, height of the grey thumbnail the cut detector compares
HIST_CUT = 0.4  # histogram distance (half L1, 0..1) between consecutive thumbnails above which a cut is possible
PIXEL_CUT = 0.08  # and mean absolute thumbnail difference (0..1) above which it is one
DEFAULT_MIN_SECONDS = 1.0
DEFAULT_MAX_SECONDS = 10.0


class CutDetector:
    """Scene cuts from consecutive frames alone: a 32-bin luma histogram distance and a mean absolute difference of
    64×36 grey thumbnails, both over a threshold (a flash or fast motion moves one, a cut moves both). Integer-exact
    OpenCV ops on uint8, so the same input gives the same cuts on every machine."""

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, image: np.ndarray) -> bool:
        """True when ``image`` starts a new scene (never for the first frame)."""
        grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), THUMB, interpolation=cv2.INTER_AREA)
        hist = np.bincount(grey.reshape(-1) >> 3, minlength=32).astype(np.int64)
        prev, self._prev = self._prev, (grey, hist)
        if prev is None:
            return False
        hist_distance = np.abs(hist - prev[1]).sum() / (2 * grey.size)
        pixel_distance = np.abs(grey.astype(np.int16) - prev[0]).mean() / 255
        return bool(hist_distance > HIST_CUT and pixel_distance > PIXEL_CUT)


@dataclass
class Chunk:
    """Frames ``start .. start + len(pts) - 1`` of the (filtered) input: RGB images stacked (n, H, W, 3) and their
    pts in the input's time base; ``cut`` when a scene cut opens it."""

    index: int
    start: int
    images: np.ndarray
    pts: list[int]
    time_base: Fraction
    cut: bool = False

    @property
    def frames(self) -> int:
        return len(self.pts)

    def digest(self, options: str) -> str:
        """sha256 of the encoder options, the pts and every pixel: what a resumed job checks a stored chunk against."""
        h = hashlib.sha256(options.encode())
        h.update(np.asarray(self.pts, np.int64).tobytes())
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).data)
        return h.hexdigest()


@dataclass
class Bounds:
    """Chunk length bounds in frames; 0 means the default (1 s minimum, 10 s maximum, at the input's frame rate)."""

    min_frames: int = 0
    max_frames: int = 0
    fps: Fraction = field(default=Fraction(25))

    def resolved(self) -> tuple[int, int]:
        lo = self.min_frames or max(1, round(self.fps * Fraction(DEFAULT_MIN_SECONDS)))
        if not self.min_frames and self.max_frames:
            lo = min(lo, self.max_frames)  # a short -chunk_max alone lowers the default minimum with it
        hi = self.max_frames or max(lo, round(self.fps * Fraction(DEFAULT_MAX_SECONDS)))
        if lo < 1 or hi < lo:
            raise UsageError(f"-chunk_min {lo} / -chunk_max {hi}: give 1 ≤ min ≤ max frames (0: the default)")
        return lo, hi


def plan(frames: Iterable[Frame], bounds: Bounds) -> Iterator[Chunk]:
    """Cut ``frames`` into chunks: at a scene cut once the open chunk holds ``min`` frames, else at ``max`` frames.
    Streams: at most one chunk of frames is held."""
    lo, hi = bounds.resolved()
    detect = CutDetector()
    images: list[np.ndarray] = []
    pts: list[int] = []
    index = start = 0
    time_base = Fraction(1)
    cut_opened = False
    for n, frame in enumerate(frames):
        cut = detect(frame.image)
        if images and ((cut and len(images) >= lo) or len(images) >= hi):
            yield Chunk(index, start, np.stack(images), pts, time_base, cut_opened)
            index, start, images, pts, cut_opened = index + 1, n, [], [], cut
        images.append(frame.image)
        pts.append(frame.pts)
        time_base = frame.time_base
    if images:
        yield Chunk(index, start, np.stack(images), pts, time_base, cut_opened)


def packet_frames(packet: bytes) -> int:
    """Frames of one coded segment packet (from its header unit)."""
    head = peek_segment_header(packet)
    if head is None:
        raise BitstreamError("a chunk's segment packet has no intact segment header; the chunk is corrupt")
    return head.frame_count


def renumber(packet: bytes, index: int, pts_shift: int, scene_cut: bool | None = None) -> bytes:
    """The packet with its segment index set to ``index``, its timestamps moved by ``pts_shift`` and (when given) its
    scene-cut flag set or cleared; the header (and FRAME_PTS) units are rewritten, every other unit kept byte for
    byte."""
    units = list(iter_units(packet))
    if not units or units[0].unit_type != SEGMENT_HEADER or not all(u.crc_ok for u in units):
        raise BitstreamError("a chunk's segment packet is damaged (bad unit CRC or no header); the chunk is corrupt")
    head = peek_segment_header(packet)
    flags = head.flags if scene_cut is None else (head.flags | SCENE_CUT if scene_cut else head.flags & ~SCENE_CUT)
    new_head = SegmentHeader(index, head.first_pts + pts_shift, head.frame_count, head.keyframe_pos, flags)
    out = [encode_segment(Segment(new_head))]
    for unit in units[1:]:
        raw = packet[unit.offset:unit.offset + unit.size]
        if unit.unit_type == FRAME_PTS:
            pts = decode_segment(packet[:units[0].size] + raw).frame_pts or []
            raw = encode_segment(Segment(new_head, frame_pts=[p + pts_shift for p in pts]))[len(out[0]):]
        out.append(raw)
    return b"".join(out)
