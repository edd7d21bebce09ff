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


# -q 0 .. -q 11: every step up spends more bits where the eye sees them (a better keyframe, or more refreshes).
LEVELS: tuple[Level, ...] = tuple(Level(rp, refresh, 4e-4 * 0.7 ** i) for i, (rp, refresh) in enumerate((
    (0, 0.30), (0, 0.20), (1, 0.20), (1, 0.14), (2, 0.14), (2, 0.10), (3, 0.10), (3, 0.07), (3, 0.05), (3, 0.035),
    (3, 0.025), (3, 0.015))))
DEFAULT_LEVEL = 6


@dataclass
class RateControl:
    """Tracks bytes spent against ``target_bps``·time; with ``target_bps`` 0 it only applies the fixed ``rate_point``.

    * ``choose(sizes, end_time)``: the largest candidate whose bytes keep the running total within the budget earned up
      to ``end_time`` (else the smallest), so each segment gets its own time's share plus what earlier ones left.
    * ``threshold(base, now)``: the select threshold scaled up when over budget (longer segments), down when under.
    * ``may_cut(now)``/``must_cut(now, since)``: keyframes only when the budget can pay for the cheapest one; a new one
      when the unspent budget would pay for the dearest one (static scenes at high rates).
    """

    target_bps: float = 0.0
    quality: int | None = None  # -q: a fixed level of LEVELS
    spent: int = 0
    segments: int = 0
    _cheapest: float = 0.0
    _dearest: float = 0.0

    _level: float = float(DEFAULT_LEVEL)

    @property
    def active(self) -> bool:
        return self.target_bps > 0

    def level(self) -> Level:
        """The ladder rung for the next segment: fixed by ``quality``, else steered by the budget."""
        if not self.active:
            return LEVELS[DEFAULT_LEVEL if self.quality is None else self.quality]
        return LEVELS[int(round(self._level))]

    def steer(self, committed: float, end_time: float) -> None:
        """After a segment is coded: move along the ladder by how far ``committed`` bytes are from the budget earned
        by ``end_time`` (over budget: down, fewer refreshes; under: up)."""
        if not self.active or end_time <= 0:
            return
        ratio = max(committed, 1.0) / max(self.budget(end_time), 1.0)
        self._level = min(len(LEVELS) - 1.0, max(0.0, self._level - max(-2.0, min(2.0, 3.0 * math.log2(ratio)))))

    def start(self, width: int, height: int, fps: float) -> None:
        """First rung from the target's bits per pixel (measured ladder: level ≈ 3.2·log2(bpp·1e4) − 2)."""
        if self.active:
            bpp = self.target_bps / max(width * height * fps, 1.0)
            self._level = min(len(LEVELS) - 1.0, max(0.0, 3.2 * math.log2(max(bpp * 1e4, 1e-3)) - 2.0))

    def budget(self, time: float) -> float:
        """Bytes earned by ``time`` seconds."""
        return self.target_bps * max(time, 0.0) / 8

    def choose(self, sizes: dict[int, int], end_time: float) -> int:
        """Pick a rate point from {rate point: coded bytes of this segment at it}."""
        if not self.active:
            wanted = self.level().rate_point
            return max((rp for rp in sizes if rp <= wanted), default=min(sizes))
        allowed = self.budget(end_time) - self.spent
        fitting = [rp for rp, size in sizes.items() if size <= allowed]
        return max(fitting) if fitting else min(sizes, key=sizes.get)

    def record(self, size: int) -> None:
        """Count the bytes actually written for one segment."""
        self.spent += size
        self.segments += 1

    def note_keyframes(self, sizes: list[int]) -> None:
        """Remember what a keyframe costs at the cheapest and dearest rate point (for select's gates)."""
        low, high = min(sizes), max(sizes)
        first = self._cheapest == 0.0
        self._cheapest = low if first else 0.5 * (self._cheapest + low)
        self._dearest = high if first else 0.5 * (self._dearest + high)

    def threshold(self, base: float, now: float) -> float:
        if not self.active or self.segments == 0:
            return base
        earned = self.budget(now)
        ratio = (self.spent - earned) / max(earned, self._cheapest, 1.0)
        return base * math.exp(max(-2.0, min(2.0, 2.0 * ratio)))

    def may_cut(self, now: float) -> bool:
        if not self.active or self.segments == 0:
            return True
        return self.spent + self._cheapest <= self.budget(now) * 1.05

    def must_cut(self, now: float, since: float) -> bool:
        if not self.active or self.segments == 0:
            return False
        return self.budget(now) - self.spent >= self._dearest and self.budget(now) - self.budget(since) > 0
