"""``python -m m3cvcav bench enhancer``: what the lite enhancer adds over bicubic, and what it costs (the model card's
numbers, docs/models/enhancer.md).

Quality: each held-out clip (``enhancer_train.HELD_OUT``: never trained on) is coded by the AV1 base at each
(scale, CRF) of ``--points`` (default: the -q ladder's rungs 0..11, ``filters.ratecontrol.LEVELS``) and decoded; the decoded pictures are upscaled to the display size by bicubic (variant 0)
and by every model variant, and compared with the source frames by ``core.quality.ms_ssim`` (BT.709 luma) and
RGB PSNR. ``choose`` is the variant the encoder signals (best MS-SSIM on the segment, 0 unless a model beats
bicubic); the table's ``chosen`` column is its MS-SSIM gain, never below 0 by construction. Per clip, the BD-rate
(``bench.rd.bdrate``, PCHIP) of the chosen enhancement against bicubic on the same streams, on MS-SSIM and PSNR.

Speed: ms per frame of ``Enhancer.upscale`` (network + post-process) at 256×144→512×288, 640×360→1280×720 and the
coded sizes of the default -q (``filters.ratecontrol.DEFAULT_QUALITY``), on the profile's backend with ``--threads``
(2) threads, median of ``--repeat`` runs; bicubic alone beside it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from m3cvcav.bitstream import av1
from m3cvcav.core.quality import ms_ssim, psnr

LADDER_RUNGS = range(12)  # -q 0..11: scales 0.125..0.66, CRF 58..40.4


def speed_sizes() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(coded, display) sizes the speed is measured at: half size and the default -q's coded size, 288p and 720p."""
    from m3cvcav.filters.ratecontrol import DEFAULT_QUALITY, LEVELS

    scale = LEVELS[DEFAULT_QUALITY].scale
    return [((256, 144), (512, 288)), (av1.coded_size(512, 288, scale), (512, 288)),
            ((640, 360), (1280, 720)), (av1.coded_size(1280, 720, scale), (1280, 720))]


def quality(enhancer, clips, points, log=print) -> list[dict]:
    rows = []
    for name, frames in clips:
        h, w = frames[0].shape[:2]
        for scale, crf in points:
            size = av1.coded_size(w, h, scale)
            units = av1.encode(frames, size, 25, crf)
            pictures = av1.decode(units)
            kbps = sum(map(len, units)) * 8 * 25 / len(units) / 1000
            per = np.zeros((enhancer.variants + 1, 2))
            for src, pic in zip(frames, pictures):
                for k, out in enumerate(enhancer.candidates(pic, (w, h))):
                    per[k] += ms_ssim(src, out), psnr(src, out)
            per /= len(frames)
            chosen = enhancer.choose(frames, pictures, (w, h))
            row = {"clip": name, "display": f"{w}x{h}", "coded": f"{size[0]}x{size[1]}", "scale": scale, "crf": crf,
                   "kbps@25": kbps, "bicubic": per[0, 0], "model": per[1, 0], "psnr_bicubic": per[0, 1],
                   "psnr_model": per[1, 1], "chosen": chosen, "chosen_gain": per[chosen, 0] - per[0, 0],
                   "psnr_chosen": per[chosen, 1]}
            rows.append(row)
            log(f"{name:11} {row['display']:>9} {row['coded']:>8} crf {crf:4.1f} {kbps:7.1f} kbit/s  "
                f"MS-SSIM {per[0, 0]:.4f} → {per[1, 0]:.4f} ({per[1, 0] - per[0, 0]:+.4f})  "
                f"PSNR {per[0, 1]:.2f} → {per[1, 1]:.2f} ({per[1, 1] - per[0, 1]:+.2f} dB)  "
                f"chosen {chosen} ({row['chosen_gain']:+.4f})")
    return rows


