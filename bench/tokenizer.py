"""``python -m m3cvcav bench tokenizer [--json] [--out DIR] [--weights PATH]``: RD of the shipped tokenizer.

On the held-out images (``engines.tokenizer.data.HELD_OUT_*``, never trained on) resized to 512 px wide: per rate point,
the real entropy-coded token payload (``bitstream.entropy.encode_tokens``, decoded back and checked) → bpp, PSNR (RGB),
MS-SSIM (pytorch-msssim, RGB, data range 255), image VMAF v0.6.1 and VMAF NEG (vmaf-torch on BT.709 luma, motion
feature 0 as for a still: an identical image scores 97.43, libvmaf's value), the lite semantic similarity
(EfficientNet-Lite0 embedding cosine), and encode/decode time per image.
Baselines on the same images: JPEG and WebP (Pillow) and AV1 intra (SVT-AV1 via PyAV,
decoded with dav1d) over quality sweeps; rates are payload bytes (no container). Values are means over the images.
MS-SSIM and VMAF BD-rate vs AV1: ``bench rd``'s BD-rate (``bench.rd.bdrate.bd``: Bjøntegaard, PCHIP, over the
overlapping quality range).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from m3cvcav.core.errors import UsageError

from m3cvcav.core.quality import psnr

from .rd.bdrate import bd
from .rd.metrics import msssim_frames

os.environ.setdefault("SVT_LOG", "1")
WIDTH = 512
JPEG_Q = (1, 2, 3, 5, 8, 12, 20, 35, 50, 75)
WEBP_Q = (0, 2, 5, 10, 20, 35, 50, 75)
AV1_CRF = (63, 60, 57, 54, 50, 45, 40, 34, 28)
METRICS = ("psnr", "msssim", "vmaf", "vmaf_neg", "semantic")


def msssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM as ``bench rd`` measures it (pytorch-msssim, RGB, data range 255)."""
    return msssim_frames([a], [b])[0]


def luma(img: np.ndarray) -> np.ndarray:
    """BT.709 limited-range Y' (8-bit) of an RGB image, the plane VMAF reads."""
    y = img.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return np.clip(np.rint(16.0 + 219.0 * y / 255.0), 0, 255).astype(np.uint8)


def image_vmaf(a: np.ndarray, b: np.ndarray) -> dict[str, float] | None:
    """Image VMAF and VMAF NEG of ``b`` against ``a`` (None when vmaf-torch is not installed)."""
    from .rd import vmaf

    if vmaf.missing():
        return None
    return {k: v[0] for k, v in vmaf.scores([luma(a)], [luma(b)]).items()}


def load_embedder():
    """The lite profile's semantic embedder; None when it cannot be loaded here."""
    from m3cvcav.engines.registry import load_profile

    try:
        return load_profile("lite").engine("embedder"), "registry lite profile"
    except Exception as err:
        return None, f"unavailable ({type(err).__name__}: {err})"


def pil_codec(fmt: str, img: np.ndarray, q: int) -> tuple[int, np.ndarray, float, float]:
    from PIL import Image

    t0 = time.perf_counter()
    buf = io.BytesIO()
    opts = {"quality": q, "method": 6} if fmt == "WEBP" else {"quality": q, "optimize": True}
    Image.fromarray(img).save(buf, fmt, **opts)
    t1 = time.perf_counter()
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return len(buf.getvalue()), out, t1 - t0, time.perf_counter() - t1


