"""Baseline encoders through PyAV (libx264, libx265, libsvtav1; VVC when FFmpeg has libvvenc) with a CRF search that
hits target bitrates: per target, secant steps on log(rate) over the integer CRF scale (≤ 5 encodes, results cached),
keeping the CRF whose measured rate is closest. Below the codec's maximum CRF, SVT-AV1 switches to its VBR rate control
at the target (its CRF 63 keeps a large keyframe; VBR reaches about half that rate; SVT-AV1 refuses rate control on
pictures under 64 px a side); whatever rate is still above the target is the codec's floor, kept and flagged.
A reduced-size baseline (``x265@1/2``, ``svtav1@1/4``: :func:`lookup`) encodes the picture scaled down to 1/k of its
width and height (even sizes, swscale bicubic, as ``ffmpeg -vf scale`` does) and its decode is scaled back up to the
source size (bicubic) before metrics: what a user gets by encoding a smaller picture at a low rate.
Rate = the elementary stream's bytes (sum of packet sizes, no container; x264's informational SEI dropped, x265's
info SEI off)."""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr unless told to keep to errors


@dataclass(frozen=True)
class Baseline:
    name: str  # label in the report
    encoder: str
    decoder: str
    crf_range: tuple[int, int]
    crf_per_halving: float  # CRF steps that roughly halve the rate: the secant search's first slope
    options: tuple[tuple[str, str], ...]
    vbr_below_floor: bool = False  # below max CRF, try the encoder's VBR at the target bitrate
    vbr_min_side: int = 0  # ... on pictures at least this many pixels a side (smaller ones refuse rate control)
    divisor: int = 1  # the picture is coded at 1/divisor of the source's width and height


BASELINES = (
    Baseline("x264", "libx264", "h264", (0, 51), 6.0, (("preset", "medium"),)),
    Baseline("x265", "libx265", "hevc", (0, 51), 6.0,
             (("preset", "medium"), ("x265-params", "log-level=error:info=0"))),
    Baseline("svtav1", "libsvtav1", "libdav1d", (1, 63), 8.0, (("preset", "8"),), vbr_below_floor=True,
             vbr_min_side=64),  # under 64 px: "Adaptive quantization can not be turned OFF when RC ON"
    Baseline("vvc", "libvvenc", "vvc", (0, 63), 6.0, (("preset", "fast"),)),
)


def lookup(name: str) -> Baseline:
    """The baseline called ``name``: one of :data:`BASELINES`, or ``NAME@1/k`` for it at 1/k of the picture size."""
    base, at, scale = name.partition("@")
    b = next((x for x in BASELINES if x.name == base), None)
    k = scale[2:] if scale.startswith("1/") else ""
    if b is None or (at and not (k.isdigit() and int(k) >= 2)):
        raise ValueError(f"unknown baseline {name!r}: choose from {', '.join(x.name for x in BASELINES)}, "
                         "optionally at a reduced size as NAME@1/k (k ≥ 2, e.g. x265@1/2)")
    return replace(b, name=name, divisor=int(k)) if at else b


def coded_size(b: Baseline, width: int, height: int) -> tuple[int, int]:
    """The size ``b`` codes a ``width``×``height`` picture at: 1/divisor of each side, rounded to an even size."""
    w, h = (max(2, 2 * round(n / (2 * b.divisor))) for n in (width, height))
    return w, h


