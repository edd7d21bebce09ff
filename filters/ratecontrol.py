"""Rate control: per segment, the keyframe rate point and the selection threshold that keep the stream on a bitrate
target (``-b:v``), counting the real bytes of every coded segment; or a fixed rate point (``-q``)."""
from __future__ import annotations

import math
from dataclasses import dataclass


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
    rate_point: int | None = None
    spent: int = 0
    segments: int = 0
    _cheapest: float = 0.0
    _dearest: float = 0.0

    @property
    def active(self) -> bool:
        return self.target_bps > 0

    def budget(self, time: float) -> float:
        """Bytes earned by ``time`` seconds."""
        return self.target_bps * max(time, 0.0) / 8

    def choose(self, sizes: dict[int, int], end_time: float) -> int:
        """Pick a rate point from {rate point: coded bytes of this segment at it}."""
        if not self.active:
            return self.rate_point if self.rate_point is not None else max(sizes)
        allowed = self.budget(end_time) - self.spent
        fitting = [rp for rp, size in sizes.items() if size <= allowed]
        return max(fitting) if fitting else min(sizes, key=sizes.get)

    def record(self, size: int, sizes: dict[int, int] | None = None) -> None:
        """Count the bytes actually written for one segment (and remember what keyframes cost, for the gates)."""
        self.spent += size
        self.segments += 1
        if sizes:
            low, high = min(sizes.values()), max(sizes.values())
            self._cheapest = low if self.segments == 1 else 0.5 * (self._cheapest + low)
            self._dearest = high if self.segments == 1 else 0.5 * (self._dearest + high)

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
