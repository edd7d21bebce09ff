"""Rate control: per segment, the keyframe rate point, the refresh threshold and the motion trade-off that keep the
stream on a bitrate target (``-b:v``), counting the real bytes of every coded segment; or a fixed quality level
(``-q``) on a monotone ladder."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """One rung of the quality ladder: the keyframe rate point; ``refresh``, how much worse than its keyframe (in
    1 − SSIM) a frame's motion-compensated prediction may be before the frame becomes a new keyframe; and λ, the
    distortion one bit of motion must buy."""

    rate_point: int
    refresh: float
    lam: float
    step: int = 0  # keyframe residual quantiser step (1/4 code value); 0: no residual


# -q 0 .. -q 15: every step up spends more bits where the eye sees them (a better keyframe, more refreshes, a finer
# keyframe residual).
LEVELS: tuple[Level, ...] = tuple(Level(rp, refresh, 4e-4 * 0.75 ** i, step) for i, (rp, refresh, step) in enumerate((
    (0, 0.30, 0), (0, 0.20, 0), (1, 0.20, 0), (1, 0.14, 0), (2, 0.14, 0), (2, 0.10, 0), (3, 0.10, 0), (3, 0.09, 480),
    (3, 0.08, 300), (3, 0.07, 190), (3, 0.06, 120), (3, 0.05, 76), (3, 0.04, 48), (3, 0.03, 30), (3, 0.02, 18),
    (3, 0.012, 10))))
REFERENCE_LEVEL = 6  # the rung the rate model and inter steps are anchored on
DEFAULT_QUALITY = 4
RESIDUAL_STEPS = tuple(sorted({round(8 * 1.1 ** i) for i in range(61)}))  # 8 .. ~2400: what -b:v chooses from


@dataclass
class RateControl:
    """Tracks bytes spent against ``target_bps``·time; with ``target_bps`` 0 it only applies the fixed ``quality``.

    * ``level(now, committed)``: the ladder rung of the next segment (``tokenize`` fills each segment's keyframe
      residual up to the budget earned by its end: the fine knob).
    * ``threshold(base, now)``: the select threshold scaled up when over budget (longer segments), down when under.
    * ``may_cut(now)``/``can_refresh(now, committed)``: keyframes only when the budget can pay for one.
    """

    target_bps: float = 0.0
    quality: int | None = None  # -q: a fixed level of LEVELS
    spent: int = 0
    segments: int = 0
    frame_overhead: int = 0  # container bytes counted as video for each frame after a keyframe (Matroska: 1)
    _keyframe_bytes: float = 0.0  # running mean of a keyframe's token bytes

    _pixel_rate: float = 0.0  # pixels per second of the stream
    HORIZON = 2.0  # seconds of budget a segment's level is planned over

    @property
    def active(self) -> bool:
        return self.target_bps > 0

    def start(self, width: int, height: int, fps: float) -> None:
        self._pixel_rate = float(width * height * fps)

    def level(self, now: float = 0.0, committed: float = 0.0) -> Level:
        """The ladder rung for a segment starting at ``now``: fixed by ``quality``; under -b:v, the rung whose rate
        matches what the budget of the next ``HORIZON`` seconds leaves after the ``committed`` bytes (measured on the
        corpus: -q 6 ≈ 0.004 bits per pixel, one rung more per doubling of the rate)."""
        if not self.active:
            return LEVELS[DEFAULT_QUALITY if self.quality is None else self.quality]
        available = max(self.budget(now + self.HORIZON) - committed, 1.0)
        bpp = 8 * available / (max(self._pixel_rate, 1.0) * self.HORIZON)
        rung = REFERENCE_LEVEL + math.log2(max(bpp, 1e-9) / 0.004)
        return LEVELS[int(min(len(LEVELS) - 1, max(0, math.floor(rung))))]

    def budget(self, time: float) -> float:
        """Bytes earned by ``time`` seconds."""
        return self.target_bps * max(time, 0.0) / 8

    def record(self, size: int) -> None:
        """Count the bytes actually written for one segment."""
        self.spent += size
        self.segments += 1

    def note_keyframe(self, size: int) -> None:
        """Remember what keyframes cost (a running mean, for the refresh and select gates)."""
        first = self._keyframe_bytes == 0.0
        self._keyframe_bytes = size if first else 0.5 * (self._keyframe_bytes + size)

    def threshold(self, base: float, now: float) -> float:
        if not self.active or self.segments == 0:
            return base
        earned = self.budget(now)
        ratio = (self.spent - earned) / max(earned, self._keyframe_bytes, 1.0)
        return base * math.exp(max(-2.0, min(2.0, 2.0 * ratio)))

    def can_refresh(self, now: float, committed: float, cost: float | None = None) -> bool:
        """Under -b:v, whether the budget earned by ``now`` (with a second's slack) pays for one more keyframe (or
        a refresh of ``cost`` bytes) after the ``committed`` bytes."""
        if cost is not None:  # a refresh that only keeps the picture moving: from what is earned, no slack
            return not self.active or committed + cost <= self.budget(now)
        return not self.active or committed + self._keyframe_bytes <= self.budget(now + 1.0)

    def may_cut(self, now: float) -> bool:
        if not self.active or self.segments == 0:
            return True
        return self.spent + self._keyframe_bytes <= self.budget(now) * 1.05
