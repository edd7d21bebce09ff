"""What flows between nodes: a stream description, video frames, audio packets and encoder-side segments."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from m3cvcav.bitstream.units import FIRST_VERSION, ColorDescription, ModelRef, SequenceHeader


@dataclass(frozen=True)
class VideoInfo:
    """Description of a video stream, what ``Node.configure`` maps from input to output."""

    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    color: ColorDescription = ColorDescription()  # ITU-T H.273 code points, BT.709 limited by default
    frame_count: int | None = None  # None when unknown (pipes)
    duration: float | None = None  # seconds, None when unknown

    def with_(self, **changes) -> "VideoInfo":
        return replace(self, **changes)

    # The one place a stream description and a sequence header are converted.
    @classmethod
    def from_header(cls, header: SequenceHeader) -> "VideoInfo":
        return cls(header.width, header.height, header.fps, header.time_base, header.color)

    def header(self, profile_id: int, models: list[ModelRef],
               version: tuple[int, int] = FIRST_VERSION) -> SequenceHeader:
        """The sequence header of a stream of this video, made with profile ``profile_id`` and ``models``, at
        bitstream ``version``."""
        return SequenceHeader(self.width, self.height, Fraction(self.fps), Fraction(self.time_base), self.color,
                              profile_id, list(models), version)


@dataclass
class Frame:
    """One decoded frame: (H, W, 3) uint8 RGB full range, with its presentation timestamp in ``time_base``."""

    image: np.ndarray
    pts: int
    time_base: Fraction
    index: int = 0

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


@dataclass
class AudioPacket:
    """A compressed audio packet passed through untouched for muxing (``packet`` is an ``av.Packet``)."""

    packet: object


@dataclass
class ClipSegment:
    """Encoder side: one segment closed by ``select`` — its keyframe (first frame), every frame and its pts, a few
    frames sampled for the clip description — and what later nodes add: the keyframe tokens (``tokenize``), the texts
    (``describe``), the coded unit with its base layer and its serialised packet (``base``)."""

    index: int
    keyframe: np.ndarray
    pts: list[int]
    time_base: Fraction
    samples: list[np.ndarray] = field(default_factory=list)
    sample_step: int = 1  # frames between consecutive samples (their rate: the video's fps / sample_step)
    end_time: float = 0.0  # seconds at which the next segment starts (or the stream ends)
    scene_cut: bool = False  # opened by a scene cut (the decoder does not interpolate across it)
    frame_text: str = ""
    clip_text: str = ""
    frames: list[np.ndarray] = field(default_factory=list)  # every frame, keyframe first
    unit: object = None  # m3cvcav.bitstream.units.Segment: started by tokenize (K*), completed by base
    packet: bytes = b""  # ``unit`` serialised (docs/bitstream.md §6) by base: what the muxer writes

    @property
    def size(self) -> int:
        """Coded bytes of the segment packet."""
        return len(self.packet)
