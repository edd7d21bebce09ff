"""tokenize: the temporal coder. Each segment's keyframe becomes entropy-coded VQ tokens (K*) at a rate point, and
every other frame is coded as motion relative to the decoded keyframe (and to the next segment's keyframe, blended),
chosen by rate and distortion (``motion_search``). Where the motion-compensated prediction of a frame fails (its
distortion above the quality level's refresh threshold: occlusions, new content, zoom-ins) the frame becomes a new
keyframe, so a segment from ``select`` may leave here as several. The rate point, the refresh threshold and λ come
from the quality ladder (``-q``) or from rate control (``-b:v``).

With ``mode="tt2v"`` no token layer is written (CMVC's text-only stream): keyframes are generated from D^F and the
motion layer still carries the frames between them."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from m3cvcav.bitstream.entropy import encode_tokens
from m3cvcav.bitstream.motion import FrameMotion, SegmentMotion
from m3cvcav.bitstream.residual import KeyframeResidual, encode_residual
from m3cvcav.bitstream.units import (SCENE_CUT, KeyframeTokens, Segment, SegmentHeader, encode_segment, frame_pts_cfr,
                                    text_payload)
from m3cvcav.errors import UsageError
from m3cvcav.log import get_logger

from .generate import check_mode
from .items import ClipSegment, VideoInfo
from .motion_search import Choice, MotionSearch
from .node import Node
from .options import Option
from .ratecontrol import LEVELS, RESIDUAL_STEPS, Level, RateControl
from .residual import ResidualCoder, apply

log = get_logger("filters.tokenize")
GRID_CELLS = 16  # motion grid columns (rows follow the aspect); cells of at least 16 px


@dataclass
class _Part:
    """A segment being coded: its frames, keyframe (tokens + decoded image), forward motion choices."""

    frames: list[np.ndarray]
    pts: list[int]
    scene_cut: bool
    end_time: float
    level: Level
    tokens: KeyframeTokens | None
    decoded: np.ndarray  # the keyframe as the decoder will see it (full size)
    analysed: list[dict] = field(default_factory=list)  # work-size analysis of every frame
    forward: list[Choice] = field(default_factory=list)  # motion to this keyframe, frames 1..n-1
    residual: KeyframeResidual | None = None
    coder: ResidualCoder | None = None  # to re-code the residual at another step (-b:v)


class Tokenize(Node):
    NAME = "tokenize"
    HELP = "code keyframes as VQ tokens (+ residual) and other frames as transmitted motion; refresh where it fails"
    OPTIONS = (
        Option("q", int, -1, f"quality level 0..{len(LEVELS) - 1} (higher: better and larger; -1: the default, or "
               "chosen by -b:v)", range=(-1, len(LEVELS) - 1)),
        Option("refresh", bool, True, "insert a keyframe where the motion-compensated prediction fails"),
        Option("grid", bool, True, "allow a local grid of motion vectors where the global model is not enough"),
        Option("bidir", bool, True, "predict frames from the next keyframe too (blended)"),
    )

    def __init__(self, positional=None, *, profile=None, rate: RateControl | None = None, mode: str = "it2v",
                 **named):
        super().__init__(positional, **named)
        self.profile = profile
        self.rate = rate or RateControl()
        self.mode = mode
        check_mode(profile, mode)
        if mode == "tt2v" and (self.opts["q"] >= 0 or self.rate.quality is not None):
            raise UsageError("-q picks the quality of the keyframe tokens, and -mode tt2v writes none: drop one")
        if self.opts["q"] >= 0 and self.rate.quality is None:
            self.rate.quality = self.opts["q"]
        if self.rate.quality is not None and not 0 <= self.rate.quality < len(LEVELS):
            raise UsageError(f"-q {self.rate.quality}: give a quality level from 0 to {len(LEVELS) - 1}")
        self._held: _Part | None = None
        self._index = 0
        self._pending = 0  # bytes of parts coded but not yet handed on
        self._handed = 0  # bytes of segments handed on but not yet counted by rate control
        self._last_text = 0  # bytes the texts added to the last segment (estimate for the next)
        self._unaccounted: list[ClipSegment] = []  # handed on, bytes not yet counted by rate control

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        self.tokenizer = None if self.mode == "tt2v" else self.profile.engine("tokenizer")
        if self.tokenizer is not None:
            self.points = [rp.index for rp in self.tokenizer.rate_points]
        cell = max(16, -(-info.width // GRID_CELLS))
        self.search = {lvl: MotionSearch(info.width, info.height, lam=lvl.lam,
                                         grid_cell=cell if self.opts["grid"] else 0) for lvl in LEVELS}
        self.rate.start(info.width, info.height, float(info.fps))
        return info

    # -- keyframes ------------------------------------------------------------------------------------------------
    def _keyframe(self, image: np.ndarray, level: Level, now: float, end_time: float):
        """Tokens at the level's rate point (or the largest the budget allows), the residual at the level's step,
        the decoded keyframe and the residual coder: (tokens, residual, decoded, coder)."""
        if self.tokenizer is None:  # tt2v: the decoder generates keyframes; motion is measured against the source
            return None, None, image, None
        wanted = min(level.rate_point, max(self.points))
        if self.rate.active:  # from the level's rate point down, until one fits the budget (sizes fall with it)
            allowed = self.rate.budget(end_time) - self._committed(now)
            for rp in sorted((p for p in self.points if p <= wanted), reverse=True):
                grid = self.tokenizer.encode(image, rp)
                payload = encode_tokens(grid.indices, self.tokenizer.token_model(rp))
                if len(payload) <= allowed:
                    break
            self.rate.note_keyframe(len(payload))
        else:
            grid = self.tokenizer.encode(image, wanted)
            payload = encode_tokens(grid.indices, self.tokenizer.token_model(grid.rate_point))
        tokens = KeyframeTokens(grid.codebook_id, grid.rate_point, tuple(int(n) for n in grid.indices.shape),
                                tuple(grid.image_size), payload)
        decoded = self.tokenizer.decode(grid)
        if decoded.shape[:2] != image.shape[:2]:
            decoded = cv2.resize(decoded, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
        coder = ResidualCoder(image, decoded) if level.step or self.rate.active else None
        residual = coder.code(level.step) if level.step else None
        return tokens, residual, decoded if residual is None else apply(decoded, residual), coder

    # -- splitting and coding -------------------------------------------------------------------------------------
    def _code(self, seg: ClipSegment) -> list[_Part]:
        """Code ``seg``'s keyframe and forward motion, splitting it where a frame's prediction fails."""
        parts: list[_Part] = []
        start = 0
        while start < len(seg.frames):
            now = float(seg.pts[start] * seg.time_base)
            level = self.rate.level(now, self._committed(now))
            end_time = seg.end_time
            tokens, residual, decoded, coder = self._keyframe(seg.frames[start], level, now,
                                                              min(end_time, now + self.rate.HORIZON))
            search = self.search[level]
            ref = search.analyse(seg.frames[start])
            ref["decoded"] = search.analyse(decoded)["rgb"]
            # a refreshed frame would cost another keyframe and look about like this one: refresh only where the
            # prediction is worse than the keyframe by more than the level's margin
            limit = search.distortion(ref["decoded"], ref) + level.refresh
            part = _Part([seg.frames[start]], [seg.pts[start]], seg.scene_cut and start == 0, end_time, level,
                         tokens, decoded, [ref], residual=residual, coder=coder)
            history = []
            t = start + 1
            while t < len(seg.frames):
                frame = search.analyse(seg.frames[t])
                choice = search.choose(frame, ref, history, search.moved(frame, part.analysed[-1]))
                if self.opts["refresh"] and choice.distortion > limit and self.rate.can_refresh(
                        float(seg.pts[t] * seg.time_base), self._committed(now) + _estimate(part, False)):
                    log.debug("frame %d: prediction distortion %.3f over %.3f: refresh", t, choice.distortion, limit)
                    break
                part.frames.append(seg.frames[t])
                part.pts.append(seg.pts[t])
                part.analysed.append(frame)
                part.forward.append(choice)
                history.append(choice.motion)
                t += 1
            if t < len(seg.frames):
                part.end_time = float(seg.pts[t] * seg.time_base)
            self._pending += _estimate(part, not self.rate.active)
            parts.append(part)
            start = t
        return parts

    def _finish(self, part: _Part, following: _Part | None, time_base) -> ClipSegment:
        """The coded segment of a part, with motion to the following keyframe when there is one."""
        search = self.search[part.level]
        frames = [FrameMotion(c.motion) for c in part.forward]
        bidirectional = False
        if following is not None and self.opts["bidir"] and part.forward:
            ref = dict(following.analysed[0])
            ref["decoded"] = search.analyse(following.decoded)["rgb"]
            history = []
            for motion, prev, frame, before in zip(frames, part.forward, part.analysed[1:], part.analysed):
                nxt = search.choose(frame, ref, history, search.moved(frame, before))
                history.append(nxt.motion)
                motion.next = nxt.motion
                motion.weight, _ = search.blend_weight(prev, nxt, frame)
            bidirectional = any(m.weight for m in frames)
            if not bidirectional:
                for m in frames:
                    m.next = None
        motion = SegmentMotion(frames, bidirectional, search.grid_shape if any(
            c.motion.grid is not None for c in part.forward) or any(
            m.next is not None and m.next.grid is not None for m in frames) else (0, 0)) if frames else None
        regular = part.pts == frame_pts_cfr(part.pts[0], len(part.pts), self.info)
        header = SegmentHeader(self._index, part.pts[0], len(part.pts), 0, SCENE_CUT if part.scene_cut else 0)
        self._pending -= _estimate(part, not self.rate.active)
        unit = Segment(header, part.tokens, motion=motion, frame_pts=None if regular else list(part.pts))
        if self.rate.active and part.coder is not None:
            part.residual = self._fill(part, unit)
        unit.residual = part.residual
        self._handed += len(encode_segment(unit)) + self._last_text + self.rate.frame_overhead * (len(part.pts) - 1)
        out = ClipSegment(self._index, part.frames[0], part.pts, time_base, samples=_samples(part.frames),
                          end_time=part.end_time, scene_cut=part.scene_cut, frames=part.frames, unit=unit)
        out.motion_words = motion_words(motion, self.info.width, self.info.height, len(part.pts))
        self._index += 1
        return out

    def _committed(self, now: float) -> float:
        """Bytes the stream holds before ``now``: what was handed on plus what is coded and waiting — and, under
        -b:v, at least the budget earned by ``now``, since waiting segments are filled up to it (``_fill``)."""
        known = self.rate.spent + self._handed + self._pending + self._last_text
        return max(known, self.rate.budget(now)) if self.rate.active else known

    def _fill(self, part: _Part, unit: Segment) -> KeyframeResidual | None:
        """-b:v: the keyframe residual whose step brings the stream closest to the budget earned by the part's end
        without passing it (none when even the coarsest does not fit): rate control's fine knob."""
        base = len(encode_segment(unit)) + self._last_text + 3 + self.rate.frame_overhead * (len(part.pts) - 1)
        room = self.rate.budget(part.end_time) - self.rate.spent - self._handed - self._pending - base
        steps = RESIDUAL_STEPS
        best = None
        lo, hi = 0, len(steps) - 1  # sizes fall as the step grows: find the finest step that fits
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = part.coder.code(steps[mid])
            if len(encode_residual(candidate)) <= room:
                best, hi = candidate, mid - 1
            else:
                lo = mid + 1
        return best

    def process(self, seg: ClipSegment):
        self._account()
        parts = self._code(seg)
        out = []
        if self._held is not None:
            out.append(self._finish(self._held, None if seg.scene_cut else parts[0], seg.time_base))
        out += [self._finish(a, b, seg.time_base) for a, b in zip(parts, parts[1:])]
        self._held = parts[-1]
        self._unaccounted += out
        self._time_base = seg.time_base
        for o in out:
            log.debug("segment %d: %d frames, keyframe rate point %s", o.index, len(o.pts),
                      "none (tt2v)" if o.unit.tokens is None else o.unit.tokens.rate_point)
        return out

    def flush(self):
        self._account()
        if self._held is not None:
            yield self._finish(self._held, None, self._time_base)
            self._held = None

    def _account(self) -> None:
        """Count the segments handed on once ``describe`` serialised them (their texts included), and learn what the
        texts add to a segment (estimated for the segments still being coded)."""
        for seg in self._unaccounted:
            self.rate.record(seg.size + self.rate.frame_overhead * (len(seg.pts) - 1))
            unit = seg.unit
            if unit.frame_text or unit.clip_text:
                self._last_text = len(text_payload(unit.frame_text, unit.clip_text)) + 6  # + the unit's framing
        self._unaccounted = []
        self._handed = 0


