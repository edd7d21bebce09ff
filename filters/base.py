"""base: every frame's pixels, coded as AV1 at a reduced size (``bitstream.av1``), one closed AV1 sequence per
segment so that a segment decodes alone and its first frame is an AV1 key frame. It completes each segment's unit
(header, the texts and tokens of the nodes before it, the base) and serialises it once: what the muxer writes.

The coded size and the CRF come from the quality ladder (``-q``) or, under ``-b:v``, from rate and distortion: the
coded size is measured (candidates around the size where the budget buys about ``BPP_GUESS`` bits a pixel, each
coded at the budget, upscaled and compared with the source by MS-SSIM) at the first segment and at every scene cut,
and each segment's CRF is searched until its bytes land on what the budget allows. With ``mode="tt2v"`` no base is
written (CMVC's text-only stream).

Over the base, for profiles with diffusion: keyframe tokens K* (``tokenize``) travel only where they restore the
keyframe better than the base's first picture (``tokens=auto``), and each segment's GEN_PARAMS say what the decoder's
generators do over its base (``filters.conditioning``)."""
from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction

import cv2
import numpy as np

from m3cvcav.bitstream import av1
from m3cvcav.bitstream.units import (SCENE_CUT, BaseLayer, Segment, SegmentHeader, encode_base,
                                     encode_segment, frame_pts_cfr)
from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import get_logger
from m3cvcav.core.quality import mean_ms_ssim, ms_ssim

from .conditioning import CHOICES, Conditioner
from .items import ClipSegment, VideoInfo
from .node import Node
from .options import Option
from .ratecontrol import LEVELS, RateControl

log = get_logger(__name__)
# the coded sizes -b:v chooses from, as a share of the display size's sides
SCALES = (1 / 16, 1 / 12, 1 / 8, 3 / 16, 1 / 4, 5 / 16, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1.0)
BPP_GUESS = 0.01  # bits per coded pixel and frame around which the best coded size tends to lie (first candidate)
RATE_TOLERANCE = 0.03  # a segment's base within 3 % of its allowance is accepted
MAX_PASSES = 8
FIRST_CRF, FIRST_BPP = 58.0, 0.04  # where SVT-AV1's CRF lands at that many bits a pixel (measured, 288p-720p clips)
SLOPE = -math.log(2) / 8  # d ln(bytes) / d CRF before two encodes measure it: half the rate every 8 CRF steps
PROBE_SECONDS = 2.0  # frames of a segment the coded-size choice encodes
QUALITY_FRAMES = 4  # frames of the probe compared with the source
SLOW_PRESET, SLOW_PIXELS = 8, 640 * 360  # measured: preset 8 gains ~0.004 MS-SSIM over 10 at equal rate (vtest,
# 20 kbit/s); it costs 1.5x the time, affordable on small coded pictures, not on 720p (rate search passes)
BASE_FRAMING = 12  # bytes of the BASE unit beyond its temporal units (framing, coded size, counts), plus 1 a frame


