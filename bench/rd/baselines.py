"""Baseline encoders through PyAV (libx264, libx265, libsvtav1; VVC when FFmpeg has libvvenc) with a CRF search that
hits target bitrates: per target, secant steps on log(rate) over the integer CRF scale (≤ 5 encodes, results cached),
keeping the CRF whose measured rate is closest; below the codec's maximum CRF the floor rate is kept and flagged.
Rate = the elementary stream's bytes (sum of packet sizes, no container; x264's informational SEI dropped, x265's
info SEI off)."""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
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


BASELINES = (
    Baseline("x264", "libx264", "h264", (0, 51), 6.0, (("preset", "medium"),)),
    Baseline("x265", "libx265", "hevc", (0, 51), 6.0,
             (("preset", "medium"), ("x265-params", "log-level=error:info=0"))),
    Baseline("svtav1", "libsvtav1", "libdav1d", (1, 63), 8.0, (("preset", "8"),)),
    Baseline("vvc", "libvvenc", "vvc", (0, 63), 6.0, (("preset", "fast"),)),
)


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


@dataclass
class Encoded:
    param: str
    bytes: int
    packets: list[bytes]
    encode_s: float


def encode(b: Baseline, frames: list[np.ndarray], fps: Fraction, crf: int) -> Encoded:
    h, w = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    cc = av.CodecContext.create(b.encoder, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    cc.time_base = 1 / fps
    cc.framerate = fps
    cc.options = {**dict(b.options), "crf": str(crf)}
    start = time.perf_counter()
    packets = []
    for i, planes in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = i
        packets += [bytes(p) for p in cc.encode(frame)]
    packets += [bytes(p) for p in cc.encode(None)]
    if b.encoder == "libx264":
        packets = [strip_h264_sei(p) for p in packets]
    return Encoded(f"crf={crf}", sum(len(p) for p in packets), packets, time.perf_counter() - start)


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


def decode(b: Baseline, packets: list[bytes]) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    cc = av.CodecContext.create(b.decoder, "r")
    out = []
    for data in packets:
        out += [f.to_ndarray() for f in cc.decode(av.Packet(data))]
    out += [f.to_ndarray() for f in cc.decode(None)]
    return out, time.perf_counter() - start


def kbps(nbytes: int, frames: int, fps: Fraction) -> float:
    return nbytes * 8 / (frames / float(fps)) / 1000.0


def crf_search(b: Baseline, frames: list[np.ndarray], fps: Fraction, targets_kbps: list[float],
               max_encodes: int = 5) -> list[tuple[float, Encoded, bool]]:
    """Per target: (target, the closest encode, whether it is the codec's floor). Distinct CRFs only."""
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
        floor = best == hi and rate(hi) > target
        if best in chosen:
            floor = floor or chosen[best][2]
        chosen[best] = (target, cache[best], floor)
    return sorted(chosen.values(), key=lambda t: t[1].bytes)
