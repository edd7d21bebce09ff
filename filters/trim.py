"""trim: the decoder graph's -ss/-t/-frames:v. The frames from ``ss`` on, rebased to 0, up to ``t`` seconds or
``frames`` frames; decoding stops there. The stream's audio is cut and shifted the same way (the sink stops it where
the video ends). The encoder's cut is the source's: it seeks the input."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import av

from .items import Frame
from .node import Node


class Trim(Node):
    """Keeps the frames in [``ss``, ``ss + t``) and at most ``frames`` of them (0: all); ``cut_short`` says whether
    the stream went on past them."""

    NAME = "trim"
    HELP = "the frames from -ss on, up to -t seconds or -frames:v frames, rebased to 0"
    GRAPH = False

    def __init__(self, ss: float = 0.0, t: float | None = None, frames: int = 0):
        super().__init__()
        self.ss, self.t, self.frames = ss, t, frames
        self.cut_short = False

    def run(self, items: Iterable[Frame]) -> Iterator[Frame]:
        count = 0
        for frame in items:
            if frame.time < self.ss - 1e-6:
                continue
            if (self.frames and count >= self.frames) or (self.t is not None and frame.time - self.ss >= self.t - 1e-6):
                self.cut_short = True
                return  # stops pulling: nothing after this is decoded
            count += 1
            yield Frame(frame.image, frame.pts - round(self.ss / frame.time_base), frame.time_base, frame.index)

    def audio(self, packets: Iterable[Any]) -> Iterator[av.Packet]:
        """The audio packets from ``ss`` on, shifted like the video."""
        for packet in packets:
            if not packet.size or packet.pts is None or float(packet.pts * packet.time_base) < self.ss - 1e-6:
                continue
            shift = round(self.ss / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            yield packet
