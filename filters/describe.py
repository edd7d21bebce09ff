"""describe: the frame-level text D^F of each segment's keyframe and the clip-level text D^C of the segment, from the
profile's describer (lite: ImageNet labels; m3cvc: a VLM dialogue), kept on the segment for the base node, which
writes them into the coded segment."""
from __future__ import annotations

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
        self.fps = float(info.fps)
        if self.opts["frame"] or self.opts["clip"]:
            self.describer = self.engines.engine("describer")
        return info

    def process(self, seg: ClipSegment):
        if self.opts["frame"]:
            seg.frame_text = self.describer.describe_frame(seg.keyframe)
        if self.opts["clip"]:
            seg.clip_text = self.describer.describe_clip(seg.keyframe, seg.samples, fps=self.fps / seg.sample_step)
        return (seg,)
