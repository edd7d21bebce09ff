"""tokenize: M3-CVC's keyframe tokens. Where the profile has a keyframe tokenizer (the m3cvc profile with VQ codebooks
over its diffusion VAE's latent), each segment's keyframe becomes entropy-coded VQ indices K* at a rate point, which
the decoder's keyframe generator restores with D^F; the pixels of every frame travel in the base layer
(``filters.base``) either way, and ``base`` drops the tokens of a keyframe that its first picture already gives
better (unless ``base=tokens=keep``). Profiles without a tokenizer (lite), and ``mode="tt2v"``, pass segments on
untouched."""
from __future__ import annotations

from m3cvcav.bitstream.units import Segment, SegmentHeader
from m3cvcav.core.log import get_logger

from .items import ClipSegment, VideoInfo
from .node import Node
from .options import Option

log = get_logger(__name__)


class Tokenize(Node):
    NAME = "tokenize"
    HELP = "code each keyframe as VQ tokens K* (profiles with a keyframe tokenizer)"
    OPTIONS = (
        Option("rate_point", int, -1, "the tokenizer's rate point (-1: its lowest)", range=(-1, 255)),
    )

    def __init__(self, positional=None, *, engines=None, mode: str = "it2v", **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.mode = mode
        engines.check_mode(mode)

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.tokenizer = None if self.mode == "tt2v" else self.engines.optional("tokenizer")
        if self.tokenizer is not None:
            points = [rp.index for rp in self.tokenizer.rate_points]
            wanted = self.opts["rate_point"]
            self.rate_point = min(points) if wanted < 0 else min(wanted, max(points))
        return info

    def process(self, seg: ClipSegment):
        if self.tokenizer is not None:
            tokens = self.tokenizer.compress(seg.keyframe, self.rate_point)
            seg.unit = Segment(SegmentHeader(seg.index, seg.pts[0], len(seg.pts)), tokens)
            log.debug("segment %d: keyframe tokens at rate point %d, %d bytes", seg.index, self.rate_point,
                      len(tokens.payload))
        return (seg,)