def _estimate(part: _Part, residual: bool = True) -> int:
    """Bytes a coded part will take, as far as known before it is finished (motion: ~3 bytes a frame); without
    the keyframe residual when it is still to be re-coded (-b:v)."""
    tokens = len(part.tokens.payload) if part.tokens is not None else 0
    extra = len(encode_residual(part.residual)) if residual and part.residual is not None else 0
    return tokens + extra + 3 * len(part.forward)  # the container's per-frame bytes are counted when handed on


def _samples(frames: list[np.ndarray], count: int = 8) -> list[np.ndarray]:
    """At most ``count`` evenly spaced frames (for the clip description)."""
    step = max(1, -(-len(frames) // count))
    return frames[::step]


def motion_words(motion: SegmentMotion | None, width: int, height: int, frames: int) -> str:
    """The camera motion the layer carries, in words: "still", or e.g. "camera pans left, zooms in; slow"."""
    if motion is None or not motion.frames:
        return "still"
    last = motion.frames[-1].prev
    c = np.asarray(last.corners, np.float64).reshape(4, 2) / 8.0
    diag = float(np.hypot(width, height))
    shift = c.mean(axis=0)  # where the frame's content sits in the keyframe, relative: the camera moved this way
    # zoom: the frame's corners spread in the keyframe compared with the frame itself
    span = (np.hypot(width - 1 + c[1, 0] - c[0, 0], c[1, 1] - c[0, 1]) / max(width - 1, 1)) - 1.0
    words = []
    speed = float(np.hypot(*shift)) / diag / max(frames - 1, 1) * 25
    if abs(shift[0]) > 0.02 * diag or abs(shift[1]) > 0.02 * diag:
        if abs(shift[0]) >= abs(shift[1]):
            words.append("camera pans " + ("right" if shift[0] > 0 else "left"))
        else:
            words.append("camera tilts " + ("down" if shift[1] > 0 else "up"))
    if abs(span) > 0.03:
        words.append("zooms " + ("out" if span > 0 else "in"))
    if last.grid is not None and motion.grid_shape != (0, 0):
        local = np.abs(last.grid).mean() / 4.0 / diag
        if local > 0.01:
            words.append("objects move")
    if not words:
        return "still"
    pace = "slow" if speed < 0.05 else "moderate" if speed < 0.2 else "fast"
    return f"{', '.join(words)}; {pace}"
