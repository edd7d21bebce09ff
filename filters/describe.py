"""describe: the frame-level text D^F of each segment's keyframe and the clip-level text D^C of the segment, from the
profile's describer (lite: ImageNet labels; m3cvc: a VLM dialogue), written into the coded segment, which leaves
here complete and serialised once (``packet``: what the muxer writes). A describer whose ``describe_clip`` takes
``motion`` gets the camera motion the stream's motion layer carries, in words, so the text stays true to the
stream."""
from __future__ import annotations

import inspect

from m3cvcav.bitstream.units import INTER_KEYFRAME, encode_segment

from .items import ClipSegment
from .node import Node
from .options import Option


class Describe(Node):
    NAME = "describe"
    HELP = "add D^F (keyframe) and D^C (clip) descriptions from the profile's describer"
    OPTIONS = (
        Option("frame", bool, True, "describe each keyframe (D^F)"),
        Option("clip", bool, True, "describe each segment's motion (D^C)"),
    )

    def __init__(self, positional=None, *, engines=None, **named):
        super().__init__(positional, **named)
        self.engines = engines

    def configure(self, info):
        if self.opts["frame"] or self.opts["clip"]:
            self.describer = self.engines.engine("describer")
            self._takes_motion = "motion" in inspect.signature(self.describer.describe_clip).parameters
        return info

    def process(self, seg: ClipSegment):
        if seg.unit is not None and seg.unit.header.flags & INTER_KEYFRAME:  # a refresh continues the scene: its
            seg.packet = encode_segment(seg.unit)                          # segment carries no TEXT (inherited)
            return (seg,)
        if self.opts["frame"]:
            seg.frame_text = self.describer.describe_frame(seg.keyframe)
        if self.opts["clip"]:
            extra = {"motion": seg.motion_words} if self._takes_motion else {}
            seg.clip_text = self.describer.describe_clip(seg.keyframe, seg.samples, **extra)
        if seg.unit is not None:
            seg.unit.frame_text, seg.unit.clip_text = seg.frame_text, seg.clip_text
            seg.packet = encode_segment(seg.unit)  # the one serialisation of the segment: what the muxer writes
        return (seg,)
