"""Rate control: the bytes every segment may spend under a bitrate target (``-b:v``), counting the real bytes of
every coded segment and the container's per-frame bytes; or a fixed quality level (``-q``) on a monotone ladder of
(coded size, AV1 CRF) pairs. The base node (``filters.base``) turns a segment's budget into a CRF and a coded
size."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """One rung of the quality ladder: the base's coded size as a share of the display size, and its SVT-AV1 CRF."""

    scale: float
    crf: float


# -q 0 .. -q 15: the path rate and distortion take on SVT-AV1 (measured on Big Buck Bunny at 720p: at equal rate a
# larger picture at CRF 60 beats a smaller one at a finer CRF up to full size): first the picture grows at CRF 60
# (×2 in area every 1.5 steps, 1/8 → 1/1 of the side by -q 9), then the CRF gets finer (60 → 36), so quality and
# rate both grow with q.
LEVELS: tuple[Level, ...] = tuple(Level(round(min(1.0, 0.125 * 2 ** (q / 3)), 4), 60 - 4 * max(0, q - 9))
                                  for q in range(16))
DEFAULT_QUALITY = 4
BUDGET_SWING = 2.0  # a segment spends at most this many times (at least its inverse) its own share of the rate


@dataclass
class RateControl:
    """Tracks bytes spent against ``target_bps``·time; with ``target_bps`` 0 it only applies the fixed ``quality``.

    * ``level()``: the ladder rung of -q (or the default);
    * ``allowance(start, end, fixed)``: the bytes a segment's base may spend (what is earned by its end, less what
      was spent and its ``fixed`` bytes), kept within ``BUDGET_SWING`` of its own share;
    * ``threshold(base, now)``/``may_cut(now)``: ``select`` opens fewer segments when over budget.
    """

    target_bps: float = 0.0
    quality: int | None = None  # -q: a fixed level of LEVELS
    spent: int = 0
    segments: int = 0
    frame_overhead: int = 0  # container bytes counted as video for each frame after a keyframe (Matroska: 1)
    _keyframe_bytes: float = 0.0  # running mean of a key frame's base bytes

    @property
    def active(self) -> bool:
        return self.target_bps > 0

    def level(self) -> Level:
        return LEVELS[DEFAULT_QUALITY if self.quality is None else self.quality]

    def budget(self, time: float) -> float:
        """Bytes earned by ``time`` seconds."""
        return self.target_bps * max(time, 0.0) / 8

    def allowance(self, start: float, end: float, fixed: float) -> float:
        """Bytes the pixels of the segment from ``start`` to ``end`` seconds may take, after its ``fixed`` bytes."""
        share = self.budget(end) - self.budget(start) - fixed
        room = self.budget(end) - self.spent - fixed
        if share <= 0:
            return max(room, 1.0)
        return min(max(room, share / BUDGET_SWING), share * BUDGET_SWING)

    def record(self, size: int) -> None:
        """Count the bytes actually written for one segment."""
        self.spent += size
        self.segments += 1

    def note_keyframe(self, size: int) -> None:
        """Remember what key frames cost (a running mean, for the select gates)."""
        first = self._keyframe_bytes == 0.0
        self._keyframe_bytes = size if first else 0.5 * (self._keyframe_bytes + size)

    def threshold(self, base: float, now: float) -> float:
        if not self.active or self.segments == 0:
            return base
        earned = self.budget(now)
        ratio = (self.spent - earned) / max(earned, self._keyframe_bytes, 1.0)
        return base * math.exp(max(-2.0, min(2.0, 2.0 * ratio)))

    def may_cut(self, now: float) -> bool:
        if not self.active or self.segments == 0:
            return True
        return self.spent + self._keyframe_bytes <= self.budget(now) * 1.05