def speed(enhancer, repeat: int, log=print) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for coded, display in speed_sizes():
        picture = rng.integers(0, 256, (coded[1], coded[0], 3), dtype=np.uint8)
        picture = av1.upscale(av1.downscale(picture, (coded[0] // 4, coded[1] // 4)), coded)  # smooth, like a base
        times, cpu = {}, {}
        for variant in (0, 1):
            enhancer.upscale(picture, display, variant)
            runs = []
            c0 = time.process_time()
            for _ in range(repeat):
                t = time.perf_counter()
                enhancer.upscale(picture, display, variant)
                runs.append(time.perf_counter() - t)
            cpu[variant] = 1000 * (time.process_time() - c0) / repeat
            times[variant] = 1000 * float(np.median(runs))
        rows.append({"coded": coded, "display": display, "bicubic_ms": times[0], "model_ms": times[1],
                     "model_cpu_ms": cpu[1]})
        log(f"{coded[0]}x{coded[1]} → {display[0]}x{display[1]}: model {times[1]:.1f} ms/frame "
            f"(CPU time {cpu[1]:.1f} ms, all threads), bicubic {times[0]:.1f} ms/frame")
    return rows


def bd_summary(rows: list[dict], log=print) -> None:
    """Per clip: BD-rate of the chosen enhancement against bicubic on the same streams (MS-SSIM and PSNR)."""
    from .rd.bdrate import bd

    for clip in dict.fromkeys(r["clip"] for r in rows):
        sel = [r for r in rows if r["clip"] == clip]
        if len(sel) < 2:
            continue
        parts = []
        for metric, base_key, test_key in (("MS-SSIM", "bicubic", None), ("PSNR", "psnr_bicubic", "psnr_chosen")):
            anchor = [(r["kbps@25"], r[base_key]) for r in sel]
            test = [(r["kbps@25"], r["bicubic"] + r["chosen_gain"] if test_key is None else r[test_key]) for r in sel]
            out = bd(anchor, test)
            parts.append(f"{metric} {out['bd_rate_pct']:+.1f} %" if "bd_rate_pct" in out else
                         f"{metric} n/a ({out.get('bd_rate_why', out.get('why'))})")
        log(f"  BD-rate {clip:11} {sel[0]['kbps@25']:.0f}–{sel[-1]['kbps@25']:.0f} kbit/s: " + ", ".join(parts))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m m3cvcav bench enhancer", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weight file (default: the shipped one)")
    p.add_argument("--media", type=Path, default=None, help="the shared media folder (default ../shared/media)")
    p.add_argument("--points", default=None, help="scale:crf pairs, comma separated (default: -q rungs 0..11)")
    p.add_argument("--clips", default=None, help="held-out clips to run (comma separated; default all)")
    p.add_argument("--engine", default="auto", help="backend: auto, onnxruntime, torch, tensorrt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args(argv)
    from m3cvcav.engines.lite.enhancer import Enhancer

    enhancer = Enhancer(model_id=0, weights=args.weights, backend=args.engine, threads=args.threads)
    cfg = enhancer.config
    print(f"enhancer {enhancer.path.name} sha256 {enhancer.ref.sha256.hex()[:16]}…  {cfg.channels} channels, "
          f"{cfg.layers} convolutions, {cfg.flops_per_coded_pixel()} FLOPs per coded pixel")
    if not args.skip_quality:
        from m3cvcav.engines.lite.enhancer_train import held_out_sources, media_root

        clips = held_out_sources(media_root(args.media))
        if args.clips:
            keep = set(args.clips.split(","))
            clips = [c for c in clips if c[0] in keep]
        if args.points:
            points = [(float(s), float(c)) for s, c in (pt.split(":") for pt in args.points.split(","))]
        else:
            from m3cvcav.filters.ratecontrol import LEVELS

            points = [(LEVELS[q].scale, LEVELS[q].crf) for q in LADDER_RUNGS]
        rows = quality(enhancer, clips, points)
        gains = np.array([r["model"] - r["bicubic"] for r in rows])
        dpsnr = np.array([r["psnr_model"] - r["psnr_bicubic"] for r in rows])
        chosen = np.array([r["chosen_gain"] for r in rows])
        print(f"held-out mean: MS-SSIM {gains.mean():+.4f} (variant 1; {int((gains > 0).sum())}/{len(gains)} points "
              f"better), chosen {chosen.mean():+.4f}, PSNR {dpsnr.mean():+.2f} dB")
        bd_summary(rows)
        for scale in sorted({r["scale"] for r in rows}):
            sel = [r for r in rows if r["scale"] == scale]
            print(f"  scale {scale:<6g} MS-SSIM {np.mean([r['model'] - r['bicubic'] for r in sel]):+.4f}  "
                  f"PSNR {np.mean([r['psnr_model'] - r['psnr_bicubic'] for r in sel]):+.2f} dB")
    if not args.skip_speed:
        speed(enhancer, args.repeat)
        print(f"backend: {enhancer.engine.backend}, {args.threads} threads")
    return 0
