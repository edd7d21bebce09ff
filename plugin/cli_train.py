"""``python -m m3cvcav train tokenizer|enhancer ...``: train the keyframe tokenizer (or only a codebook over a frozen
VAE), or the lite enhancer (the learned restoration upscaler of the AV1 base)."""
from __future__ import annotations

import argparse
from pathlib import Path

from m3cvcav.core.errors import UsageError

from .options import ArgumentParser


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m m3cvcav train tokenizer",
                description="Train the VQ keyframe tokenizer on the shared media (CPU, or CUDA when present).")
    p.add_argument("--out", type=Path, default=Path("runs/tok"), help="run folder: checkpoint, log, cached pool")
    p.add_argument("--steps", type=int, default=4000, help="total optimiser steps (default 4000)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="training crop size in pixels (multiple of 16, ≥ 112)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--warm-restart", action="store_true",
                   help="with --resume: restart the schedule at the checkpoint's step (warm-up to --lr, cosine decay "
                        "to --steps)")
    p.add_argument("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--vae", default=None, help="train only a residual codebook over this frozen diffusers "
                   "AutoencoderKL's latents (a folder, or a hub id already in the local cache: a pipeline such as "
                   "stabilityai/sd-turbo, whose vae/ is used, or a bare VAE)")
    p.add_argument("--vae-revision", default=None, help="with --vae: the hub commit (as the profile pins it)")
    p.add_argument("--vae-subfolder", default=None, help="with --vae: the VAE's folder inside it (default: vae/ "
                   "when there is one)")
    p.add_argument("--levels", type=int, default=None, help="residual VQ levels (default 4; --vae: 2)")
    p.add_argument("--vocab", type=int, default=None, help="codebook size per level (default 512; --vae: 1024)")
    p.add_argument("--export", type=Path, default=None,
                   help="after training, export the shipped weight file to this path (full tokenizer only)")
    return p


def _enhancer_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m m3cvcav train enhancer",
                       description="Train the lite enhancer (restoration upscaler of the AV1 base) on pairs the codec "
                                   "makes from the shared media (CPU, or CUDA when present).")
    p.add_argument("--out", type=Path, default=Path("runs/enhancer"), help="run folder: checkpoint, log, cached pairs")
    p.add_argument("--steps", type=int, default=8000, help="total optimiser steps (default 8000)")
    p.add_argument("--batch", type=int, default=3, help="frames of one coded segment a step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=3, help="convolutions, first and last included")
    p.add_argument("--media", type=Path, default=None, help="the shared media folder (default ../shared/media)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--ckpt-every", type=float, default=120.0, help="seconds between checkpoints")
    p.add_argument("--export", type=Path, default=None,
                   help="write the shipped weight file (safetensors) here at every checkpoint and at the end")
    return p


def _device(name: str | None) -> str:
    import torch

    device = name or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("train: --device cuda but no CUDA device is available; use --device cpu")
    return device


def train_enhancer(argv: list[str]) -> int:
    args = _enhancer_parser().parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.channels < 1 or args.layers < 2:
        raise UsageError("train: --steps, --batch and --channels must be positive and --layers at least 2")
    from m3cvcav.engines.lite.enhancer_net import NetConfig
    from m3cvcav.engines.lite.enhancer_train import TrainOptions, train
    from m3cvcav.filters.ratecontrol import LEVELS

    opts = TrainOptions(out=args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                        device=_device(args.device), threads=args.threads, resume=args.resume,
                        ckpt_every=args.ckpt_every, media=args.media, export=args.export,
                        cfg=NetConfig(channels=args.channels, layers=args.layers),
                        ladder=tuple((level.scale, level.crf) for level in LEVELS[:13]))  # -q 0..12
    ckpt = train(opts, log=lambda line: print(line, flush=True))
    print(f"checkpoint written to {ckpt}" + (f"; weights exported to {args.export}" if args.export else ""))
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m m3cvcav train tokenizer|enhancer [options]   (--help after the model for options)")
        return 0 if argv else 2
    if argv[0] == "enhancer":
        return train_enhancer(argv[1:])
    if argv[0] != "tokenizer":
        raise UsageError(f"train: unknown model {argv[0]!r}: the trainable models are 'tokenizer' and 'enhancer'")
    args = _parser().parse_args(argv[1:])
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("train: --device cuda but no CUDA device is available; use --device cpu")
    if args.steps < 1 or args.batch < 1:
        raise UsageError("train: --steps and --batch must be positive")
    if args.crop % 16 or args.crop < 112:
        raise UsageError(f"train: --crop {args.crop} must be a multiple of 16 and at least 112")
    if args.vae:
        from m3cvcav.engines.tokenizer.vae_codebook import CodebookOptions, train_codebook

        path = train_codebook(CodebookOptions(
            out=args.out, vae=args.vae, vae_revision=args.vae_revision, vae_subfolder=args.vae_subfolder,
            steps=args.steps, batch=args.batch, crop=args.crop, seed=args.seed,
            device=device, threads=args.threads, resume=args.resume, ckpt_every=args.ckpt_every,
            levels=args.levels or 2, vocab=args.vocab or 1024))
        print(f"codebook written to {path}")
        return 0
    from m3cvcav.engines.tokenizer.model import NetConfig
    from m3cvcav.engines.tokenizer.train import TrainOptions, train

    cfg = NetConfig(levels=args.levels or 4, vocab=args.vocab or 512)
    ckpt = train(TrainOptions(out=args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                              seed=args.seed, device=device, threads=args.threads, resume=args.resume,
                              warm_restart=args.warm_restart, ckpt_every=args.ckpt_every, cfg=cfg))
    print(f"checkpoint written to {ckpt}")
    if args.export:
        from m3cvcav.engines.tokenizer.export import export_weights

        print(f"weights exported to {export_weights(ckpt, args.export)}")
    return 0
