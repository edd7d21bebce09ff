"""select: M3-CVC's keyframe selection. Frame F_n opens a new segment when
``D(F_n, F_l) = λ1·f_sem(F_n, F_l) + λ2·f_mot(F_n, F_l) − D_th > 0`` (F_l the last keyframe, f_sem = 1 − cosine of the
profile embedder's features, f_mot = the profile motion estimator's flow magnitude accumulated since F_l), within
min/max segment lengths; a scene cut (f_sem between consecutive frames over ``cut``) always opens one."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from m3cvcav.log import get_logger

from .items import ClipSegment, Frame, VideoInfo
from .node import Node
from .options import Option
from .ratecontrol import RateControl

log = get_logger("filters.select")


class Select(Node):
    NAME = "select"
    HELP = "split the video into segments, each opened by a keyframe (M3-CVC's semantic + motion decision)"
    OPTIONS = (
        Option("threshold", float, 0.35, "D_th: the decision threshold (higher: fewer keyframes)", range=(0, 100)),
        Option("l1", float, 1.0, "λ1: weight of the semantic distance f_sem", range=(0, 100)),
        Option("l2", float, 4.0, "λ2: weight of the accumulated motion f_mot", range=(0, 100)),
        Option("min", int, 0, "minimum segment length in frames (0: half a second)", range=(0, 65536)),
        Option("max", int, 0, "maximum segment length in frames (0: 10 seconds)", range=(0, 65536)),
        Option("cut", float, 0.45, "scene cut: f_sem between consecutive frames above this always cuts", range=(0, 2)),
        Option("samples", int, 4, "frames kept per segment for the clip description", range=(1, 64)),
    )

    def __init__(self, positional=None, *, profile=None, rate: RateControl | None = None, **named):
        super().__init__(positional, **named)
        self.profile = profile
        self.rate = rate or RateControl()
        self._open: ClipSegment | None = None
        self._index = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        fps = float(info.fps)
        self.min_len = self.opts["min"] or max(1, round(fps / 2))
        self.max_len = self.opts["max"] or max(self.min_len, round(fps * 10))
        self.embedder = self.profile.engine("embedder")
        self.motion = self.profile.engine("motion")
        return info

    def process(self, frame: Frame) -> Iterator[ClipSegment]:
        embedding = np.asarray(self.embedder.embed([frame.image])[0], np.float64)
        seg = self._open
        if seg is None:
            self._start(frame, embedding, cut=False)
            return
        f_sem_prev = 1.0 - float(embedding @ self._prev_embedding)
        self._f_mot += float(self.motion.magnitude(self._prev_image, frame.image))
        f_sem = 1.0 - float(embedding @ self._key_embedding)
        length = len(seg.pts)
        now = frame.time
        cut = f_sem_prev > self.opts["cut"]
        decision = (self.opts["l1"] * f_sem + self.opts["l2"] * self._f_mot
                    - self.rate.threshold(self.opts["threshold"], now))
        close = length >= self.max_len or self.rate.must_cut(now, self._start_time)
        if length >= self.min_len and (cut or decision > 0) and self.rate.may_cut(now):
            close = True
        if close:
            seg.end_time = now
            log.debug("segment %d: %d frames, f_sem %.3f f_mot %.3f cut %s", seg.index, length, f_sem, self._f_mot,
                      cut)
            yield seg
            self._start(frame, embedding, cut=cut)
        else:
            seg.pts.append(frame.pts)
            self._sample(frame.image)
            self._prev_embedding, self._prev_image = embedding, frame.image

    def flush(self) -> Iterator[ClipSegment]:
        if self._open is not None:
            seg = self._open
            seg.end_time = float((seg.pts[-1] * seg.time_base)) + 1 / float(self.info.fps)
            self._open = None
            yield seg

    def _start(self, frame: Frame, embedding: np.ndarray, cut: bool) -> None:
        self._open = ClipSegment(self._index, frame.image, [frame.pts], frame.time_base, samples=[frame.image],
                                 scene_cut=cut)
        self._index += 1
        self._key_embedding = self._prev_embedding = embedding
        self._prev_image = frame.image
        self._f_mot = 0.0
        self._stride, self._seen = 1, 1
        self._start_time = frame.time

    def _sample(self, image: np.ndarray) -> None:
        """Keep at most 2·samples evenly spaced frames, however long the segment (memory stays bounded)."""
        seg = self._open
        if self._seen % self._stride == 0:
            seg.samples.append(image)
            if len(seg.samples) > 2 * self.opts["samples"]:
                seg.samples = seg.samples[::2]
                self._stride *= 2
        self._seen += 1
