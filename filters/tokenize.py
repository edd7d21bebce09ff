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

from m3cvcav.bitstream.framing import iter_units
from m3cvcav.bitstream.motion import FrameMotion, RefMotion, SegmentMotion
from m3cvcav.bitstream.residual import KeyframeResidual, encode_residual
from m3cvcav.bitstream.units import (INTER_KEYFRAME, MOTION, SCENE_CUT, TEXT, KeyframeTokens, Segment,
                                    SegmentHeader, encode_segment, frame_pts_cfr)
from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import get_logger

from .items import ClipSegment, VideoInfo
from .motion_search import Choice, MotionSearch
from .node import Node
from .options import Option
from .prediction import Warper
from .ratecontrol import LEVELS, REFERENCE_LEVEL, RESIDUAL_STEPS, Level, RateControl
from .residual import ResidualCoder, apply

log = get_logger(__name__)
GRID_CELLS = 16  # motion grid columns (rows follow the aspect); cells of at least 16 px
FROZEN = 0.4  # mean |Δ| (work size, code values) below which a predicted frame shows the previous picture again
INTER_REFRESH_BYTES = 160  # what -b:v expects a refresh that only keeps the picture moving to cost
FROZEN_COARSER = 2  # residual step factor of a refresh made only to keep the picture moving
INTER_MARGIN = 0.15  # a refresh whose prediction is this far past the refresh limit (1 − SSIM) gets new tokens
INTER_STEP = 300  # residual step of an inter keyframe at -q 6, 1.5 times coarser a level down (levels without a step)
SEGMENT_FRAMING = 24  # bytes a segment adds beyond its payloads (header unit, unit framing), for -b:v planning


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
    anchor: RefMotion | None = None  # an inter keyframe's motion to the previous keyframe
    base: np.ndarray | None = None  # what the residual corrects: the decoded tokens, or the inter prediction
    estimate: float = 0.0  # bytes counted for it while it waits


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

    def __init__(self, positional=None, *, engines=None, rate: RateControl | None = None, mode: str = "it2v",
                 **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.rate = rate or RateControl()
        self.mode = mode
        engines.check_mode(mode)
        if mode == "tt2v" and (self.opts["q"] >= 0 or self.rate.quality is not None):
            raise UsageError("-q picks the quality of the keyframe tokens, and -mode tt2v writes none: drop one")
        if self.opts["q"] >= 0 and self.rate.quality is None:
            self.rate.quality = self.opts["q"]
        if self.rate.quality is not None and not 0 <= self.rate.quality < len(LEVELS):
            raise UsageError(f"-q {self.rate.quality}: give a quality level from 0 to {len(LEVELS) - 1}")
        self._held: _Part | None = None
        self._index = 0
        self._pending = 0  # bytes of parts coded but not yet handed on
        self._motion_scale = 1.0  # coded motion bytes / the motion search's estimate, measured so far
        self._motion_guesses: dict[int, float] = {}  # segment index -> its motion estimate, until it is counted
        self._last_text = 0  # bytes the texts added to the last segment (estimate for the next)
        self._unaccounted: list[ClipSegment] = []  # handed on, bytes not yet counted by rate control

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        self.tokenizer = None if self.mode == "tt2v" else self.engines.engine("tokenizer")
        if self.tokenizer is not None:
            self.points = [rp.index for rp in self.tokenizer.rate_points]
        self.warper = Warper(info.width, info.height)
        cell = max(16, -(-info.width // GRID_CELLS))
        self.search = {lvl: MotionSearch(info.width, info.height, lam=lvl.lam,
                                         grid_cell=cell if self.opts["grid"] else 0) for lvl in LEVELS}
        self.rate.start(info.width, info.height, float(info.fps))
        return info

    # -- keyframes ------------------------------------------------------------------------------------------------
    def _keyframe(self, image: np.ndarray, level: Level, now: float, end_time: float):
        """Tokens at the level's rate point (or the largest the budget allows), the residual at the level's step,
        the decoded keyframe, the residual coder and what the residual corrects: (tokens, residual, decoded, coder,
        base)."""
        if self.tokenizer is None:  # tt2v: the decoder generates keyframes; motion is measured against the source
            return None, None, image, None, image
        wanted = min(level.rate_point, max(self.points))
        if self.rate.active:  # from the level's rate point down, until one fits the budget (sizes fall with it)
            allowed = self.rate.budget(end_time) - self._committed()
            for rp in sorted((p for p in self.points if p <= wanted), reverse=True):
                tokens = self.tokenizer.compress(image, rp)
                if len(tokens.payload) <= allowed:
                    break
            self.rate.note_keyframe(len(tokens.payload))
        else:
            tokens = self.tokenizer.compress(image, wanted)
        decoded = self.tokenizer.decompress(tokens)  # what every decoder reconstructs
        if decoded.shape[:2] != image.shape[:2]:
            decoded = cv2.resize(decoded, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
        coder = ResidualCoder(image, decoded) if level.step or self.rate.active else None
        residual = coder.code(level.step) if level.step else None
        return tokens, residual, decoded if residual is None else apply(decoded, residual), coder, decoded

    # -- splitting and coding -------------------------------------------------------------------------------------
    def _code(self, seg: ClipSegment) -> list[_Part]:
        """Code ``seg``'s keyframe and forward motion, splitting it where a frame's prediction fails: the frame then
        opens a part whose keyframe is its prediction plus a residual (an inter keyframe), or new tokens when the
        prediction is too far off to be worth correcting."""
        parts: list[_Part] = []
        start, refresh, limit, refresh_frozen = 0, None, 0.0, False
        while start < len(seg.frames):
            now = float(seg.pts[start] * seg.time_base)
            level = self.rate.level(now, self._committed())
            if refresh is not None and refresh.distortion <= limit + INTER_MARGIN and self.mode != "tt2v":
                part = self._inter_part(seg, start, parts[-1], refresh, level, refresh_frozen)
            else:
                tokens, residual, decoded, coder, base = self._keyframe(seg.frames[start], level, now,
                                                                        min(seg.end_time, now + self.rate.HORIZON))
                part = _Part([seg.frames[start]], [seg.pts[start]], seg.scene_cut and start == 0, seg.end_time,
                             level, tokens, decoded, residual=residual, coder=coder, base=base)
            search = self.search[level]
            ref = search.analyse(seg.frames[start])
            ref["decoded"] = search.analyse(part.decoded)["rgb"]
            part.analysed.append(ref)
            # a refreshed frame would cost another keyframe and look about like this one: refresh only where the
            # prediction is worse than the keyframe by more than the level's margin
            limit = search.distortion(ref["decoded"], ref) + level.refresh
            history, refresh, refresh_frozen = [], None, False
            shown = ref["decoded"].astype(np.float32)  # the picture the decoder shows before frame t
            t = start + 1
            while t < len(seg.frames):
                frame = search.analyse(seg.frames[t])
                moved = search.moved(frame, part.analysed[-1])
                choice = search.choose(frame, ref, history, moved)
                # refresh where the prediction fails, or where it would show the same picture again while the
                # source moves (local motion the global model and grid do not carry: no frozen frames)
                frozen = moved and float(np.abs(choice.prediction - shown).mean()) < FROZEN
                failed = choice.distortion > limit
                if self.opts["refresh"] and (failed or frozen) and self.rate.can_refresh(
                        float(seg.pts[t] * seg.time_base), self._committed() + _estimate(part, True,
                                                                                         self._motion_scale),
                        None if failed else INTER_REFRESH_BYTES):
                    log.debug("frame %d: prediction distortion %.3f over %.3f%s: refresh", t, choice.distortion,
                              limit, " (it would freeze)" if frozen else "")
                    refresh, refresh_frozen = choice, frozen and choice.distortion <= limit
                    break
                shown = choice.prediction
                part.frames.append(seg.frames[t])
                part.pts.append(seg.pts[t])
                part.analysed.append(frame)
                part.forward.append(choice)
                history.append(choice.motion)
                t += 1
            if t < len(seg.frames):
                part.end_time = float(seg.pts[t] * seg.time_base)
            if self.rate.active and part.coder is not None:
                self._fill(part)
            part.estimate = _estimate(part, True, self._motion_scale)
            self._pending += part.estimate
            parts.append(part)
            start = t
        return parts

    def _inter_part(self, seg: ClipSegment, start: int, previous: _Part, refresh: Choice, level: Level,
                    frozen: bool) -> _Part:
        """A part whose keyframe is the previous keyframe moved by the refreshed frame's motion, plus a residual
        (a coarse one when the refresh only keeps the picture from freezing)."""
        base = self.warper.predict(FrameMotion(refresh.motion), previous.decoded, None)
        coder = ResidualCoder(seg.frames[start], base)
        residual = coder.code(inter_step(level) * (FROZEN_COARSER if frozen else 1))
        return _Part([seg.frames[start]], [seg.pts[start]], False, seg.end_time, level, None, apply(base, residual),
                     residual=residual, coder=coder, anchor=refresh.motion, base=base)

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
        motions = [part.anchor] + [m.prev for m in frames] + [m.next for m in frames]
        gridded = any(m is not None and m.grid is not None for m in motions)
        motion = SegmentMotion(frames, bidirectional, search.grid_shape if gridded else (0, 0), part.anchor) \
            if frames or part.anchor is not None else None
        regular = part.pts == frame_pts_cfr(part.pts[0], len(part.pts), self.info)
        flags = (SCENE_CUT if part.scene_cut else 0) | (INTER_KEYFRAME if part.anchor is not None else 0)
        header = SegmentHeader(self._index, part.pts[0], len(part.pts), 0, flags)
        self._pending -= part.estimate
        if motion is not None and part.forward:  # compared with the coded motion once serialised (_account)
            self._motion_guesses[self._index] = _motion_guess(part)
        unit = Segment(header, part.tokens, motion=motion, frame_pts=None if regular else list(part.pts),
                       residual=part.residual)
        out = ClipSegment(self._index, part.frames[0], part.pts, time_base, samples=_samples(part.frames),
                          end_time=part.end_time, scene_cut=part.scene_cut, frames=part.frames, unit=unit)
        out.motion_words = motion_words(motion, self.info.width, self.info.height, len(part.pts))
        self._index += 1
        return out

    def _committed(self) -> float:
        """Bytes the stream holds so far: counted, and coded but waiting (texts estimated). Segments handed on are
        counted (``_account``) before anything is planned again: the chain runs each to the end first."""
        return self.rate.spent + self._pending + self._last_text

    def _fill(self, part: _Part) -> None:
        """-b:v, once a part's frames are known: the keyframe residual whose step brings the stream closest to the
        budget earned by the part's end without passing it (rate control's fine knob); none when even the coarsest
        does not fit, except for an inter keyframe, which keeps the coarsest."""
        frames = len(part.pts)
        fixed = _estimate(part, False, self._motion_scale) + SEGMENT_FRAMING + self._last_text + \
            self.rate.frame_overhead * (frames - 1)
        room = self.rate.budget(part.end_time) - self._committed() - fixed
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
        if best is None and part.anchor is not None:
            best = part.coder.code(steps[-1])
        part.residual = best
        part.decoded = part.base if best is None else apply(part.base, best)
        part.analysed[0]["decoded"] = self.search[part.level].analyse(part.decoded)["rgb"]

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
            kind = "inter keyframe" if o.unit.header.flags & INTER_KEYFRAME else "no tokens (tt2v)" \
                if o.unit.tokens is None else f"keyframe rate point {o.unit.tokens.rate_point}"
            log.debug("segment %d: %d frames, %s", o.index, len(o.pts), kind)
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
            packet = seg.packet or encode_segment(seg.unit)  # serialised by describe (here only without it)
            self.rate.record(len(packet) + self.rate.frame_overhead * (len(seg.pts) - 1))
            units = list(iter_units(packet))
            text = sum(unit.size for unit in units if unit.unit_type == TEXT)
            if text:
                self._last_text = text
            guess = self._motion_guesses.pop(seg.index, None)
            if guess is not None:  # learn how coded motion compares with the estimate (running mean)
                coded = sum(len(unit.payload) for unit in units if unit.unit_type == MOTION)
                self._motion_scale = 0.5 * (self._motion_scale + coded / max(guess, 1.0))
        self._unaccounted = []


def inter_step(level: Level) -> int:
    """The residual step of an inter keyframe: the level's keyframe step, else ``INTER_STEP`` scaled down the ladder."""
    return level.step or round(INTER_STEP * 1.5 ** max(0, REFERENCE_LEVEL - LEVELS.index(level)))


def _estimate(part: _Part, residual: bool = True, motion_scale: float = 1.0) -> float:
    """Bytes a coded part will take, as far as known before it is finished: tokens, the keyframe residual (unless
    ``residual`` is False) and the motion, estimated from the forward choices' bits for both references times
    ``motion_scale`` (what coded motion measured against that estimate so far)."""
    tokens = len(part.tokens.payload) if part.tokens is not None else 0
    extra = len(encode_residual(part.residual)) if residual and part.residual is not None else 0
    return tokens + extra + motion_scale * _motion_guess(part)  # the container's per-frame bytes: when handed on


def _motion_guess(part: _Part) -> float:
    """Bytes of a part's motion as the motion search's bit estimates see it (both references)."""
    return 2 * sum(c.bits for c in part.forward) / 8


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