def resize(frames: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """I420 planes scaled to ``width``×``height`` with swscale's bicubic filter (``ffmpeg -vf scale``'s default)."""
    out = []
    for planes in frames:
        if planes.shape != (height * 3 // 2, width):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            planes = frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()
        out.append(planes)
    return out


def shrink(b: Baseline, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Source frames at the size ``b`` codes them at (unchanged for a full-size baseline)."""
    h, w = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    return resize(frames, *coded_size(b, w, h))


def available(b: Baseline) -> str | None:
    """None when usable, else why not."""
    missing = [c for c, mode in ((b.encoder, "w"), (b.decoder, "r")) if not _has(c, mode)]
    if not missing:
        return None
    return f"PyAV's FFmpeg has no {' / '.join(missing)} (libavcodec {av.library_versions['libavcodec']})"


def _has(codec: str, mode: str) -> bool:
    try:
        av.codec.Codec(codec, mode)
        return True
    except (av.error.FFmpegError, ValueError):
        return False


VBR_TOLERANCE = 1.15  # a VBR encode more than 15% above its target is the encoder's floor


@dataclass
class Encoded:
    param: str
    bytes: int
    packets: list[bytes]
    encode_s: float


def encode(b: Baseline, frames: list[np.ndarray], fps: Fraction, crf: int | None = None,
           vbr_kbps: float | None = None) -> Encoded:
    """One encode of ``frames`` (at the coded size: :func:`shrink`) at ``crf`` or, with ``vbr_kbps``, in the
    encoder's VBR mode at that bitrate."""
    if (crf is None) == (vbr_kbps is None):
        raise ValueError("give either crf or vbr_kbps")
    h, w = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    cc = av.CodecContext.create(b.encoder, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    cc.time_base = 1 / fps
    cc.framerate = fps
    if crf is not None:
        cc.options = {**dict(b.options), "crf": str(crf)}
    else:
        cc.bit_rate = max(1000, int(round(vbr_kbps * 1000)))
        cc.options = dict(b.options)
    start = time.perf_counter()
    packets = []
    for i, planes in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = i
        packets += [bytes(p) for p in cc.encode(frame)]
    packets += [bytes(p) for p in cc.encode(None)]
    if b.encoder == "libx264":
        packets = [strip_h264_sei(p) for p in packets]
    param = f"crf={crf}" if crf is not None else f"vbr={vbr_kbps:.4g}k"
    return Encoded(param, sum(len(p) for p in packets), packets, time.perf_counter() - start)


def encode_param(b: Baseline, frames: list[np.ndarray], fps: Fraction, param: str) -> Encoded:
    """Encode source ``frames`` with a run's ``param`` as the report writes it: ``crf=N`` or ``vbr=Xk``."""
    kind, _, value = param.partition("=")
    if kind == "crf":
        return encode(b, shrink(b, frames), fps, crf=int(value))
    if kind == "vbr":
        return encode(b, shrink(b, frames), fps, vbr_kbps=float(value.rstrip("k")))
    raise ValueError(f"baseline parameter {param!r}: expected crf=N or vbr=Xk")


def strip_h264_sei(packet: bytes) -> bytes:
    """Drop SEI NAL units (type 6) from an Annex B H.264 packet: x264 writes its version and full option string there
    (~700 bytes), which no decoder needs and which would dominate a 2 s clip at ultra-low rates."""
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", packet)]  # a start code cannot overlap itself
    kept = []
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(packet)
        if k + 1 < len(starts) and packet[end - 1] == 0:
            end -= 1  # the next start code is a 4-byte one
        if packet[s + 3] & 0x1F != 6:
            kept.append(b"\x00\x00\x00\x01" + packet[s + 3:end])
    return b"".join(kept)


def decode(b: Baseline, packets: list[bytes], size: tuple[int, int] | None = None) -> tuple[list[np.ndarray], float]:
    """Decoded I420 planes, scaled (bicubic) to ``size`` (width, height) when given, and the seconds it took."""
    start = time.perf_counter()
    cc = av.CodecContext.create(b.decoder, "r")
    out = []
    for data in packets:
        out += [f.to_ndarray() for f in cc.decode(av.Packet(data))]
    out += [f.to_ndarray() for f in cc.decode(None)]
    if size is not None and out:
        out = resize(out, *size)
    return out, time.perf_counter() - start


def kbps(nbytes: int, frames: int, fps: Fraction) -> float:
    return nbytes * 8 / (frames / float(fps)) / 1000.0


def crf_search(b: Baseline, frames: list[np.ndarray], fps: Fraction, targets_kbps: list[float],
               max_encodes: int = 5) -> list[tuple[float, Encoded, bool]]:
    """Per target: (target, the closest encode, whether it is the codec's floor) for source ``frames`` (scaled to the
    coded size first). Distinct encodes only."""
    frames = shrink(b, frames)
    vbr = b.vbr_below_floor and min(frames[0].shape[1], frames[0].shape[0] * 2 // 3) >= b.vbr_min_side
    cache: dict[int, Encoded] = {}
    lo, hi = b.crf_range

    def rate(crf: int) -> float:
        if crf not in cache:
            cache[crf] = encode(b, frames, fps, crf)
        return kbps(cache[crf].bytes, len(frames), fps)

    chosen: dict[int, tuple[float, Encoded, bool]] = {}
    for target in sorted(targets_kbps, reverse=True):
        known = sorted(cache)
        crf = min(known, key=lambda c: abs(math.log(rate(c) / target))) if known else (lo + hi) * 2 // 3
        for _ in range(max_encodes):
            r = rate(crf)
            step = b.crf_per_halving * math.log2(r / target)
            above = [c for c in cache if rate(c) >= target]
            below = [c for c in cache if rate(c) < target]
            if above and below and min(below) - max(above) == 1:
                break  # neighbouring CRFs bracket the target: no integer CRF is closer
            nxt = int(min(hi, max(lo, round(crf + step))))
            if above and below:  # stay strictly inside the bracket
                nxt = min(max(nxt, max(above) + 1), min(below) - 1)
            if nxt == crf or nxt in cache or abs(math.log(r / target)) < 0.05:
                break
            crf = nxt
        best = min(cache, key=lambda c: abs(math.log(rate(c) / target)))
        enc, floor = cache[best], best == hi and rate(hi) > target
        if floor and vbr:
            vbr, got = vbr_search(b, frames, fps, target)
            if got < rate(hi):
                enc, floor = vbr, got > target * VBR_TOLERANCE
        key = enc.bytes  # the same stream from two settings is one point
        if floor:  # two floor encodes within 5% of each other are one floor point (VBR's floor wobbles a little)
            key = next((k for k, (_, e, f) in chosen.items() if f and abs(math.log(e.bytes / enc.bytes)) < 0.05), key)
        if key in chosen:
            floor = floor or chosen[key][2]
        chosen[key] = (target, enc, floor)
    return sorted(chosen.values(), key=lambda t: t[1].bytes)


def vbr_search(b: Baseline, frames: list[np.ndarray], fps: Fraction, target: float,
               tries: int = 3) -> tuple[Encoded, float]:
    """VBR encodes steered to ``target`` kbps (the request scaled by target / achieved after each overshoot): the
    closest encode and its rate."""
    best: tuple[Encoded, float] | None = None
    ask = target
    for _ in range(tries):
        enc = encode(b, frames, fps, vbr_kbps=ask)
        got = kbps(enc.bytes, len(frames), fps)
        if best is None or abs(math.log(got / target)) < abs(math.log(best[1] / target)):
            best = (enc, got)
        if abs(math.log(got / target)) < math.log(VBR_TOLERANCE) or (best[0] is not enc and got >= best[1]):
            break  # close enough, or asking for less no longer lowers the rate: the encoder's floor
        ask *= target / got
    return best
