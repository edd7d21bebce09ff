"""``python -m m3cvcav bench rd``: rate-distortion, speed and memory of the profiles under test against x264, x265,
SVT-AV1 (and VVC when installed), x265 and SVT-AV1 at 1/2 and 1/4 of the picture size, and the envelope of them all
on the evaluation corpus; writes ``report/index.md``, PNGs and ``results.json``."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from m3cvcav.core.errors import UsageError
from m3cvcav.options import description

if TYPE_CHECKING:
    from .baselines import Baseline

DEFAULT_KBPS = (2, 5, 10, 20, 50, 100, 200, 500)
QUICK_KBPS = (5, 20, 100)
DEFAULT_BASELINES = "x264,x265,svtav1,vvc,x265@1/2,x265@1/4,svtav1@1/2,svtav1@1/4"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m3cvcav bench rd", description=description(__doc__))
    p.add_argument("--quick", action="store_true", help="tiny corpus and three rates, 5k/20k/100k (CI)")
    p.add_argument("--corpus", type=Path, help="folder of y4m/mp4/... videos instead of the built-in corpus")
    p.add_argument("--max-frames", type=int, help="use at most this many frames of each --corpus video")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder (default: report/)")
    p.add_argument("--profiles", default="lite", help="profiles under test, comma separated; '' for none")
    p.add_argument("--baselines", default=DEFAULT_BASELINES,
                   help="baselines, comma separated; NAME@1/k codes 1/k of the picture size and scales the decode back "
                        f"up (default {DEFAULT_BASELINES})")
    p.add_argument("--kbps", help="the rate ladder in kbps, comma separated: the profiles' -b:v targets and the "
                                  "baselines' targets (default 2,5,10,20,50,100,200,500; --quick 5,20,100)")
    p.add_argument("--bpp", help="the rate ladder in bits per pixel instead (scaled to each clip's size and fps)")
    p.add_argument("--q", help="sweep the profiles over these rate points (comma separated, or 'all') instead of "
                               "the -b:v ladder")
    p.add_argument("--sample", type=int, default=6,
                   help="frames per clip (evenly spread) for MS-SSIM / VMAF / semantic / CLIP; 0 = every frame "
                        "(default 6)")
    p.add_argument("--no-semantic", action="store_true", help="skip the lite semantic similarity")
    p.add_argument("--no-isolated", action="store_true", help="skip the per-codec isolated run for peak RSS")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the tables")
    return p


def _floats(text: str, flag: str, example: str) -> list[float]:
    try:
        vals = sorted({float(x.strip().rstrip("kK")) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: give positive numbers separated by commas, e.g. {example}") from exc
    if not vals or vals[0] <= 0:
        raise UsageError(f"{flag} {text!r}: give positive numbers separated by commas, e.g. {example}")
    return vals


def _ladder(args) -> list:
    from .evaluate import Target

    if args.kbps and args.bpp:
        raise UsageError("give either --kbps or --bpp, not both")
    if args.bpp:
        return [Target(v, "bpp") for v in _floats(args.bpp, "--bpp", "0.005,0.01")]
    kbps = _floats(args.kbps, "--kbps", "5,20,100") if args.kbps else list(QUICK_KBPS if args.quick else DEFAULT_KBPS)
    return [Target(v, "kbps") for v in kbps]


def _rate_points(text: str | None, profiles: list[str]) -> list[int] | None:
    if not text:
        return None
    if text.strip() == "all":
        from .profile import rate_points

        return sorted({q for p in profiles for q in rate_points(p)})
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise UsageError(f"--q {text!r}: give rate point numbers separated by commas (e.g. 0,3), or 'all'") from exc


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.sample < 0:
        raise UsageError(f"--sample {args.sample}: give a frame count ≥ 1, or 0 for every frame")
    started = time.perf_counter()
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    import torch

    from . import baselines as bl
    from . import metrics as mt
    from . import report
    from .corpus import build_default, scan_folder
    from . import evaluate as ev
    from .profile import BICUBIC, api_missing
    from .worker import measure

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    targets = _ladder(args)
    labels = [t.label for t in targets]
    codecs_info, baselines = {}, []
    for b in _baselines(args.baselines):
        why = bl.available(b)
        codecs_info[b.name] = f"absent: {why}" if why else _describe(b)
        if not why:
            baselines.append(b)
    profiles = [x.strip() for x in args.profiles.split(",") if x.strip()]
    missing = api_missing() if profiles else None
    qs = None if missing else _rate_points(args.q, profiles)
    for name in profiles:
        codecs_info[name] = (f"profile under test: not run, {missing}" if missing else
                             "profile under test through m3cvcav.encode/decode, "
                             + (f"at rate points q = {qs}" if qs is not None else "at each -b:v target of the ladder"))
    if missing:
        profiles = []
    if args.corpus:
        folder, clips, corpus_name = args.corpus, scan_folder(args.corpus, args.max_frames), str(args.corpus)
    else:
        folder, clips = build_default(args.quick, log=log)
        corpus_name = ("quick" if args.quick else "default") + f" ({folder})"
    avail = mt.probe(semantic=not args.no_semantic)
    log(f"rd: {len(clips)} clips, ladder {', '.join(labels)}, baselines {[b.name for b in baselines]}, "
        f"profiles {profiles}; MS-SSIM/VMAF/semantic on {args.sample or 'all'} frames per clip")
    for name in list(profiles):
        why = _smoke(name, folder, clips[0])
        if why:
            codecs_info[name] = f"profile under test: not run, its first encode/decode failed: {why}"
            log(f"rd: {name}: {codecs_info[name]}")
            profiles.remove(name)
    sample = args.sample or None
    results = [ev.evaluate_clip(folder, c, baselines, profiles, targets, avail, sample, qs, log) for c in clips]
    for name in list(profiles):  # the same streams decoded with -enhance none, reported beside
        if any(name + BICUBIC in r.runs for r in results):
            profiles.append(name + BICUBIC)
            codecs_info[name + BICUBIC] = f"{name}'s streams decoded with -enhance none (the base, bicubic)"
    averaged = ev.average_curves(results, labels)
    unit = targets[0].unit
    avg_envelope = ev.average_envelope(averaged, [b.name for b in baselines], unit)
    compared = ev.comparisons(results, profiles, [b.name for b in baselines], averaged, unit, avg_envelope)
    rss = {} if args.no_isolated else _isolated(results, folder, baselines, profiles, labels, measure)
    speed = ev.speed_table(results, rss)
    args.out.mkdir(parents=True, exist_ok=True)
    files = report.draw(results, averaged, profiles, args.out, unit, avg_envelope)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}, "
                       f"Python {platform.python_version()}",
            "corpus": corpus_name, "ladder": labels, "ladder_unit": unit, "rate_points": qs,
            "sampled_frames_per_clip": args.sample or "all", "seconds": time.perf_counter() - started,
            "metrics_computed": ["psnr_y", "psnr_rgb", "ms_ssim", "warp_err", "frozen"]
            + [m for m in ("vmaf", "vmaf_neg", "semantic", "clip_sim") if m not in avail.not_computed],
            "metrics_not_computed": avail.not_computed, "codecs": codecs_info, "method": METHOD}
    closest = ev.closest_points(averaged, profiles, [b.name for b in baselines])
    data = report.to_json(meta, results, averaged, compared, closest, speed, files, ev.rate_accuracy(results),
                          ev.frozen_table(results), avg_envelope)
    data["meta"]["seconds"] = time.perf_counter() - started
    report.write(args.out, data)
    if args.json:
        print(json.dumps(data))
    else:
        _print(data, args.out)
    return 0


METHOD = [
    "Rates: baselines count the elementary stream (sum of packet bytes, no container); a profile under test counts its "
    "whole `.m3cv` file. kbps = bits / (frames / fps) / 1000; bpp = bits / (frames × width × height).",
    "One rate ladder for every codec (`--kbps`, or `--bpp` scaled per clip): the profile under test is encoded through "
    "`m3cvcav.encode(src, dst, bitrate=\"20k\")` at each rung as its `-b:v` target (identical streams kept once; "
    "`--q` sweeps its rate points instead); the baselines are steered to each rung. The averaged curve takes, per "
    "codec and rung, the run standing for that rung on every clip (its own -b:v target; for a baseline the run "
    "closest in rate) and averages kbps and quality over the clips.",
    "Baselines hit each rung by CRF search (secant steps on log rate over integer CRF, ≤ 5 encodes per rung, closest "
    "rate kept). Below SVT-AV1's CRF 63 rate, its VBR mode is run at the rung's bitrate (it gets about half as low). "
    "A point still more than 15% above its rung (max CRF or VBR) is the codec's floor: kept and marked (hollow "
    "markers, 'floor' in tables). Duplicate encodes are kept once.",
    "Reduced-size baselines (`x265@1/2`, `svtav1@1/4`, ...): the source scaled down to 1/2 or 1/4 of its width and "
    "height (rounded to even sizes; swscale bicubic, ffmpeg's default), steered to the same rungs by the same CRF "
    "search, decoded and scaled back up to the source size (swscale bicubic) before every metric; decode times include "
    "the upscale. At low rates a user would often pick a smaller picture over a full-size one.",
    "The envelope: per clip and metric, at each rate the best quality of any baseline at any size: each baseline's "
    "points joined linearly in log rate, the pointwise best over the baselines that reach that rate, sampled at "
    "every baseline point and where the best baseline changes, then made increasing (a point no better than one at a "
    "lower rate is dropped: a bigger budget can always spend less). Where a baseline's curve starts or ends between two "
    "envelope points, the straight line between them can only overstate what the baselines reach. On the averaged "
    "curve: the envelope of the baselines' averaged curves. Each profile is compared with it like with a baseline "
    "(BD-rate and equal-rate rules below), and at each profile point inside its rate range: the profile's quality "
    "minus the envelope's at that rate.",
    "Presets: x264 medium, x265 medium, SVT-AV1 preset 8; one keyframe per clip (clips are shorter than the default "
    "GOP). x264's informational SEI (version + option string, ~700 bytes) is stripped from its stream and x265 runs "
    "with info=0: decoders do not need them and at these rates they would dominate a 2 s clip.",
    "Color: clips are I420 Y'CbCr; RGB metrics convert with each clip's stated matrix (BT.709 limited range unless "
    "the source says otherwise), nearest-neighbour chroma upsampling. PSNR-Y is on the Y' plane (8-bit, capped at "
    "100 dB).",
    "MS-SSIM: pytorch-msssim on RGB, data range 255, Gaussian window 11 (smaller for frames under 176 px).",
    "VMAF (model v0.6.1) and VMAF NEG: PyPI vmaf-torch in process, on the Y' plane at the clip's size, scores clipped "
    "to [0, 100]; the motion feature comes from every source frame, so a sampled frame scores as in a full-clip run. "
    "It reproduces libvmaf's 97.428 for identical still frames (tests/test_rd_vmaf.py); its authors report a mean "
    "absolute difference of 0.006 from libvmaf on the Netflix public dataset.",
    "Semantic similarity: cosine of the lite profile's EfficientNet-Lite0 embeddings, per frame.",
    "MS-SSIM, VMAF, semantic and CLIP similarity run on --sample frames per clip spread evenly (first and last "
    "included; indices in the JSON); PSNR, warp error and frozen frames on every frame.",
    "Temporal consistency (warp_err, lower is better): decoded frame t warped to t+1 with OpenCV DIS flow measured on "
    "the source, MSE on [0,1] RGB over pixels passing a forward-backward check. A frozen or blurred output can score "
    "below the source itself, so it is drawn with the source's own value (dashed) and never headlined.",
    "Frozen frames: frame t ≥ 1 of the decoded clip counts as frozen when its mean |Δ luma| from frame t−1 is < 0.3 "
    "while the source's is > 1.5 (8-bit); the share is frozen / source-moving frames.",
    "Headlines: per clip (kbps) and on the averaged curve, PyPI `bjontegaard` (PCHIP). A BD-rate is given only where "
    "the two curves' quality ranges overlap over ≥ 50% of each and each curve has ≥ 3 points (BD-quality: the same on "
    "log rate); otherwise the equal-rate quality difference at the points of either curve inside the other's rate "
    "range (linear in log rate), and the nearest points. Each headline says over how many clips and which range.",
    "Speed: encode/decode fps and × real time summed over every run of the sweep (in process, wall clock); peak RSS "
    "from one isolated process per codec (read the clip, encode, decode) at the middle rung on the first clip.",
]


def _baselines(text: str) -> list[Baseline]:
    """The --baselines list, each through :func:`baselines.lookup`."""
    from . import baselines as bl

    try:
        return [bl.lookup(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--baselines: {exc}") from exc


def _describe(b: Baseline) -> str:
    """What the report says a baseline is."""
    text = f"{b.encoder} ({dict(b.options)}), decoded with {b.decoder}"
    if b.divisor > 1:
        text += (f"; coded at 1/{b.divisor} of the width and height (even sizes, swscale bicubic down), the decode "
                 "scaled back up to the source size (bicubic) before metrics")
    return text


def _smoke(profile: str, folder, clip) -> str | None:
    """Try the profile once on the first clip: None when it works, else its error (a broken install costs one try)."""
    from .corpus import clip_path
    from .profile import run

    try:
        run(profile, clip_path(folder, clip), clip.color_description(), clip.frames, bitrate="20k")
    except Exception as exc:  # whatever the codec raised is the reason it is not measured
        return f"{type(exc).__name__}: {exc}"
    return None


def _isolated(results, folder, baselines, profiles, labels, measure) -> dict:
    """One isolated encode+decode per codec, at the middle rung of the ladder on the first clip, for peak RSS."""
    from .corpus import clip_path

    if not results:
        return {}
    first = results[0]
    path = clip_path(folder, first.clip)
    mid = labels[len(labels) // 2]
    out = {}
    for kind, names in (("baseline", [b.name for b in baselines]), ("profile", profiles)):
        for name in names:
            runs = first.runs.get(name) or []
            if runs:
                run = next((r for r in runs if mid in r.targets), runs[len(runs) // 2])
                out[name] = {**measure(kind, name, run.param, path), "param": run.param}
    return out


def _print(data: dict, out: Path) -> None:
    from . import report

    print()
    print("Averaged RD (mean over clips, per rung of the ladder):")
    print("\n".join(report.average_table(data)))
    print()
    if data["compare"]:
        print("Headlines: each profile against the envelope (best baseline at each rate) and each baseline "
              "(rules in the report's Method):")
        print("\n".join(report.headline_lines(data)))
        print()
        print("MS-SSIM at equal rate minus the envelope's, per clip (at the profile's points):")
        print("\n".join(report.envelope_gap_lines(data)))
        print()
    if data["envelope"]:
        print("The envelope on the averaged curves (best baseline: rate range, quality range):")
        print("\n".join(report.envelope_lines(data)))
        print()
    if data["closest"]:
        print("Nearest points in rate (averaged; profile / baseline):")
        print("\n".join(report.closest_lines(data)))
        print()
    if data["rate_accuracy"]:
        print("Rate accuracy (-b:v target vs achieved, mean over clips):")
        print("\n".join(report.rate_lines(data)))
        print()
    print("Frozen frames (decoded frame equal to its predecessor while the source moves):")
    print("\n".join(report.frozen_lines(data)))
    print()
    print("Speed and memory:")
    print("\n".join(report.speed_lines(data)))
    print()
    for k, v in data["meta"]["metrics_not_computed"].items():
        print(f"not computed: {k}: {v}")
    for k, v in data["meta"]["codecs"].items():
        if v.startswith("absent") or "not run" in v:
            print(f"{k}: {v}")
    print(f"report: {out / 'index.md'}, {out / 'results.json'} ({data['meta']['seconds']:.0f} s)")
