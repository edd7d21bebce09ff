"""generate (decoder): KeyframeTokens → keyframe image (tokenizer decode, then the profile's keyframe generator when it
has one; CMVC's IT2V) or, in TT2V (``mode="tt2v"``, or a segment without a token layer), the keyframe generated from
D^F alone → every frame of the segment: the motion-compensated prediction from the transmitted motion layer (from this
keyframe and, in a bidirectional segment, the next one; ``prediction``), handed with the texts to the profile's clip
generator (lite: the prediction itself; m3cvc: a video model conditioned on it), at the stream's frame rate, count
and size. A corrupt segment is concealed with all its frames (a cross-fade from the last good frame to the next
keyframe), and counted."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from m3cvcav.bitstream.motion import FrameMotion, SegmentMotion
from m3cvcav.bitstream.units import INTER_KEYFRAME, SCENE_CUT, CorruptSegment, Segment, frame_pts_cfr
from m3cvcav.core.log import get_logger

from . import residual
from .items import Frame, VideoInfo
from .node import Node
from .prediction import Warper

log = get_logger(__name__)


class Generate(Node):
    NAME = "generate"
    HELP = "decode keyframes and generate every frame of each segment (decoder side)"

    def __init__(self, positional=None, *, engines=None, mode: str = "it2v", **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.mode = mode
        self._told = False
        self.corrupt = 0
        self._held: tuple[Segment | CorruptSegment, np.ndarray | None] | None = None
        self._last_good: np.ndarray | None = None
        self._last_pts: int | None = None
        self._previous_key: np.ndarray | None = None  # the last segment's keyframe (what an inter keyframe moves)
        self._texts = ("", "")  # the last segment's D^F and D^C
        self._index = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.engines.check_mode(self.mode)
        self.info = info
        self.tokenizer = self.engines.engine("tokenizer")
        self.keyframe_generator = self.engines.optional("keyframe_generator")
        self.clip = self.engines.engine("clip_generator")
        self.warper = Warper(info.width, info.height)
        return info

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
        generated from D^F in TT2V; an inter keyframe (a refresh) is the previous keyframe moved by the segment's
        anchor motion, plus its residual."""
        size = (self.info.height, self.info.width)
        if _inter(seg):
            previous = self._previous_key
            if previous is None:  # the keyframe it moves was lost: start from the last good frame, else grey
                previous = self._last_good if self._last_good is not None else np.full((*size, 3), 128, np.uint8)
            image = self.warper.predict(FrameMotion(seg.motion.anchor), previous, None)
            if seg.residual is not None:
                image = residual.apply(image, seg.residual)
        elif self._tt2v(seg):
            image = self.keyframe_generator.generate(None, seg.frame_text, size, seg.header.index)
        else:
            image = self.tokenizer.decompress(seg.tokens)
            if seg.residual is not None:
                image = residual.apply(image, seg.residual)
            if self.keyframe_generator is not None:
                image = self.keyframe_generator.generate(image, seg.frame_text, size, seg.header.index)
        if image.shape[:2] != size:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def process(self, seg: Segment | CorruptSegment) -> Iterator[Frame]:
        if isinstance(seg, Segment):  # an inter keyframe's segment without TEXT continues the previous texts
            if _inter(seg) and not (seg.frame_text or seg.clip_text):
                seg.frame_text, seg.clip_text = self._texts
            self._texts = (seg.frame_text, seg.clip_text)
        if isinstance(seg, CorruptSegment) or (seg.tokens is None and not _inter(seg) and not self.engines.can_tt2v()):
            image = None
        else:
            image = self.keyframe(seg)
        self._previous_key = image
        if self._held is not None:
            cut = isinstance(seg, Segment) and bool(seg.header.flags & SCENE_CUT)
            yield from self._emit(*self._held, None if cut else image, seg)
        self._held = (seg, image)

    def flush(self) -> Iterator[Frame]:
        if self._held is not None:
            yield from self._emit(*self._held, None, None)
            self._held = None
        if self.corrupt:
            log.warning("%d corrupt segment(s) concealed", self.corrupt)

    def _emit(self, seg, image: np.ndarray | None, following: np.ndarray | None, after) -> Iterator[Frame]:
        """Every frame of ``seg``; ``following`` is the next keyframe (None across a scene cut or at the end) and
        ``after`` the next segment (for the timing of a corrupt one)."""
        if image is None:
            yield from self._conceal(seg, following, after)
            return
        pts = seg.pts(self.info)
        prediction = Prediction(self.warper, seg.motion, image, following, len(pts))
        frames = self.clip.generate(image, following, len(pts), seg.clip_text, seg.header.index,
                                    prediction=prediction)
        last = None
        for image_i, pts_i in zip(frames, pts):
            yield Frame(image_i, pts_i, self.info.time_base, self._index)
            self._index += 1
            last, self._last_pts = image_i, pts_i
        self._last_good = last

    def _conceal(self, seg, following: np.ndarray | None, after) -> Iterator[Frame]:
        """All frames of a segment that cannot be decoded: a cross-fade from the last good frame to the next keyframe
        (either alone when the other is missing; mid-grey when both are). Its timing comes from its header, else
        from the segments around it."""
        self.corrupt += 1
        log.warning("segment %s is corrupt (%s): concealed", seg.index, getattr(seg, "reason", "no keyframe"))
        if isinstance(seg, CorruptSegment):
            first, count = seg.first_pts, seg.frame_count
        else:
            first, count = seg.header.first_pts, seg.header.frame_count
        if first is None or count <= 0:
            first, count = self._gap(after)
        if count <= 0:
            return
        size = (self.info.height, self.info.width, 3)
        start = self._last_good if self._last_good is not None else following
        end = following if following is not None else start
        if start is None:
            start = end = np.full(size, 128, np.uint8)
        for i, pts in enumerate(frame_pts_cfr(first, count, self.info)):
            t = i / count
            image = start if t == 0 else cv2.addWeighted(start, 1.0 - t, end, t, 0.0)
            yield Frame(image, pts, self.info.time_base, self._index)
            self._index += 1
            self._last_pts = pts
        self._last_good = end

    def _gap(self, after) -> tuple[int | None, int]:
        """(first pts, frame count) of the frames between the last emitted one and the next segment's first."""
        if not isinstance(after, Segment):
            return None, 0
        step = max(1, frame_pts_cfr(0, 2, self.info)[1])
        first = 0 if self._last_pts is None else self._last_pts + step
        return first, max(0, (after.header.first_pts - first + step - 1) // step)


def _inter(seg: Segment) -> bool:
    """Whether the segment's keyframe is an inter keyframe (flag and anchor motion present)."""
    return bool(seg.header.flags & INTER_KEYFRAME) and seg.motion is not None and seg.motion.anchor is not None


class Prediction(Sequence):
    """The motion-compensated prediction of every frame of a segment, computed when a frame is read (memory stays at
    one frame): frame 0 is the keyframe; without a motion layer (a 1.0 stream) every frame is the keyframe."""

    def __init__(self, warper: Warper, motion: SegmentMotion | None, keyframe: np.ndarray,
                 following: np.ndarray | None, count: int) -> None:
        self.warper, self.motion, self.keyframe, self.count = warper, motion, keyframe, count
        self.following = following if motion is not None and motion.bidirectional else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        i %= self.count
        if i == 0 or self.motion is None:
            return self.keyframe
        return self.warper.predict(self.motion.frames[i - 1], self.keyframe, self.following)
