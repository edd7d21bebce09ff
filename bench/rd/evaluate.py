"""The RD sweep: every clip through every baseline and profile at the target rates, metrics against the source."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import baselines as bl
from . import metrics as mt
from . import profile as pf
from .color import yuv420_to_rgb
from .corpus import Clip, clip_path
from .envelope import envelopes, gap
from .video import read_video


@dataclass(frozen=True)
class Target:
    """One rung of the rate ladder: a bitrate in kbps (the same for every clip) or bits per pixel (scaled per clip)."""

    value: float
    unit: str = "kbps"  # "kbps" | "bpp"

    @property
    def label(self) -> str:
        return f"{self.value:g}k" if self.unit == "kbps" else f"{self.value:g} bpp"

    def kbps(self, w: int, h: int, fps: Fraction) -> float:
        return self.value if self.unit == "kbps" else self.value * w * h * float(fps) / 1000.0


@dataclass
class Run:
    """One rate point of one codec on one clip (``mid`` is its decoded middle frame, for the crops; not in the JSON).
    ``targets``: the ladder labels this run stands for (the run closest in rate to each, or the profile's own -b:v)."""

    codec: str
    param: str
    targets: list[str]
    bytes: int
    kbps: float
    bpp: float
    floor: bool
    encode_s: float
    decode_s: float
    frames: int
    per_frame: dict[str, list[float]]
    frozen: dict[str, int]
    mid: np.ndarray | None = field(default=None, repr=False)

    def mean(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.per_frame.items() if v}

    def to_json(self) -> dict:
        return {"param": self.param, "targets": self.targets, "bytes": self.bytes, "kbps": self.kbps,
                "bpp": self.bpp, "floor": self.floor, "encode_s": self.encode_s, "decode_s": self.decode_s,
                "frames": self.frames, "frozen": self.frozen, "metrics": self.mean(), "per_frame": self.per_frame}


@dataclass
class CropPoint:
    """One codec's decoded middle frame at the clip's shared crop rate."""

    codec: str
    param: str
    kbps: float
    floor: bool
    mid: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        return {"codec": self.codec, "param": self.param, "kbps": self.kbps, "floor": self.floor}


@dataclass
class ClipResult:
    clip: Clip
    source_warp_err: float
    source_mid: np.ndarray
    sample: list[int]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    rate_accuracy: dict[str, list[dict]] = field(default_factory=dict)  # profile → one row per -b:v target
    crop_kbps: float | None = None  # the shared rate of the crops
    crops: list[CropPoint] = field(default_factory=list)
    envelope: dict[str, list[dict]] = field(default_factory=dict)  # metric → the baselines' envelope (kbps)


def _rate(nbytes: int, frames: int, fps: Fraction, w: int, h: int) -> tuple[float, float]:
    bits = nbytes * 8
    return bits / (frames / float(fps)) / 1000.0, bits / (frames * w * h)


def evaluate_clip(folder: Path, clip: Clip, baselines: list[bl.Baseline], profiles: list[str], targets: list[Target],
                  avail: mt.Availability, sample: int | None = None, qs: list[int] | None = None,
                  log=print) -> ClipResult:
    """Every baseline over the ladder by CRF search (VBR below SVT-AV1's floor), decoded at the source size; every
    profile at each ladder rung as a ``-b:v`` target, or at the rate points ``qs`` when given; the baselines'
    envelope."""
    path = clip_path(folder, clip)
    video = read_video(path, clip.color_description())
    w, h, n, fps = video.width, video.height, len(video.frames), video.fps
    ref = mt.prepare(video.frames, video.color, avail, str(path), sample)
    result = ClipResult(clip, ref.warp_err, ref.rgb[n // 2], ref.sample)
    rates = {t.label: t.kbps(w, h, fps) for t in targets}
    for b in baselines:
        try:
            runs = _baseline_runs(b, video, rates, ref, avail)
        except av.error.FFmpegError as exc:  # e.g. a picture too small for the encoder at a reduced size
            result.failures[b.name] = f"{type(exc).__name__}: {exc}"
            log(f"  {clip.name} {b.name} failed: {result.failures[b.name]}")
            continue
        result.runs[b.name] = runs
        log(f"  {clip.name} {b.name}: " + ", ".join(f"{r.param} {r.kbps:.1f} kbps" for r in runs))
    for name in profiles:
        runs: list[Run] = []
        settings = ([(f"q={q}", {"q": q}) for q in qs] if qs is not None else
                    [(label, {"bitrate": pf.bitrate_arg(kbps)}) for label, kbps in rates.items()])
        for label, kwargs in settings:
            try:
                res = pf.run(name, path, video.color, n, **kwargs)
            except Exception as exc:  # the profile's own error, recorded per setting in the report
                result.failures[f"{name} {label}"] = f"{type(exc).__name__}: {exc}"
                log(f"  {clip.name} {name} {label} failed: {type(exc).__name__}: {exc}")
                continue
            kbps, _ = _rate(res.bytes, n, fps, w, h)
            if qs is None:
                result.rate_accuracy.setdefault(name, []).append(
                    {"target": label, "target_kbps": rates[label], "kbps": kbps,
                     "error_pct": 100.0 * (kbps / rates[label] - 1.0)})
            same = next((r for r in runs if r.bytes == res.bytes), None)
            if same is not None:  # the same stream as a lower target: one curve point standing for both
                if qs is None:
                    same.targets.append(label)
                continue
            runs.append(_run(name, res.param, res.bytes, False, res.encode_s, res.decode_s, res.planes, ref, avail,
                             fps, w, h))
            if res.bicubic is not None:  # the same stream without the decoder's enhancement
                result.runs.setdefault(name + pf.BICUBIC, []).append(_run(
                    name + pf.BICUBIC, res.param, res.bytes, False, res.encode_s, res.decode_s, res.bicubic, ref,
                    avail, fps, w, h))
            if qs is None:
                runs[-1].targets.append(label)
        if qs is not None:
            _assign_targets(runs, rates)
        result.runs[name] = runs
        log(f"  {clip.name} {name}: " + ", ".join(f"{r.param} {r.kbps:.1f} kbps" for r in runs))
    _matched_crops(result, baselines, profiles, video)
    result.envelope = envelopes({b.name: [(x.kbps, x.mean()) for x in result.runs.get(b.name, [])] for b in baselines})
    return result


def _baseline_runs(b: bl.Baseline, video, rates: dict[str, float], ref: mt.Reference,
                   avail: mt.Availability) -> list[Run]:
    """``b`` steered to every rung, each encode decoded at the source size and measured."""
    w, h, fps = video.width, video.height, video.fps
    runs = []
    for _, enc, floor in bl.crf_search(b, video.frames, fps, list(rates.values())):
        planes, dec_s = bl.decode(b, enc.packets, (w, h))
        runs.append(_run(b.name, enc.param, enc.bytes, floor, enc.encode_s, dec_s, planes, ref, avail, fps, w, h))
    _assign_targets(runs, rates)
    return runs


def _matched_crops(result: ClipResult, baselines: list[bl.Baseline], profiles: list[str], video) -> None:
    """Crops at one shared rate: the first profile's middle point (without profiles, the first baseline's); each
    baseline encoded again, steered to exactly that rate (CRF search, VBR below SVT-AV1's floor), or at its floor;
    each other profile at its point nearest the rate."""
    anchor = next((p for p in profiles if result.runs.get(p)), None) or next(
        (b.name for b in baselines if result.runs.get(b.name)), None)
    if anchor is None:
        return
    runs = sorted(result.runs[anchor], key=lambda r: r.kbps)
    shared = runs[len(runs) // 2].kbps
    result.crop_kbps = shared
    n = len(video.frames)
    for b in baselines:
        if not result.runs.get(b.name):
            continue
        (_, enc, floor), = bl.crf_search(b, video.frames, video.fps, [shared])
        planes, _ = bl.decode(b, enc.packets, (video.width, video.height))
        kbps, _ = _rate(enc.bytes, n, video.fps, video.width, video.height)
        result.crops.append(CropPoint(b.name, enc.param, kbps, floor, yuv420_to_rgb(planes[n // 2], video.color)))
    for name in profiles:
        if result.runs.get(name):
            run = min(result.runs[name], key=lambda r: abs(math.log(r.kbps / shared)))
            result.crops.append(CropPoint(name, run.param, run.kbps, False, run.mid))


def _run(codec: str, param: str, nbytes: int, floor: bool, enc_s: float, dec_s: float, planes: list[np.ndarray],
         ref: mt.Reference, avail: mt.Availability, fps: Fraction, w: int, h: int) -> Run:
    kbps, bpp = _rate(nbytes, len(ref.planes), fps, w, h)
    per_frame = mt.compare(ref, planes, avail)
    frozen = mt.frozen_frames(ref.lumas(), [p[:h] for p in planes])
    return Run(codec, param, [], nbytes, kbps, bpp, floor, enc_s, dec_s, len(planes), per_frame, frozen,
               yuv420_to_rgb(planes[len(planes) // 2], ref.color))


def _assign_targets(runs: list[Run], rates: dict[str, float]) -> None:
    """Each ladder rung goes to the run whose rate is closest to it (for averaging curves across clips)."""
    if not runs:
        return
    for label, kbps in rates.items():
        min(runs, key=lambda r: abs(math.log(max(r.kbps, 1e-12) / kbps))).targets.append(label)


def average_curves(results: list[ClipResult], labels: list[str]) -> dict[str, list[dict]]:
    """Per codec and ladder rung, the mean kbps, bpp and metrics over the clips of the runs standing for that rung (a
    q-swept profile: per rate point); only rungs every clip has, and one row per distinct mean rate."""
    out = {}
    for codec in _codecs(results):
        swept_q = all(x.param.startswith("q=") for r in results for x in r.runs.get(codec, []))
        keys = sorted({x.param for r in results for x in r.runs.get(codec, [])},
                      key=lambda p: int(p.split("=")[1])) if swept_q else labels
        rows = []
        for key in keys:
            picked = [next((x for x in r.runs.get(codec, []) if (x.param == key if swept_q else key in x.targets)),
                           None) for r in results]
            if any(p is None for p in picked):
                continue
            means = [p.mean() for p in picked]
            names = set.intersection(*(set(m) for m in means))
            row = {"target": key, "bpp": float(np.mean([p.bpp for p in picked])),
                   "kbps": float(np.mean([p.kbps for p in picked])), "floor_clips": sum(p.floor for p in picked),
                   "frozen": sum(p.frozen["frozen"] for p in picked), "moving": sum(p.frozen["moving"] for p in picked),
                   "metrics": {k: float(np.mean([m[k] for m in means])) for k in sorted(names)}}
            if not rows or rows[-1]["kbps"] != row["kbps"]:
                rows.append(row)
        out[codec] = rows
    return out


def _codecs(results: list[ClipResult]) -> list[str]:
    seen: dict[str, None] = {}
    for r in results:
        for c in r.runs:
            seen.setdefault(c, None)
    return list(seen)


ENVELOPE = "envelope"  # the baselines' envelope, as an anchor in the comparisons


def average_envelope(averaged: dict, baselines: list[str], unit: str) -> dict[str, list[dict]]:
    """Per metric: the envelope of the baselines' averaged curves (rates in ``unit``)."""
    return envelopes({b: [(row[unit], row["metrics"]) for row in averaged.get(b, [])] for b in baselines})


def _run_points(runs: list[Run], metric: str) -> list[tuple[float, float]]:
    return [(x.kbps, x.mean()[metric]) for x in runs if metric in x.per_frame]


def _row_points(rows: list[dict], metric: str, unit: str) -> list[tuple[float, float]]:
    return [(p[unit], p["metrics"][metric]) for p in rows if metric in p["metrics"]]


def _env_points(env: dict[str, list[dict]], metric: str) -> list[tuple[float, float]]:
    return [(p["rate"], p["quality"]) for p in env.get(metric, [])]


def _compare(a: list[tuple[float, float]], t: list[tuple[float, float]], higher: bool, unit: str = "kbps",
             envelope: bool = False) -> dict | None:
    """:func:`bdrate.compare` of ``t`` against ``a`` (None when a curve is empty); against the envelope also its
    :func:`envelope.gap` at the profile's points (``at_profile_points``)."""
    from .bdrate import compare

    if not (a and t):
        return None
    out = compare(a, t, higher, unit)
    if envelope:
        out["at_profile_points"] = gap(a, t)
    return out


def comparisons(results: list[ClipResult], profiles: list[str], baselines: list[str], averaged: dict,
                avg_unit: str, avg_envelope: dict[str, list[dict]]) -> dict:
    """Each profile against the baselines' envelope (``envelope``, first) and against each baseline, per metric: per
    clip (kbps) and on the averaged curve (``avg_unit``), with the overlap rules of :func:`bdrate.compare`, and the
    aggregate over clips (:func:`headline`)."""
    out: dict = {}
    for prof in profiles:
        for base in (ENVELOPE, *baselines):
            env = base == ENVELOPE
            for metric, higher in mt.HIGHER_IS_BETTER.items():
                if metric in mt.REFERENCE_RELATIVE:
                    continue
                per_clip = {}
                for r in results:
                    a = _env_points(r.envelope, metric) if env else _run_points(r.runs.get(base, []), metric)
                    c = _compare(a, _run_points(r.runs.get(prof, []), metric), higher, envelope=env)
                    if c is not None:
                        per_clip[r.clip.name] = c
                if not per_clip:
                    continue
                avg_a = (_env_points(avg_envelope, metric) if env else
                         _row_points(averaged.get(base, []), metric, avg_unit))
                avg_t = _row_points(averaged.get(prof, []), metric, avg_unit)
                out.setdefault(prof, {}).setdefault(base, {})[metric] = {
                    "summary": headline(per_clip, len(results)), "per_clip": per_clip,
                    "on_average_curve": _compare(avg_a, avg_t, higher, avg_unit, env)}
    return out


def headline(per_clip: dict[str, dict], clips: int) -> dict:
    """Aggregate per-clip comparisons into one figure with its evidence: the mean BD-rate where it is defined on at
    least one clip (with the clips it covers), else the mean equal-rate quality difference over the overlapping points,
    else that the curves do not overlap on any clip. ``equal_rate``: the equal-rate difference over every clip where
    the curves overlap in rate, given beside a BD-rate too (it may cover more clips)."""
    bd_clips = {k: v for k, v in per_clip.items() if "bd_rate_pct" in v}
    eq_clips = {k: v for k, v in per_clip.items() if v.get("equal_rate", {}).get("points")}
    eq = None
    if eq_clips:
        pts = [d for v in eq_clips.values() for d in v["equal_rate"]["pairs"]]
        eq = {"value": float(np.mean([d["diff"] for d in pts])), "points": len(pts), "clips": len(eq_clips),
              "over": sorted(eq_clips), "rate_range_kbps": [min(d["rate"] for d in pts), max(d["rate"] for d in pts)]}
    if bd_clips:
        ranges = [v["quality_range"] for v in bd_clips.values()]
        return {"kind": "bd_rate_pct", "value": float(np.mean([v["bd_rate_pct"] for v in bd_clips.values()])),
                "clips": len(bd_clips), "of": clips, "over": sorted(bd_clips),
                "quality_range": [min(r[0] for r in ranges), max(r[1] for r in ranges)], "equal_rate": eq}
    if eq:
        return {"kind": "equal_rate_diff", "of": clips, **eq}
    return {"kind": "no_overlap", "value": None, "clips": 0, "of": clips, "over": []}


def closest_points(averaged: dict, profiles: list[str], baselines: list[str]) -> list[dict]:
    """On the averaged curves, each profile's and each baseline's points that are nearest in rate: the measured distance
    where the curves do not overlap (e.g. a baseline that cannot go as low as the profile)."""
    out = []
    for prof in profiles:
        for base in baselines:
            pairs = [(abs(math.log(p["kbps"] / b["kbps"])), p, b)
                     for p in averaged.get(prof, []) for b in averaged.get(base, [])]
            if pairs:
                _, p, b = min(pairs, key=lambda t: t[0])
                out.append({"profile": prof, "baseline": base, "profile_point": p, "baseline_point": b})
    return out


def rate_accuracy(results: list[ClipResult]) -> dict[str, list[dict]]:
    """Per profile and -b:v target: the achieved rate on each clip, its mean and the error against the target."""
    out: dict[str, list[dict]] = {}
    for prof in sorted({p for r in results for p in r.rate_accuracy}):
        rows: dict[str, list[dict]] = {}
        for r in results:
            for row in r.rate_accuracy.get(prof, []):
                rows.setdefault(row["target"], []).append({**row, "clip": r.clip.name})
        out[prof] = [{"target": label, "target_kbps": float(np.mean([x["target_kbps"] for x in xs])),
                      "mean_kbps": float(np.mean([x["kbps"] for x in xs])),
                      "mean_error_pct": float(np.mean([x["error_pct"] for x in xs])),
                      "max_abs_error_pct": float(max(abs(x["error_pct"]) for x in xs)),
                      "per_clip": {x["clip"]: x["kbps"] for x in xs}} for label, xs in rows.items()]
    return out


def frozen_table(results: list[ClipResult]) -> dict[str, dict]:
    """Per codec: frozen frames (decoded frame equal to its predecessor while the source moves) over all its runs, and
    per clip; the share is frozen / source-moving frames."""
    out = {}
    for codec in _codecs(results):
        per_clip = {}
        for r in results:
            runs = r.runs.get(codec, [])
            if runs:
                f, m = sum(x.frozen["frozen"] for x in runs), sum(x.frozen["moving"] for x in runs)
                per_clip[r.clip.name] = {"frozen": f, "moving": m, "share": f / m if m else None}
        f, m = sum(v["frozen"] for v in per_clip.values()), sum(v["moving"] for v in per_clip.values())
        out[codec] = {"frozen": f, "moving": m, "share": f / m if m else None, "per_clip": per_clip}
    return out


def speed_table(results: list[ClipResult], rss: dict[str, dict]) -> dict[str, dict]:
    """Per codec: encode/decode fps and × real time over every run of the sweep, plus the isolated run's peak RSS."""
    out = {}
    for codec in _codecs(results):
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
