"""generate (decoder): KeyframeTokens → keyframe image (tokenizer decode, then the profile's keyframe generator when it
has one; CMVC's IT2V) or, in TT2V (``mode="tt2v"``, or a segment without a token layer), the keyframe generated from
D^F alone → every frame of the segment with the profile's clip generator, moving towards the next segment's keyframe
(not across a scene cut), at the stream's frame rate, count and size. A corrupt segment is concealed by holding the
last good frame, and counted."""
from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from m3cvcav.bitstream.entropy import decode_tokens
from m3cvcav.bitstream.units import SCENE_CUT, CorruptSegment, Segment, SequenceHeader, frame_pts_cfr
from m3cvcav.engines.interfaces import TokenGrid
from m3cvcav.errors import ModelError, UsageError
from m3cvcav.log import get_logger

from .items import Frame
from .node import Node

log = get_logger("filters.generate")
MODES = ("it2v", "tt2v")


def check_mode(profile, mode: str) -> None:
    """Refuse a mode the profile cannot run: tt2v needs a keyframe generator that makes images from text."""
    if mode not in MODES:
        raise UsageError(f"-mode {mode!r}: give it2v (keyframe tokens + text) or tt2v (text only)")
    if mode == "tt2v" and not can_tt2v(profile):
        raise ModelError(f"profile {profile.name} cannot make keyframes from text (-mode tt2v): use -profile m3cvc")


def can_tt2v(profile) -> bool:
    """Whether the profile's keyframe generator does text-to-image (``text_to_image = false`` in its settings: not)."""
    profile = getattr(profile, "profile", profile)  # api.Engines wraps a registry Profile
    return "keyframe_generator" in profile.roles() and \
        bool(profile.settings("keyframe_generator").get("text_to_image", True))


def optional_engine(profile, role: str):
    """The profile's engine for ``role``, or None when the profile has no such role (lite: no keyframe generator)."""
    return profile.engine(role) if role in profile.roles() else None


class Generate(Node):
    NAME = "generate"
    HELP = "decode keyframes and generate every frame of each segment (decoder side)"

    def __init__(self, positional=None, *, profile=None, mode: str = "it2v", **named):
        super().__init__(positional, **named)
        self.profile = profile
        self.mode = mode
        self._told = False
        self.corrupt = 0
        self._held: tuple[Segment | CorruptSegment, np.ndarray | None] | None = None
        self._last_good: np.ndarray | None = None
        self._index = 0

    def configure(self, header: SequenceHeader) -> SequenceHeader:
        check_mode(self.profile, self.mode)
        self.header = header
        self.tokenizer = self.profile.engine("tokenizer")
        self.keyframe_generator = optional_engine(self.profile, "keyframe_generator")
        self.clip = self.profile.engine("clip_generator")
        return header

    def _tt2v(self, seg: Segment) -> bool:
        """TT2V for this segment: asked for, recorded in its GEN_PARAMS, or forced by a missing token layer."""
        if self.mode == "tt2v" or (seg.params is not None and seg.params.mode == "tt2v"):
            return True
        if seg.tokens is None and not self._told:
            log.info("segment %d has no token layer (a tt2v stream), so it cannot be decoded in it2v: generating its "
                     "keyframes from D^F (tt2v)", seg.header.index)
            self._told = True
        return seg.tokens is None

    def keyframe(self, seg: Segment) -> np.ndarray:
        """The keyframe at the stream's size: decoded (and, with a keyframe generator, restored) tokens in IT2V, or
        generated from D^F in TT2V."""
        size = (self.header.height, self.header.width)
        if self._tt2v(seg):
            image = self.keyframe_generator.generate(None, seg.frame_text, size, seg.header.index)
        else:
            t = seg.tokens
            model = self.tokenizer.token_model(t.rate_point)
            indices = decode_tokens(t.payload, t.shape, model)
            grid = TokenGrid(indices, t.codebook_id, t.rate_point, self.tokenizer.vocab, tuple(t.image_size))
            image = self.tokenizer.decode(grid)
            if self.keyframe_generator is not None:
                image = self.keyframe_generator.generate(image, seg.frame_text, size, seg.header.index)
        if image.shape[:2] != size:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def process(self, seg: Segment | CorruptSegment) -> Iterator[Frame]:
        if isinstance(seg, CorruptSegment) or (seg.tokens is None and not can_tt2v(self.profile)):
            image = None
        else:
            image = self.keyframe(seg)
        if self._held is not None:
            cut = isinstance(seg, Segment) and bool(seg.header.flags & SCENE_CUT)
            yield from self._emit(*self._held, None if cut else image)
        self._held = (seg, image)

    def flush(self) -> Iterator[Frame]:
        if self._held is not None:
            yield from self._emit(*self._held, None)
            self._held = None
        if self.corrupt:
            log.warning("%d corrupt segment(s) concealed by holding the last good frame", self.corrupt)

    def _emit(self, seg, image: np.ndarray | None, following: np.ndarray | None) -> Iterator[Frame]:
        tb = self.header.time_base
        if image is None:
            self.corrupt += 1
            count = seg.frame_count if isinstance(seg, CorruptSegment) else seg.header.frame_count
            first = seg.first_pts if isinstance(seg, CorruptSegment) else seg.header.first_pts
            log.warning("segment %s is corrupt (%s): concealed", seg.index, getattr(seg, "reason", "no keyframe"))
            if first is None or count <= 0 or self._last_good is None:
                return
            for pts in frame_pts_cfr(first, count, self.header):
                yield Frame(self._last_good, pts, tb, self._index)
                self._index += 1
            return
        pts = seg.pts(self.header)
        frames = self.clip.generate(image, following, len(pts), seg.clip_text, seg.header.index)
        for image_i, pts_i in zip(frames, pts):
            yield Frame(image_i, pts_i, tb, self._index)
            self._index += 1
        self._last_good = frames[-1]