class Base(Node):
    NAME = "base"
    HELP = "code every frame's pixels as AV1 (libsvtav1) at the coded size rate and distortion pick"
    OPTIONS = (
        Option("q", int, -1, f"quality level 0..{len(LEVELS) - 1} (higher: larger picture, finer CRF; -1: the "
               "default, or chosen by -b:v)", range=(-1, len(LEVELS) - 1)),
        Option("size", str, "auto", "coded size: auto (the ladder, or measured under -b:v), a share of the display "
               "size (1/4, 0.5) or WxH"),
        Option("preset", int, -1, "SVT-AV1 preset 0..13 (higher: faster, larger at equal quality; -1: "
               f"{SLOW_PRESET} up to {SLOW_PIXELS} coded pixels, {av1.DEFAULT_PRESET} above)", range=(-1, 13)),
        Option("diffusion", str, "auto", "what the decoder's diffusion does per segment (profiles with a keyframe "
               "generator): auto (from the base's quality), measure (run it here, keep it where it helps), on, off",
               choices=CHOICES),
        Option("tokens", str, "auto", "keyframe tokens K* (profiles with a tokenizer): auto (kept where they restore "
               "the keyframe better than the base's first picture), keep (always, as M3-CVC codes keyframes)",
               choices=("auto", "keep")),
    )

    def __init__(self, positional=None, *, engines=None, rate: RateControl | None = None, mode: str = "it2v",
                 **named):
        super().__init__(positional, **named)
        self.engines = engines
        self.rate = rate or RateControl()
        self.mode = mode
        if self.opts["q"] >= 0 and self.rate.quality is None:
            self.rate.quality = self.opts["q"]
        if self.rate.quality is not None and not 0 <= self.rate.quality < len(LEVELS):
            raise UsageError(f"-q {self.rate.quality}: give a quality level from 0 to {len(LEVELS) - 1}")
        if mode == "tt2v" and self.rate.quality is not None:
            raise UsageError("-q picks the quality of the base pictures, and -mode tt2v writes none: drop one")
        self._size: tuple[int, int] | None = None
        self._model: tuple[tuple[int, int], float, float] | None = None  # (size, crf, bytes a frame) last coded

    def configure(self, info: VideoInfo) -> VideoInfo:
        self.info = info
        self._fixed_size = parse_coded_size(self.opts["size"], info.width, info.height)
        self.enhancer = self.engines.optional("enhancer") if self.mode != "tt2v" else None
        self.conditioner = Conditioner(self.engines, self.mode, self.opts["diffusion"])
        self.tokenizer = self.engines.optional("tokenizer") if self.mode != "tt2v" else None
        return info

    # -- segments -------------------------------------------------------------------------------------------------
    def process(self, seg: ClipSegment):
        header = SegmentHeader(seg.index, seg.pts[0], len(seg.pts), 0, SCENE_CUT if seg.scene_cut else 0)
        unit = seg.unit if isinstance(seg.unit, Segment) else Segment(header)  # with tokenize's K*, or bare
        unit.header = header
        unit.frame_text, unit.clip_text = seg.frame_text, seg.clip_text
        if seg.pts != frame_pts_cfr(seg.pts[0], len(seg.pts), self.info):
            unit.frame_pts = list(seg.pts)
        unit.params = self.conditioner.placeholder(seg.index)  # its size is counted before its values are known
        packet = encode_segment(unit)  # the segment's units before its base (the base units close it)
        if self.mode != "tt2v":
            unit.base = self._code(seg, len(packet))
            self.rate.note_keyframe(len(unit.base.units[0]))
            if unit.tokens is not None or unit.params is not None:
                pictures, upscale = av1.decode(unit.base.units), self._upscaler(unit.base)
                if unit.tokens is not None and self.opts["tokens"] == "auto" \
                        and not self._tokens_help(seg, unit, upscale(pictures[0])):
                    unit.tokens = None
                if unit.params is not None:  # the chosen values, in the bytes the placeholder held
                    unit.params = self.conditioner.choose(seg.index, seg.frames, pictures, upscale, seg.frame_text,
                                                          seg.clip_text)
                packet = encode_segment(dataclasses.replace(unit, base=None))
            packet += encode_base(unit.base, len(seg.pts))
        seg.unit, seg.packet = unit, packet  # what the muxer writes
        self.rate.record(len(seg.packet) + self.rate.frame_overhead * (len(seg.pts) - 1))
        log.debug("segment %d: %d frames, base %dx%d, %d bytes", seg.index, len(seg.pts),
                  *(unit.base.size if unit.base else (0, 0)), len(seg.packet))
        return (seg,)

    def _code(self, seg: ClipSegment, head: int) -> BaseLayer:
        """The base of ``seg``, whose other units take ``head`` bytes."""
        frames = seg.frames
        if not self.rate.active:
            level = self.rate.level()
            size = self._fixed_size or av1.coded_size(self.info.width, self.info.height, level.scale)
            units = av1.encode(frames, size, self.info.fps, level.crf, self._preset(size))
            return BaseLayer(size, units, self._enhancement(frames, units))
        start = float(seg.pts[0] * seg.time_base)
        fixed = head + BASE_FRAMING + len(frames) * (1 + self.rate.frame_overhead)
        allowance = self.rate.allowance(start, seg.end_time, fixed)
        if self._fixed_size is not None:
            self._size = self._fixed_size
        elif self._size is None or seg.scene_cut:
            self._size = self._choose_size(frames, allowance)
        units, _ = self._fit(frames, self._size, allowance)
        return BaseLayer(self._size, units, self._enhancement(frames, units))

    def _preset(self, size: tuple[int, int]) -> int:
        """The user's SVT-AV1 preset, else the slower one while the coded picture is small enough to stay fast."""
        if self.opts["preset"] >= 0:
            return self.opts["preset"]
        return SLOW_PRESET if size[0] * size[1] <= SLOW_PIXELS else av1.DEFAULT_PRESET

    def _upscaler(self, base: BaseLayer):
        """The decoder's upscale of this base's pictures to the display size (with its enhancement variant)."""
        size = (self.info.width, self.info.height)
        if base.enhancement:
            return lambda p: self.enhancer.upscale(p, size, base.enhancement)
        return lambda p: av1.upscale(p, size)

    def _tokens_help(self, seg: ClipSegment, unit: Segment, base_keyframe: np.ndarray) -> bool:
        """Whether the keyframe tokens K* restore the keyframe better than the base's first picture (MS-SSIM against
        the source): the decoder starts the keyframe from the tokens where a segment has them, so tokens that do not
        help would cost their bytes and lower the picture; they are dropped (their bytes go to later segments)."""
        decoded = self.tokenizer.decompress(unit.tokens)
        size = (self.info.width, self.info.height)
        if decoded.shape[:2] != size[::-1]:
            decoded = cv2.resize(decoded, size, interpolation=cv2.INTER_CUBIC)
        tokens, base = ms_ssim(seg.keyframe, decoded), ms_ssim(seg.keyframe, base_keyframe)
        if tokens <= base:
            log.debug("segment %d: keyframe tokens dropped (MS-SSIM %.4f, the base's first picture %.4f)", seg.index,
                      tokens, base)
        return tokens > base

    # -- the decoder's enhancement ----------------------------------------------------------------------------------
    def _picks(self, count: int) -> np.ndarray:
        return np.linspace(0, count - 1, min(QUALITY_FRAMES, count)).round().astype(int)

    def _enhancement(self, frames: list[np.ndarray], units: list[bytes]) -> int:
        """The variant of the profile's enhancer that restores this segment best (0, bicubic, without one)."""
        if self.enhancer is None:
            return 0
        picks = self._picks(len(frames))
        pictures = av1.decode(units)
        return self.enhancer.choose([frames[k] for k in picks], [pictures[k] for k in picks],
                                    (self.info.width, self.info.height))

    def _quality(self, frames: list[np.ndarray], pictures: list[np.ndarray]) -> float:
        """MS-SSIM of the decoder's best output (the enhancer's variants, or bicubic) against ``frames``."""
        size = (self.info.width, self.info.height)
        if self.enhancer is None:
            return mean_ms_ssim(frames, [av1.upscale(p, size) for p in pictures])
        outputs = [self.enhancer.candidates(p, size) for p in pictures]
        return max(mean_ms_ssim(frames, [o[v] for o in outputs]) for v in range(len(outputs[0])))

    # -- rate: the CRF that lands on a byte allowance ------------------------------------------------------------
    def _fit(self, frames: list[np.ndarray], size: tuple[int, int], allowance: float) -> tuple[list[bytes], float]:
        """The temporal units of ``frames`` at ``size`` whose bytes come closest to ``allowance`` without passing
        it by more than the tolerance (the smallest when none fits), and their CRF: secant steps on ln(bytes)."""
        tried: dict[float, list[bytes]] = {}
        crf = self._first_crf(size, allowance / len(frames))
        pictures = av1.pictures(frames, size)
        for _ in range(MAX_PASSES):
            units = av1.encode(pictures, size, self.info.fps, crf, self._preset(size))
            tried[crf] = units
            nbytes = sum(map(len, units))
            if abs(nbytes / allowance - 1) <= RATE_TOLERANCE:
                break
            crf = self._next_crf(tried, allowance)
            if crf is None:
                break
        fitting = [c for c, u in tried.items() if sum(map(len, u)) <= allowance * (1 + RATE_TOLERANCE)]
        chosen = min(fitting) if fitting else max(tried)
        units = tried[chosen]
        log.debug("%dx%d, %d frames, allowance %d bytes: CRF %s", *size, len(frames), allowance,
                  ", ".join(f"{c:g} → {sum(map(len, u))}" for c, u in tried.items()))
        self._model = (size, chosen, sum(map(len, units)) / len(frames))
        return units, chosen

    def _first_crf(self, size: tuple[int, int], per_frame: float) -> float:
        """The CRF the last coded segment's rate predicts for ``per_frame`` bytes a frame (a mid-scale guess first)."""
        if self._model is None:
            bpp = 8 * max(per_frame, 1.0) / (size[0] * size[1])
            return _quarter(FIRST_CRF + math.log(bpp / FIRST_BPP) / SLOPE)
        model_size, crf, rate = self._model
        rate *= size[0] * size[1] / (model_size[0] * model_size[1])
        return _quarter(crf + math.log(max(per_frame, 1.0) / max(rate, 1.0)) / SLOPE)

    @staticmethod
    def _next_crf(tried: dict[float, list[bytes]], allowance: float) -> float | None:
        """The next CRF to try (None when the search is done: the CRF scale's end, or a step already taken)."""
        points = sorted((c, math.log(max(sum(map(len, u)), 1))) for c, u in tried.items())
        last = next(reversed(tried))  # the latest encode
        nbytes = sum(map(len, tried[last]))
        slope = SLOPE
        below = [p for p in points if p[1] > math.log(allowance)]  # CRFs too large in bytes
        above = [p for p in points if p[1] <= math.log(allowance)]
        if below and above:  # bracketed: interpolate between the closest pair
            (c0, l0), (c1, l1) = below[-1], above[0]
            if c1 - c0 <= 0.25:
                return None
            slope = (l1 - l0) / (c1 - c0) if l1 != l0 else SLOPE
            # halfway between the secant's guess and the bracket's middle: no one-sided creep (regula falsi)
            crf = _quarter(0.5 * (c0 + (math.log(allowance) - l0) / slope) + 0.25 * (c0 + c1))
            crf = min(max(crf, c0 + 0.25), c1 - 0.25)
        else:
            if len(points) >= 2 and points[-1][1] != points[0][1]:
                slope = min(-0.02, (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]))
            crf = _quarter(last + (math.log(allowance) - math.log(max(nbytes, 1))) / slope)
        crf = min(max(crf, av1.CRF_RANGE[0]), av1.CRF_RANGE[1])
        return None if crf in tried else crf

    # -- distortion: the coded size --------------------------------------------------------------------------------
    def _choose_size(self, frames: list[np.ndarray], allowance: float) -> tuple[int, int]:
        """The coded size whose base, at the allowance, looks most like the source once upscaled (MS-SSIM on a
        probe of the segment's first ``PROBE_SECONDS``): candidates from the ``BPP_GUESS`` size outwards while
        quality rises."""
        width, height = self.info.width, self.info.height
        probe = frames[:max(1, round(PROBE_SECONDS * float(self.info.fps)))]
        budget = allowance * len(probe) / len(frames)
        pixels = 8 * budget / len(probe) / BPP_GUESS
        guess = min(range(len(SCALES)), key=lambda i: abs(math.log(SCALES[i] ** 2 * width * height / pixels)))
        picks = self._picks(len(probe))
        scored: dict[int, float] = {}
        models: dict[int, tuple[tuple[int, int], float, float]] = {}  # the rate each candidate measured

        def score(i: int) -> float:
            """MS-SSIM of the probe at SCALES[i] and the allowance; -1 when even the coarsest CRF passes it."""
            if i not in scored:
                size = av1.coded_size(width, height, SCALES[i])
                units, _ = self._fit(probe, size, budget)
                models[i] = self._model
                if sum(map(len, units)) > budget * (1 + RATE_TOLERANCE) and i > 0:
                    scored[i] = -1.0
                else:
                    pictures = av1.decode(units)
                    scored[i] = self._quality([probe[k] for k in picks], [pictures[k] for k in picks])
            return scored[i]

        best = guess
        for step in (-1, 1):  # walk each way while the picture gets better
            i = guess
            while 0 <= i + step < len(SCALES) and (score(i + step) > score(i) or step < 0 and score(i) < 0):
                i += step
            if score(i) > score(best):
                best = i
        self._model = models[best]  # the segment's first CRF guess: what its probe measured at that size
        size = av1.coded_size(width, height, SCALES[best])
        log.debug("coded size %dx%d (MS-SSIM %s)", *size,
                  ", ".join(f"{SCALES[i]:.3g}: {q:.4f}" for i, q in sorted(scored.items())))
        return size


def _quarter(crf: float) -> float:
    return min(max(round(crf * 4) / 4, av1.CRF_RANGE[0]), av1.CRF_RANGE[1])


def parse_coded_size(text: str, width: int, height: int) -> tuple[int, int] | None:
    """``auto`` → None; a share of the display size (``1/4``, ``0.5``) or ``WxH`` → an even size no larger than
    the display's."""
    text = text.strip().lower()
    if text == "auto":
        return None
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if match:
        w, h = int(match[1]), int(match[2])
        if not (2 <= w <= width and 2 <= h <= height):
            raise UsageError(f"base=size={text}: give a size from 2x2 to the picture's {width}x{height}")
        return av1.even(w, width), av1.even(h, height)
    try:
        scale = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"base=size={text!r}: give auto, a share of the picture such as 1/4, or WxH") from None
    if not 0 < scale <= 1:
        raise UsageError(f"base=size={text}: a share of the picture must be above 0 and at most 1")
    return av1.coded_size(width, height, scale)
