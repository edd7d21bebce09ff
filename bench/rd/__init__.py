"""``python -m m3cvcav bench rd``: rate-distortion, speed and memory of the profiles under test against x264, x265,
SVT-AV1 (and VVC when installed) on the evaluation corpus; writes ``report/index.md``, PNGs and ``results.json``."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from m3cvcav.errors import UsageError

DEFAULT_BPP = (0.0025, 0.005, 0.01, 0.02, 0.04)
QUICK_BPP = (0.01, 0.03, 0.1)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m3cvcav bench rd", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny corpus and three rates (CI)")
    p.add_argument("--corpus", type=Path, help="folder of y4m/mp4/... videos instead of the built-in corpus")
    p.add_argument("--max-frames", type=int, help="use at most this many frames of each --corpus video")
    p.add_argument("--out", type=Path, default=Path("report"), help="report folder (default: report/)")
    p.add_argument("--profiles", default="lite", help="profiles under test, comma separated; '' for none")
    p.add_argument("--baselines", default="x264,x265,svtav1,vvc", help="baselines, comma separated")
    p.add_argument("--bpp", help="baselines' target rates in bits per pixel, comma separated")
    p.add_argument("--q", help="profiles' rate points to run, comma separated (default: all of them)")
    p.add_argument("--sample", type=int, default=6,
                   help="frames per clip (evenly spread) for MS-SSIM / semantic / CLIP; 0 = every frame (default 6)")
    p.add_argument("--no-semantic", action="store_true", help="skip the lite semantic similarity")
    p.add_argument("--no-isolated", action="store_true", help="skip the per-codec isolated run for peak RSS")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the tables")
    return p


def _floats(text: str) -> list[float]:
    try:
        vals = sorted(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise UsageError(f"--bpp {text!r}: give positive numbers separated by commas, e.g. 0.005,0.01") from exc
    if not vals or vals[0] <= 0:
        raise UsageError(f"--bpp {text!r}: give positive numbers separated by commas, e.g. 0.005,0.01")
    return vals


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
    from .evaluate import average_curves, bd_tables, closest_points, evaluate_clip, speed_table
    from .profile import api_missing
    from .worker import measure

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    bpps = _floats(args.bpp) if args.bpp else list(QUICK_BPP if args.quick else DEFAULT_BPP)
    try:
        qs = sorted({int(x) for x in args.q.split(",") if x.strip()}) if args.q else None
    except ValueError as exc:
        raise UsageError(f"--q {args.q!r}: give rate point numbers separated by commas, e.g. 0,3") from exc
    known = {b.name: b for b in bl.BASELINES}
    wanted = [x.strip() for x in args.baselines.split(",") if x.strip()]
    bad = [x for x in wanted if x not in known]
    if bad:
        raise UsageError(f"--baselines: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    codecs_info, baselines = {}, []
    for name in wanted:
        why = bl.available(known[name])
        codecs_info[name] = f"absent: {why}" if why else (
            f"{known[name].encoder} ({dict(known[name].options)}), decoded with {known[name].decoder}")
        if not why:
            baselines.append(known[name])
    profiles = [x.strip() for x in args.profiles.split(",") if x.strip()]
    missing = api_missing() if profiles else None
    for name in profiles:
        codecs_info[name] = (f"profile under test: not run, {missing}" if missing else
                             "profile under test through m3cvcav.encode/decode at each rate point (q = 0..N-1)")
    if missing:
        profiles = []
    if args.corpus:
        folder, clips, corpus_name = args.corpus, scan_folder(args.corpus, args.max_frames), str(args.corpus)
    else:
        folder, clips = build_default(args.quick, log=log)
        corpus_name = ("quick" if args.quick else "default") + f" ({folder})"
    avail = mt.probe(semantic=not args.no_semantic)
    log(f"rd: {len(clips)} clips, bpp targets {bpps}, baselines {[b.name for b in baselines]}, profiles {profiles}")
    for name in list(profiles):
        why = _smoke(name, folder, clips[0])
        if why:
            codecs_info[name] = f"profile under test: not run, its first encode/decode failed: {why}"
            log(f"rd: {name}: {codecs_info[name]}")
            profiles.remove(name)
    sample = args.sample or None
    results = [evaluate_clip(folder, c, baselines, profiles, bpps, avail, sample, qs, log) for c in clips]
    averaged = average_curves(results, bpps, profiles)
    bd = bd_tables(results, profiles, [b.name for b in baselines], averaged)
    rss = {} if args.no_isolated else _isolated(results, folder, baselines, profiles, bpps, measure)
    speed = speed_table(results, rss)
    args.out.mkdir(parents=True, exist_ok=True)
    files = report.draw(results, averaged, profiles, args.out)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}, "
                       f"Python {platform.python_version()}",
            "corpus": corpus_name, "bpp_targets": bpps, "seconds": time.perf_counter() - started,
            "metrics_computed": ["psnr_y", "psnr_rgb", "ms_ssim", "warp_err"]
            + [m for m in ("semantic", "clip_sim", "vmaf") if m not in avail.not_computed],
            "metrics_not_computed": avail.not_computed, "codecs": codecs_info, "method": METHOD}
    closest = closest_points(averaged, profiles, [b.name for b in baselines])
    data = report.to_json(meta, results, averaged, bd, closest, speed, files)
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
    "The profile under test runs at each of its rate points (`q=N`, the tokenizer's operating points; identical "
    "streams kept once); the baselines' targets are the bpp list. The averaged curve groups baselines' points by the "
    "target bpp they are closest to and profiles' points by rate point.",
    "Baselines hit each target by CRF search (secant steps on log rate over integer CRF, ≤ 5 encodes per target, "
    "closest rate kept); when even the maximum CRF is above a target, that floor point is kept and marked (hollow "
    "markers, 'floor' in tables). Duplicate CRFs are kept once.",
    "Presets: x264 medium, x265 medium, SVT-AV1 preset 8; one keyframe per clip (clips are shorter than the default "
    "GOP). x264's informational SEI (version + option string, ~700 bytes) is stripped from its stream and x265 runs "
    "with info=0: decoders do not need them and at these rates they would dominate a 2 s clip.",
    "Colour: clips are I420 Y'CbCr; RGB metrics convert with each clip's stated matrix (BT.709 limited range unless "
    "the source says otherwise), nearest-neighbour chroma upsampling. PSNR-Y is on the Y' plane (8-bit, capped at "
    "100 dB).",
    "MS-SSIM: pytorch-msssim on RGB, data range 255, Gaussian window 11 (smaller for frames under 176 px).",
    "Semantic similarity: cosine of the lite profile's EfficientNet-Lite0 embeddings, per frame.",
    "MS-SSIM, semantic and CLIP similarity run on --sample frames per clip spread evenly (first and last included; "
    "indices in the JSON); PSNR and warp error on every frame.",
    "Temporal consistency (warp_err, lower is better): decoded frame t warped to t+1 with OpenCV DIS flow measured on "
    "the source, MSE on [0,1] RGB over pixels passing a forward-backward check; the source's own value is in the JSON.",
    "BD-rate / BD-quality: PyPI `bjontegaard`, PCHIP, over the overlap of the two curves (ranges stated); per clip in "
    "kbps, then the mean over clips, and once on the averaged curve in bpp.",
    "Speed: encode/decode fps and × real time summed over every run of the sweep (in process, wall clock); peak RSS "
    "from one isolated process per codec (read the clip, encode, decode) at the middle point of its curve on the first "
    "clip.",
]


def _smoke(profile: str, folder, clip) -> str | None:
    """Try the profile once on the first clip: None when it works, else its error (a broken install costs one try)."""
    from .corpus import clip_path
    from .profile import rate_points, run

    try:
        run(profile, clip_path(folder, clip), clip.colour_spec(), rate_points(profile)[0], clip.frames)
    except Exception as exc:  # whatever the codec raised is the reason it is not measured
        return f"{type(exc).__name__}: {exc}"
    return None


def _isolated(results, folder, baselines, profiles, bpps, measure) -> dict:
    """One isolated encode+decode per codec, at the middle point of its curve on the first clip, for peak RSS."""
    from .corpus import clip_path

    if not results:
        return {}
    first = results[0]
    path = clip_path(folder, first.clip)
    mid = bpps[len(bpps) // 2]
    out = {}
    for b in baselines:
        runs = first.runs.get(b.name) or []
        if runs:
            run = next((r for r in runs if mid in r.targets_bpp), runs[0])
            out[b.name] = {**measure("baseline", b.name, run.param.split("=")[1], path), "param": run.param}
    for prof in profiles:
        runs = first.runs.get(prof) or []
        if runs:
            run = runs[len(runs) // 2]
            out[prof] = {**measure("profile", prof, run.param.split("=")[1], path), "param": run.param}
    return out


def _print(data: dict, out: Path) -> None:
    from . import report

    print()
    print("Averaged RD (mean over clips):")
    print("\n".join(report.average_table(data)))
    print()
    if data["bd"]:
        table = report.bd_table(data, only_defined=True)
        print("BD of each profile vs each baseline (mean over clips; and on the averaged curve), where defined:")
        print("\n".join(table) if len(table) > 2 else "  nowhere: the curves do not overlap (see the nearest points)")
        print(f"  (every profile/baseline/metric row, with the reasons where undefined: {out / 'index.md'})")
        print()
    if data["closest"]:
        print("Nearest points in rate (averaged; profile / baseline):")
        print("\n".join(report.closest_lines(data)))
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
