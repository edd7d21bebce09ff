"""generate (decoder): every frame of each segment from its base layer (AV1, ``bitstream.av1``) upscaled to the
stream's display size, then the profile's generators on top: the keyframe generator restores the keyframe (from the
base's first picture, or the keyframe tokens K* where the stream has them, and D^F; CMVC's IT2V) and the clip
generator makes the segment's frames from the keyframes, D^C and the base pictures (lite: the base pictures
themselves). In TT2V (``mode="tt2v"``, or a stream without a base) the keyframe is generated from D^F alone and the
clip from the keyframes and D^C. A corrupt segment is concealed with all its frames (a cross-fade from the last good
frame to the next keyframe); a damaged base unit, from the frame it starts on to the segment's end (the next AV1 key
frame), by holding the last picture it decoded. Both are counted and said. A segment's GEN_PARAMS (2.1) say what the
encoder chose for it (``filters.conditioning``): the keyframe generator's strength (0: the base picture is the
keyframe) and whether the clip generator makes its frames or the base pictures are shown as they decode."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from m3cvcav.bitstream import av1
from m3cvcav.bitstream.units import SCENE_CUT, CorruptSegment, Segment, frame_pts_cfr
from m3cvcav.core.errors import BitstreamError
from m3cvcav.core.log import get_logger

from .items import Frame, VideoInfo
from .node import Node

log = get_logger(__name__)


class Generate(Node):
    NAME = "generate"
    HELP = "decode the base layer and generate every frame of each segment (decoder side)"

    def __init__(self, positional=None, *, engines=None, mode: str = "it2v", enhance: bool = True, **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.mode = mode
        self.enhance = enhance
        self._told = False
        self.corrupt = 0
        self._held: tuple[Segment | CorruptSegment, np.ndarray | None, Sequence | None] | None = None
        self._last_good: np.ndarray | None = None
        self._last_pts: int | None = None
        self._index = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.engines.check_mode(self.mode)
        self.info = info
        self.tokenizer = self.engines.optional("tokenizer")
        self.keyframe_generator = self.engines.optional("keyframe_generator")
        self.clip = self.engines.engine("clip_generator")
        self.enhancer = self.engines.optional("enhancer") if self.enhance else None
        return info

    def _tt2v(self, seg: Segment) -> bool:
        """TT2V for this segment: asked for, recorded in its GEN_PARAMS, or forced by a stream without pixels."""
        if self.mode == "tt2v" or (seg.params is not None and seg.params.mode == "tt2v"):
            return True
        if seg.base is None and seg.tokens is None and not self._told:
            log.info("segment %d has no base layer (a tt2v stream), so it cannot be decoded in it2v: generating its "
                     "keyframes from D^F (tt2v)", seg.header.index)
            self._told = True
        return seg.base is None and seg.tokens is None

    def _base(self, seg: Segment) -> Sequence | None:
        """The segment's base pictures at the display size (None when it has none, or they do not decode)."""
        if seg.base is None or self.mode == "tt2v":
            return None
        try:
            pictures = av1.decode(seg.base.units) if seg.base.units else []
        except BitstreamError as err:
            log.warning("segment %d: %s", seg.header.index, err)
            return None
        if not pictures:
            return None
        if not seg.base.complete:
            self.corrupt += 1
            log.warning("segment %d: its base is damaged from frame %d of %d: the last picture is held until the "
                        "next key frame", seg.header.index, len(pictures), seg.header.frame_count)
        variant = seg.base.enhancement if self.enhancer is not None else 0
        if variant > getattr(self.enhancer, "variants", 0):
            log.warning("segment %d asks for enhancement variant %d, which this profile's enhancer does not have: "
                        "bicubic", seg.header.index, variant)
            variant = 0
        upscale = (lambda p, size: self.enhancer.upscale(p, size, variant)) if variant else av1.upscale
        return Upscaled(pictures, (self.info.width, self.info.height), seg.header.frame_count, upscale)

    def keyframe(self, seg: Segment, base: Sequence | None) -> np.ndarray | None:
        """The keyframe at the stream's size: the base's first picture (or the decoded tokens), restored by the
        keyframe generator when the profile has one (at the strength the segment's params give, none at 0); in TT2V
        generated from D^F; None when it cannot be made."""
        size = (self.info.height, self.info.width)
        if self._tt2v(seg):
            if not self.engines.can_tt2v():
                return None
            image = self.keyframe_generator.generate(None, seg.frame_text, size, _seed(seg))
        else:
            if seg.tokens is not None and self.tokenizer is not None:
                image = self.tokenizer.decompress(seg.tokens)
            elif base is not None:
                image = base[0]
            else:
                return None
            strength = seg.params.keyframe_strength / 255 if _conditioned(seg) else None
            if self.keyframe_generator is not None and strength != 0:
                image = self.keyframe_generator.generate(image, seg.frame_text, size, _seed(seg), strength=strength)
        if image.shape[:2] != size:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def process(self, seg: Segment | CorruptSegment) -> Iterator[Frame]:
        image = base = None
        if isinstance(seg, Segment):
            base = self._base(seg)
            image = self.keyframe(seg, base)
        if self._held is not None:
            cut = isinstance(seg, Segment) and bool(seg.header.flags & SCENE_CUT)
            yield from self._emit(*self._held, None if cut else image, seg)
        self._held = (seg, image, base)

    def flush(self) -> Iterator[Frame]:
        if self._held is not None:
            yield from self._emit(*self._held, None, None)
            self._held = None
        if self.corrupt:
            log.warning("%d corrupt segment(s) concealed", self.corrupt)

    def _emit(self, seg, image: np.ndarray | None, base: Sequence | None, following: np.ndarray | None,
              after) -> Iterator[Frame]:
        """Every frame of ``seg``; ``following`` is the next keyframe (None across a scene cut or at the end) and
        ``after`` the next segment (for the timing of a corrupt one)."""
        if image is None:
            yield from self._conceal(seg, following, after)
            return
        pts = seg.pts(self.info)
        if base is not None and _conditioned(seg) and not seg.params.clip_diffusion:
            frames = base  # the encoder found the clip generator does not help this segment: its pictures as decoded
        else:
            frames = self.clip.generate(image, following, len(pts), seg.clip_text, _seed(seg), prediction=base)
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
        if isinstance(seg, CorruptSegment):
            index, first, count, reason = seg.index, seg.first_pts, seg.frame_count, seg.reason
        else:
            index, first, count = seg.header.index, seg.header.first_pts, seg.header.frame_count
            reason = "its base does not decode" if seg.base is not None else "no picture"
        log.warning("segment %s is corrupt (%s): concealed", index, reason)
        if first is None or count <= 0:
            first, count = self._gap(after)
        if count <= 0:
            return
        size = (self.info.height, self.info.width, 3)
        start = self._last_good if self._last_good is not None else following
        end = following if following is not None else start
        if start is None:
            start = end = np.full(size, 128, np.uint8)
        pts_list = seg.pts(self.info) if isinstance(seg, Segment) else frame_pts_cfr(first, count, self.info)
        for i, pts in enumerate(pts_list):
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


def _conditioned(seg: Segment) -> bool:
    """Whether the encoder conditioned this segment's generators (2.1 GEN_PARAMS) rather than leaving the profile's."""
    return seg.params is not None and seg.params.conditioned and seg.params.mode == "it2v"


def _seed(seg: Segment) -> int:
    """The segment's noise seed: its GEN_PARAMS's, else its index."""
    return seg.params.seed if seg.params is not None else seg.header.index


class Upscaled(Sequence):
    """A segment's base pictures at the display size, upscaled by ``upscale`` (bicubic, or the enhancer's variant)
    when a frame is read (memory: the coded pictures); frames past a damaged base hold its last picture."""

    def __init__(self, pictures: list[np.ndarray], size: tuple[int, int], count: int, upscale=av1.upscale) -> None:
        self.pictures, self.size, self.count, self.upscale = pictures, size, count, upscale
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        i = min(i % self.count, len(self.pictures) - 1)
        if self._cache is None or self._cache[0] != i:
            self._cache = (i, self.upscale(self.pictures[i], self.size))
        return self._cache[1]
