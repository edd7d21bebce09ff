"""tokenize: keyframe → K* with the profile's tokenizer → entropy-coded KeyframeTokens at a rate point (fixed with
``q``, else chosen per segment by rate control), bundled with the texts into a bitstream Segment. With
``mode="tt2v"`` no token layer is written at all (CMVC's text-only stream, the lowest rate): the decoder generates
each keyframe from D^F."""
from __future__ import annotations

from m3cvcav.bitstream.entropy import encode_tokens
from m3cvcav.bitstream.units import (SCENE_CUT, KeyframeTokens, Segment, SegmentHeader, encode_segment,
                                    frame_pts_cfr)
from m3cvcav.errors import UsageError
from m3cvcav.log import get_logger

from .generate import check_mode
from .items import ClipSegment, VideoInfo
from .node import Node
from .options import Option
from .ratecontrol import RateControl

log = get_logger("filters.tokenize")


class Tokenize(Node):
    NAME = "tokenize"
    HELP = "code each keyframe as entropy-coded VQ tokens at a rate point"
    OPTIONS = (Option("q", int, -1, "rate point (0 = lowest; -1: highest, or chosen by -b:v)", range=(-1, 255)),)

    def __init__(self, positional=None, *, profile=None, rate: RateControl | None = None, mode: str = "it2v",
                 **named):
        super().__init__(positional, **named)
        self.profile = profile
        self.rate = rate or RateControl()
        self.mode = mode
        check_mode(profile, mode)
        if mode == "tt2v" and (self.opts["q"] >= 0 or self.rate.rate_point is not None):
            raise UsageError("-q picks the rate point of the keyframe tokens, and -mode tt2v writes none: drop one")
        if self.opts["q"] >= 0 and self.rate.rate_point is None:
            self.rate.rate_point = self.opts["q"]

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        if self.mode == "tt2v":
            return info
        self.tokenizer = self.profile.engine("tokenizer")
        points = [rp.index for rp in self.tokenizer.rate_points]
        fixed = self.rate.rate_point
        if fixed is not None and fixed not in points:
            raise UsageError(f"rate point -q {fixed} does not exist: the {self.profile.name} tokenizer has "
                             f"{', '.join(map(str, points))}")
        self.points = points
        return info

    def _unit(self, seg: ClipSegment, rate_point: int | None) -> Segment:
        tokens = None
        if rate_point is not None:
            grid = self.tokenizer.encode(seg.keyframe, rate_point)
            payload = encode_tokens(grid.indices, self.tokenizer.token_model(grid.rate_point))
            tokens = KeyframeTokens(grid.codebook_id, grid.rate_point, tuple(int(n) for n in grid.indices.shape),
                                    tuple(grid.image_size), payload)
        regular = seg.pts == frame_pts_cfr(seg.pts[0], len(seg.pts), self.info)
        header = SegmentHeader(seg.index, seg.pts[0], len(seg.pts), 0, SCENE_CUT if seg.scene_cut else 0)
        return Segment(header, tokens, seg.frame_text, seg.clip_text, None, None,
                       None if regular else list(seg.pts))

    def process(self, seg: ClipSegment):
        if self.mode == "tt2v":
            rp, unit, sizes = None, self._unit(seg, None), None
        elif self.rate.active:
            units = {rp: self._unit(seg, rp) for rp in self.points}
            sizes = {rp: len(encode_segment(u)) for rp, u in units.items()}
            rp = self.rate.choose(sizes, seg.end_time)
            unit = units[rp]
        else:
            rp = self.rate.choose({p: 0 for p in self.points}, seg.end_time)
            unit, sizes = self._unit(seg, rp), None
        seg.unit = unit
        seg.size = sizes[rp] if sizes else len(encode_segment(unit))
        self.rate.record(seg.size, sizes)
        log.debug("segment %d: rate point %s, %d bytes", seg.index, "none (tt2v)" if rp is None else rp, seg.size)
        return (seg,)
