"""select: M3-CVC's keyframe selection. Frame F_n opens a new segment when
``D(F_n, F_l) = λ1·f_sem(F_n, F_l) + λ2·f_mot(F_n, F_l) − D_th > 0`` (F_l the last keyframe, f_sem = 1 − cosine of the
profile embedder's features, f_mot = the profile motion estimator's flow magnitude accumulated since F_l), within
min/max segment lengths; a scene cut (f_sem between consecutive frames over ``cut``) always opens one. Every keyframe
becomes an AV1 key frame of the base layer, so each segment decodes alone. Each segment carries all its frames to the
base node, which codes them as one closed AV1 sequence, so a segment is also bounded by ``FRAME_BUFFER_BYTES`` of
frames."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from m3cvcav.core.log import get_logger

from .items import ClipSegment, Frame, VideoInfo
from .node import Node
from .options import Option
from .ratecontrol import RateControl

log = get_logger(__name__)
FRAME_BUFFER_BYTES = 384 << 20  # frames one open segment may hold (720p: 5.5 s, 1080p: 2.5 s)
MIN_SECONDS = 2.0  # default shortest segment: each opens with an AV1 key frame, which at these rates costs as much
# as a second or more of the frames between (measured on a fast pan: 0.5 s segments cost 2-3x the rate of one)


class Select(Node):
    NAME = "select"
    HELP = "split the video into segments, each opened by a keyframe (M3-CVC's semantic + motion decision)"
    OPTIONS = (
        Option("threshold", float, 0.35, "D_th: the decision threshold (higher: fewer keyframes)", range=(0, 100)),
        Option("l1", float, 1.0, "λ1: weight of the semantic distance f_sem", range=(0, 100)),
        Option("l2", float, 0.5, "λ2: weight of the accumulated motion f_mot",
               range=(0, 100)),
        Option("min", int, 0, "minimum segment length in frames (0: two seconds; scene cuts still cut)",
               range=(0, 65536)),
        Option("max", int, 0, "maximum segment length in frames (0: 10 seconds)", range=(0, 65536)),
        Option("cut", float, 0.45, "scene cut: f_sem between consecutive frames above this always cuts", range=(0, 2)),
        Option("samples", int, 4, "frames kept per segment for the clip description", range=(1, 64)),
        Option("step", int, 0, "analyse every Nth frame (0: about 8 per second); a cut between two analysed frames "
               "is located exactly", range=(0, 1000)),
    )

    def __init__(self, positional=None, *, engines=None, rate: RateControl | None = None, **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.rate = rate or RateControl()
        self._open: ClipSegment | None = None
        self._index = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        fps = float(info.fps)
        self.min_len = self.opts["min"] or max(1, round(fps * MIN_SECONDS))
        buffered = max(1, FRAME_BUFFER_BYTES // (3 * info.width * info.height))
        self.max_len = min(self.opts["max"] or max(self.min_len, round(fps * 10)), max(self.min_len, buffered))
        self.step = self.opts["step"] or max(1, round(fps / 8))
        self.embedder = self.engines.engine("embedder")
        self.motion = self.engines.engine("motion")
        self._recent: list[Frame] = []  # frames since the last analysed one, not yet assigned to a segment
        return info

    def _embed(self, frames: list[Frame]) -> np.ndarray:
        return np.asarray(self.embedder.embed([f.image for f in frames]), np.float64)

    def process(self, frame: Frame) -> Iterator[ClipSegment]:
        if self._open is None:
            self._start(frame, self._embed([frame])[0], cut=False)
            return
        self._recent.append(frame)
        if len(self._recent) < self.step and len(self._open.pts) + len(self._recent) < self.max_len:
            return
        yield from self._analyse()

    def _analyse(self) -> Iterator[ClipSegment]:
        """Decide on the newest buffered frame; on a scene cut, find the exact frame where it happened."""
        recent, self._recent = self._recent, []
        frame = recent[-1]
        embedding = self._embed([frame])[0]
        self._f_mot += float(self.motion.magnitude(self._prev_image, frame.image))
        seg = self._open
        if 1.0 - float(embedding @ self._prev_embedding) > self.opts["cut"]:
            found = self._locate_cut(recent, embedding)
            if found is not None:  # scene cuts always open a segment, whatever the length or the budget
                yield from self._close(recent[:found], recent[found:], cut=True, embedding=embedding)
                return
        f_sem = 1.0 - float(embedding @ self._key_embedding)
        length = len(seg.pts) + len(recent) - 1
        now = frame.time
        decision = (self.opts["l1"] * f_sem + self.opts["l2"] * self._f_mot
                    - self.rate.threshold(self.opts["threshold"], now))
        close = length >= self.max_len
        if length >= self.min_len and decision > 0 and self.rate.may_cut(now):
            close = True
        if close:
            log.debug("segment %d: %d frames, f_sem %.3f f_mot %.3f", seg.index, length, f_sem, self._f_mot)
            yield from self._close(recent[:-1], recent[-1:], cut=False, embedding=embedding)
        else:
            self._extend(recent)
            self._prev_embedding, self._prev_image = embedding, frame.image

    def _locate_cut(self, recent: list[Frame], last: np.ndarray) -> int | None:
        """Index in ``recent`` of the first frame of the new scene (embeds the frames in between only on a cut)."""
        if len(recent) == 1:
            return 0
        embeddings = np.concatenate([self._embed(recent[:-1]), last[None]])
        previous = self._prev_embedding
        for i, e in enumerate(embeddings):
            if 1.0 - float(e @ previous) > self.opts["cut"]:
                return i
            previous = e
        return None

    def _close(self, before: list[Frame], after: list[Frame], cut: bool,
               embedding: np.ndarray | None = None) -> Iterator[ClipSegment]:
        """Close the open segment after ``before``; ``after[0]`` opens the next one, the rest wait for analysis."""
        seg = self._open
        self._extend(before)
        seg.end_time = after[0].time
        yield seg
        first = after[0]
        self._start(first, embedding if embedding is not None and len(after) == 1 else self._embed([first])[0], cut)
        self._recent = after[1:]
        if len(self._open.pts) + len(self._recent) >= self.max_len:
            yield from self._analyse()

    def _extend(self, frames: list[Frame]) -> None:
        for f in frames:
            self._open.pts.append(f.pts)
            self._open.frames.append(f.image)
            self._sample(f.image)

    def flush(self) -> Iterator[ClipSegment]:
        if self._recent and self._open is not None:
            yield from self._analyse()
        if self._recent:
            self._extend(self._recent)
            self._recent = []
        if self._open is not None:
            seg = self._open
            seg.end_time = float((seg.pts[-1] * seg.time_base)) + 1 / float(self.info.fps)
            self._open = None
            yield seg

    def _start(self, frame: Frame, embedding: np.ndarray, cut: bool) -> None:
        self._open = ClipSegment(self._index, frame.image, [frame.pts], frame.time_base, samples=[frame.image],
                                 scene_cut=cut, frames=[frame.image])
        self._index += 1
        self._key_embedding = self._prev_embedding = embedding
        self._prev_image = frame.image
        self._f_mot = 0.0
        self._stride, self._seen = 1, 1

    def _sample(self, image: np.ndarray) -> None:
        """Keep at most 2·samples evenly spaced frames, however long the segment (memory stays bounded)."""
        seg = self._open
        if self._seen % self._stride == 0:
            seg.samples.append(image)
            if len(seg.samples) > 2 * self.opts["samples"]:
                seg.samples = seg.samples[::2]
                self._stride *= 2
                seg.sample_step = self._stride
        self._seen += 1