def av1_intra(img: np.ndarray, crf: int) -> tuple[int, np.ndarray, float, float]:
    import av

    h, w = img.shape[:2]
    pad = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    t0 = time.perf_counter()
    enc = av.CodecContext.create("libsvtav1", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = pad.shape[1], pad.shape[0], "yuv420p", Fraction(1, 25)
    enc.options = {"crf": str(crf), "preset": "6"}
    frame = av.VideoFrame.from_ndarray(pad, format="rgb24").reformat(format="yuv420p")
    packets = [bytes(p) for p in list(enc.encode(frame)) + list(enc.encode(None))]
    t1 = time.perf_counter()
    dec = av.CodecContext.create("libdav1d", "r")
    frames = [f for p in packets for f in dec.decode(av.Packet(p))] + list(dec.decode(None))
    out = frames[0].to_ndarray(format="rgb24")[:h, :w]
    return sum(map(len, packets)), out, t1 - t0, time.perf_counter() - t1


def tokenizer_codec(tok, rp: int, img: np.ndarray) -> tuple[int, np.ndarray, float, float]:
    from m3cvcav.bitstream.entropy import decode_tokens, encode_tokens

    model = tok.token_model(rp)
    t0 = time.perf_counter()
    grid = tok.encode(img, rp)
    data = encode_tokens(grid.indices, model)
    t1 = time.perf_counter()
    indices = decode_tokens(data, grid.indices.shape, model)
    if not np.array_equal(indices, grid.indices):
        raise RuntimeError("entropy decoding did not return the encoded tokens")
    grid.indices = indices
    out = tok.decode(grid)
    return len(data), out, t1 - t0, time.perf_counter() - t1


def measure(codec, images, embed, sources) -> dict:
    """Mean metrics of ``codec`` over ``images``; with ``embed``, ``sources`` holds the images' own embeddings
    (computed once for every codec setting)."""
    rows = []
    for i, img in enumerate(images):
        nbytes, out, t_enc, t_dec = codec(img)
        row = {"bpp": 8.0 * nbytes / (img.shape[0] * img.shape[1]), "psnr": psnr(img, out),
               "msssim": msssim(img, out), "enc_s": t_enc, "dec_s": t_dec, **(image_vmaf(img, out) or {})}
        if embed is not None:
            row["semantic"] = float(np.dot(sources[i], embed.embed([out])[0]))
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def interp_at(curve: list[dict], bpp: float, metric: str) -> float | None:
    """The curve's metric at ``bpp`` (linear in log-bpp), None outside the curve's rate range."""
    pts = sorted((np.log(c["bpp"]), c[metric]) for c in curve)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x = np.log(bpp)
    return None if x < xs[0] or x > xs[-1] else float(np.interp(x, xs, ys))


def bd_rate(anchor: list[dict], test: list[dict], metric: str = "msssim") -> tuple[float | None, list[float] | str]:
    """BD-rate (%) of ``test`` against ``anchor`` at equal ``metric`` (``bench.rd.bdrate.bd`` on (bpp, metric)
    points), and the quality range it integrates over; (None, why) where it is not defined."""
    out = bd([(p["bpp"], p[metric]) for p in anchor], [(p["bpp"], p[metric]) for p in test], unit="bpp")
    if "bd_rate_pct" not in out:
        return None, out.get("bd_rate_why") or out.get("why", "not defined")
    return out["bd_rate_pct"], out["quality_range"]


def plot(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .rd.plots import style

    files = []
    for metric in METRICS:
        if not all(metric in p for curve in results.values() for p in curve):
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, curve in results.items():
            pts = sorted((p["bpp"], p[metric]) for p in curve)
            color, marker = style(name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-" if name == "tokenizer" else "--", marker=marker,
                    color=color, markersize=5, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (512 px wide)")
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path = out / f"rd_{metric}.png"
        fig.tight_layout()
        fig.savefig(path.with_suffix(".tmp.png"), dpi=110)
        plt.close(fig)
        path.with_suffix(".tmp.png").replace(path)
        files.append(str(path))
    return files


def table(results: dict, settings: dict) -> str:
    lines = ["| codec | setting | bpp | PSNR dB | MS-SSIM | VMAF | VMAF NEG | semantic | enc ms | dec ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def opt(p: dict, key: str, fmt: str) -> str:
        return format(p[key], fmt) if key in p else "n/a"

    for name, curve in results.items():
        for s, p in zip(settings[name], curve):
            lines.append(f"| {name} | {s} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['msssim']:.4f} | "
                         f"{opt(p, 'vmaf', '.2f')} | {opt(p, 'vmaf_neg', '.2f')} | {opt(p, 'semantic', '.4f')} | "
                         f"{p['enc_s'] * 1e3:.0f} | {p['dec_s'] * 1e3:.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m m3cvcav bench tokenizer")
    ap.add_argument("--json", action="store_true", help="print machine-readable results")
    ap.add_argument("--out", type=Path, default=Path("report/tokenizer"), help="folder for the table and RD plots")
    ap.add_argument("--weights", type=Path, default=None, help="tokenizer weight file (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    try:
        args = ap.parse_args(argv)
    except SystemExit as err:
        if err.code == 0:
            return 0
        raise UsageError("bench tokenizer: bad arguments (see --help)") from None
    import torch

    from m3cvcav.engines.tokenizer import load_lite
    from m3cvcav.engines.tokenizer.data import held_out_images
    from m3cvcav.engines.tokenizer.export import to_width

    torch.set_num_threads(args.threads)
    tok = load_lite({"weights": str(args.weights)} if args.weights else {})
    named = held_out_images()
    images = [to_width(n.image, WIDTH) for n in named]
    embed, embed_src = load_embedder()
    sources = embed.embed(images) if embed is not None else None
    results, settings = {}, {}
    results["tokenizer"] = [measure(lambda im, r=rp: tokenizer_codec(tok, r, im), images, embed, sources)
                            for rp in range(len(tok.rate_points))]
    settings["tokenizer"] = [f"rp{r.index} {r.name}" for r in tok.rate_points]
    results["jpeg"] = [measure(lambda im, q=q: pil_codec("JPEG", im, q), images, embed, sources) for q in JPEG_Q]
    settings["jpeg"] = [f"q{q}" for q in JPEG_Q]
    results["webp"] = [measure(lambda im, q=q: pil_codec("WEBP", im, q), images, embed, sources) for q in WEBP_Q]
    settings["webp"] = [f"q{q}" for q in WEBP_Q]
    results["av1"] = [measure(lambda im, c=c: av1_intra(im, c), images, embed, sources) for c in AV1_CRF]
    settings["av1"] = [f"crf{c}" for c in AV1_CRF]

    floor = []
    for i, p in enumerate(results["tokenizer"]):
        for base in ("jpeg", "webp", "av1"):
            ref = interp_at(results[base], p["bpp"], "msssim")
            lowest = min(c["bpp"] for c in results[base])
            floor.append({"rate_point": i, "codec": base, "bpp": p["bpp"], "msssim": p["msssim"], "codec_msssim": ref,
                          "note": (f"{base} cannot go below {lowest:.4f} bpp" if ref is None and p["bpp"] < lowest
                                   else "" if ref is not None else f"above {base}'s sweep")})
    bd_msssim, overlap = bd_rate(results["av1"], results["tokenizer"])
    vmaf_bd = (bd_rate(results["av1"], results["tokenizer"], "vmaf")
               if all("vmaf" in p for c in (results["av1"], results["tokenizer"]) for p in c) else None)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = plot(results, args.out)
    md = table(results, settings)
    summary = {"images": [n.name for n in named], "width": WIDTH, "weights_sha256": tok.ref.sha256.hex(),
               "semantic_embedder": embed_src, "results": results, "settings": settings, "floor": floor,
               "bd_rate_msssim_vs_av1_percent": bd_msssim, "bd_overlap_msssim": overlap,
               "bd_rate_vmaf_vs_av1_percent": vmaf_bd[0] if vmaf_bd else None,
               "bd_overlap_vmaf": vmaf_bd[1] if vmaf_bd else None, "plots": plots,
               "token_bits": token_bits(tok, images)}
    tmp = args.out / "tokenizer.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(args.out / "tokenizer.json")
    (args.out / "tokenizer.md.tmp").write_text(md + "\n")
    (args.out / "tokenizer.md.tmp").replace(args.out / "tokenizer.md")
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"held-out images at {WIDTH} px wide: {', '.join(summary['images'])}")
    print(f"weights sha256 {summary['weights_sha256']}; semantic embedder: {embed_src}\n")
    print(md)
    print("\nbits/token on held-out tokens: shipped context model (ideal, coded) vs empirical order-0 entropy "
          "(pooled per level; per image)")
    for r in summary["token_bits"]:
        print(f"  rp{r['rate_point']}: {r['model_bits_per_token']:.3f} ideal, {r['coded_bits_per_token']:.3f} coded "
              f"vs order-0 {r['order0_pooled_bits_per_token']:.3f} pooled, {r['order0_per_image_bits_per_token']:.3f} "
              f"per image ({r['tokens']} tokens)")
    print("\nfloor: tokenizer MS-SSIM vs codec MS-SSIM at equal bpp")
    for f in floor:
        verdict = f["note"] or ("ok" if f["msssim"] >= f["codec_msssim"] else "BELOW")
        ref = f"{f['codec_msssim']:.4f}" if f["codec_msssim"] is not None else "—"
        print(f"  rp{f['rate_point']} {f['bpp']:.4f} bpp: {f['msssim']:.4f} vs {f['codec']} {ref}: {verdict}")
    if bd_msssim is None:
        print(f"\nMS-SSIM BD-rate vs AV1 intra: {overlap}")
    else:
        print(f"\nMS-SSIM BD-rate vs AV1 intra over MS-SSIM {overlap[0]:.4f}..{overlap[1]:.4f}: {bd_msssim:+.1f}%")
    if vmaf_bd is None:
        print("VMAF: not computed (pip install vmaf-torch, in the bench extra)")
    elif vmaf_bd[0] is None:
        print(f"VMAF BD-rate vs AV1 intra: {vmaf_bd[1]}")
    else:
        print(f"VMAF BD-rate vs AV1 intra over VMAF {vmaf_bd[1][0]:.2f}..{vmaf_bd[1][1]:.2f}: {vmaf_bd[0]:+.1f}%")
    print("plots: " + ", ".join(plots))
    return 0


def token_bits(tok, images) -> list[dict]:
    """Per rate point, bits/token of the shipped context model (ideal and coded) vs order-0 entropy: the empirical
    entropy of all held-out tokens pooled per level (an optimistic order-0 bound: it is fitted to the tokens it
    measures) and of each image's own histogram (more optimistic still on small grids)."""
    from m3cvcav.bitstream.entropy import encode_tokens

    out = []
    for rp in range(len(tok.rate_points)):
        model = tok.token_model(rp)
        grids = [tok.encode(img, rp).indices for img in images]
        n = sum(g.size for g in grids)
        pooled = sum(model.order0_entropy_bits(np.concatenate([g[level].ravel() for g in grids])[None, None])
                     for level in range(grids[0].shape[0]))
        out.append({"rate_point": rp, "tokens": n,
                    "model_bits_per_token": sum(model.ideal_bits(g) for g in grids) / n,
                    "coded_bits_per_token": sum(8 * len(encode_tokens(g, model)) for g in grids) / n,
                    "order0_pooled_bits_per_token": pooled / n,
                    "order0_per_image_bits_per_token": sum(model.order0_entropy_bits(g) for g in grids) / n})
    return out
