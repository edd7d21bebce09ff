"""The RD sweep: every clip through every baseline and profile at the target rates, metrics against the source."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import baselines as bl
from . import metrics as mt
from . import profile as pf
from .colour import yuv420_to_rgb
from .corpus import Clip, clip_path
from .video import read_video


@dataclass
class Run:
    """One rate point of one codec on one clip (``mid`` is its decoded middle frame, for the crops; not in the JSON)."""

    codec: str
    param: str
    targets_bpp: list[float]
    bytes: int
    kbps: float
    bpp: float
    floor: bool
    encode_s: float
    decode_s: float
    frames: int
    per_frame: dict[str, list[float]]
    mid: np.ndarray | None = field(default=None, repr=False)

    def mean(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.per_frame.items() if v}

    def to_json(self) -> dict:
        return {"param": self.param, "targets_bpp": self.targets_bpp, "bytes": self.bytes, "kbps": self.kbps,
                "bpp": self.bpp, "floor": self.floor, "encode_s": self.encode_s, "decode_s": self.decode_s,
                "frames": self.frames, "metrics": self.mean(), "per_frame": self.per_frame}


@dataclass
class ClipResult:
    clip: Clip
    source_warp_err: float
    source_mid: np.ndarray
    sample: list[int]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _rate(nbytes: int, frames: int, fps: Fraction, w: int, h: int) -> tuple[float, float]:
    bits = nbytes * 8
    return bits / (frames / float(fps)) / 1000.0, bits / (frames * w * h)


def evaluate_clip(folder: Path, clip: Clip, baselines: list[bl.Baseline], profiles: list[str], bpps: list[float],
                  avail: mt.Availability, sample: int | None = None, qs: list[int] | None = None,
                  log=print) -> ClipResult:
    path = clip_path(folder, clip)
    video = read_video(path, clip.colour_spec())
    w, h, n, fps = video.width, video.height, len(video.frames), video.fps
    ref = mt.prepare(video.frames, video.colour, avail, str(path), sample)
    result = ClipResult(clip, ref.warp_err, ref.rgb[n // 2], ref.sample)
    per_sec = w * h * float(fps) / 1000.0  # kbps per bpp
    for b in baselines:
        targets = [bpp * per_sec for bpp in bpps]
        runs = []
        for target, enc, floor in bl.crf_search(b, video.frames, fps, targets):
            planes, dec_s = bl.decode(b, enc.packets)
            runs.append(_run(b.name, enc.param, enc.bytes, floor, enc.encode_s, dec_s, planes, ref, avail, fps, w, h))
        _assign_targets(runs, bpps)
        result.runs[b.name] = runs
        log(f"  {clip.name} {b.name}: " + ", ".join(f"{r.param} {r.kbps:.1f} kbps" for r in runs))
    for name in profiles:
        runs: list[Run] = []
        for q in pf.rate_points(name) if qs is None else qs:
            try:
                res = pf.run(name, path, video.colour, q, n)
            except Exception as exc:  # the profile's own error, recorded per rate point in the report
                result.failures[f"{name} q={q}"] = f"{type(exc).__name__}: {exc}"
                log(f"  {clip.name} {name} q={q} failed: {type(exc).__name__}: {exc}")
                continue
            if any(r.bytes == res.bytes for r in runs):
                continue  # the same stream as a lower rate point: one curve point
            runs.append(_run(name, res.param, res.bytes, False, res.encode_s, res.decode_s, res.planes, ref, avail,
                             fps, w, h))
        _assign_targets(runs, bpps)
        result.runs[name] = runs
        log(f"  {clip.name} {name}: " + ", ".join(f"{r.param} {r.kbps:.1f} kbps" for r in runs))
    return result


def _run(codec: str, param: str, nbytes: int, floor: bool, enc_s: float, dec_s: float, planes: list[np.ndarray],
         ref: mt.Reference, avail: mt.Availability, fps: Fraction, w: int, h: int) -> Run:
    kbps, bpp = _rate(nbytes, len(ref.planes), fps, w, h)
    per_frame = mt.compare(ref, planes, avail)
    return Run(codec, param, [], nbytes, kbps, bpp, floor, enc_s, dec_s, len(planes), per_frame,
               yuv420_to_rgb(planes[len(planes) // 2], ref.colour))


def _assign_targets(runs: list[Run], bpps: list[float]) -> None:
    """Each target bpp goes to the run whose rate is closest to it (for averaging curves across clips)."""
    if not runs:
        return
    for bpp in bpps:
        min(runs, key=lambda r: abs(math.log(max(r.bpp, 1e-12) / bpp))).targets_bpp.append(bpp)


def average_curves(results: list[ClipResult], bpps: list[float], profiles: list[str]) -> dict[str, list[dict]]:
    """Per codec, mean bpp, kbps and metrics over the clips: baselines per target bpp (the run closest to it in each
    clip), profiles per rate point (``q=N``); only points every clip has."""
    out = {}
    for codec in sorted({c for r in results for c in r.runs}):
        keys: list = sorted({x.param for r in results for x in r.runs.get(codec, [])},
                            key=lambda p: int(p.split("=")[1])) if codec in profiles else list(bpps)
        rows = []
        for key in keys:
            picked = [next((x for x in r.runs.get(codec, []) if (x.param == key if codec in profiles
                                                                  else key in x.targets_bpp)), None) for r in results]
            if any(p is None for p in picked):
                continue
            means = [p.mean() for p in picked]
            names = set.intersection(*(set(m) for m in means))
            row = {"target": key if codec in profiles else f"{key:g} bpp",
                   "bpp": float(np.mean([p.bpp for p in picked])),
                   "kbps": float(np.mean([p.kbps for p in picked])), "floor_clips": sum(p.floor for p in picked),
                   "metrics": {k: float(np.mean([m[k] for m in means])) for k in sorted(names)}}
            if not rows or rows[-1]["bpp"] != row["bpp"]:
                rows.append(row)
        out[codec] = rows
    return out


def bd_tables(results: list[ClipResult], profiles: list[str], baselines: list[str], averaged: dict) -> dict:
    """BD of each profile against each baseline, per metric: per clip (kbps), their mean, and on the averaged curve."""
    from .bdrate import bd

    out: dict = {}
    for prof in profiles:
        for base in baselines:
            for metric, higher in mt.HIGHER_IS_BETTER.items():
                per_clip = {}
                for r in results:
                    a = [(x.kbps, x.mean()[metric]) for x in r.runs.get(base, []) if metric in x.per_frame]
                    t = [(x.kbps, x.mean()[metric]) for x in r.runs.get(prof, []) if metric in x.per_frame]
                    if a and t:
                        per_clip[r.clip.name] = bd(a, t, higher)
                if not per_clip:
                    continue
                rates = [v["bd_rate_pct"] for v in per_clip.values() if "bd_rate_pct" in v]
                quals = [v["bd_quality"] for v in per_clip.values() if "bd_quality" in v]
                avg_a = [(x["bpp"], x["metrics"][metric]) for x in averaged.get(base, []) if metric in x["metrics"]]
                avg_t = [(x["bpp"], x["metrics"][metric]) for x in averaged.get(prof, []) if metric in x["metrics"]]
                out.setdefault(prof, {}).setdefault(base, {})[metric] = {
                    "mean_bd_rate_pct": float(np.mean(rates)) if rates else None, "clips_with_bd_rate": len(rates),
                    "mean_bd_quality": float(np.mean(quals)) if quals else None, "clips_with_bd_quality": len(quals),
                    "on_average_curve_bpp": bd(avg_a, avg_t, higher, "bpp") if avg_a and avg_t else None,
                    "per_clip": per_clip}
    return out


def closest_points(averaged: dict, profiles: list[str], baselines: list[str]) -> list[dict]:
    """On the averaged curves, each profile's and each baseline's points that are nearest in rate: the measured distance
    where the curves do not overlap (e.g. a baseline that cannot go as low as the profile)."""
    out = []
    for prof in profiles:
        for base in baselines:
            pairs = [(abs(math.log(p["bpp"] / b["bpp"])), p, b)
                     for p in averaged.get(prof, []) for b in averaged.get(base, [])]
            if pairs:
                _, p, b = min(pairs, key=lambda t: t[0])
                out.append({"profile": prof, "baseline": base, "profile_point": p, "baseline_point": b})
    return out


def speed_table(results: list[ClipResult], rss: dict[str, dict]) -> dict[str, dict]:
    """Per codec: encode/decode fps and × real time over every run of the sweep, plus the isolated run's peak RSS."""
    out = {}
    for codec in sorted({c for r in results for c in r.runs}):
        runs = [(run, r.clip) for r in results for run in r.runs.get(codec, [])]
        if not runs:
            continue
        frames = sum(run.frames for run, _ in runs)
        content_s = sum(run.frames / float(clip.rate) for run, clip in runs)
        enc_s = sum(run.encode_s for run, _ in runs)
        dec_s = sum(run.decode_s for run, _ in runs)
        out[codec] = {"runs": len(runs), "frames": frames, "encode_fps": frames / enc_s, "decode_fps": frames / dec_s,
                      "encode_x_realtime": content_s / enc_s, "decode_x_realtime": content_s / dec_s,
                      **({"isolated_run": rss[codec]} if codec in rss else {})}
    return out
