"""Training loop of the tokenizer: seeded, resumable, checkpointed, logged, with codebook-health statistics.

``train(opts)`` trains the full network on random crops of the pool (reconstruction: L1 + (1 − MS-SSIM) and the
commitment loss; EMA codebooks with dead-code re-seeding; the number of decoded levels drawn per step so every depth,
i.e. every rate point, is trained). Checkpoints (``ckpt.pt``: model, optimiser, step, RNG states) are written atomically
every ``ckpt_every`` seconds and at the end; ``--resume`` continues from one bit-for-bit in the same process environment.
``warm_restart`` (with ``resume``) starts a new schedule segment at the checkpoint's step: warm-up to ``lr``, cosine decay
and the dead-code re-seeding window all span [checkpoint step, ``steps``); the segment's start is kept in the checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import get_logger

from .data import CropSampler, load_pool
from .model import NetConfig, TokenizerNet

MSSSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363]  # four scales: crops of 128 px


@dataclass
class TrainOptions:
    out: Path
    steps: int = 4000
    batch: int = 8
    crop: int = 128
    lr: float = 5e-4
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    resume: bool = False
    warm_restart: bool = False  # with resume: restart the LR schedule at the checkpoint's step
    ckpt_every: float = 180.0
    commit_weight: float = 0.25
    log_every: int = 25
    cfg: NetConfig = NetConfig()
    pool: list | None = None  # in-memory pool (tests); default: the cached media pool under ``out``


def setup_logger(out: Path) -> logging.Logger:
    """The run's log, to ``out/train.log`` only (not propagated to the package logger)."""
    logger = get_logger(__name__).getChild(str(out))
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def codebook_stats(indices: torch.Tensor, vocab: int) -> list[tuple[float, float]]:
    """Per level: (fraction of codes used, perplexity) over ``indices`` (N, L, h, w)."""
    out = []
    for level in range(indices.shape[1]):
        counts = torch.bincount(indices[:, level].flatten(), minlength=vocab).double()
        p = counts / counts.sum()
        ent = -(p[p > 0] * p[p > 0].log()).sum()
        out.append((float((counts > 0).double().mean()), float(ent.exp())))
    return out


def lr_at(step: int, opts: TrainOptions, start: int = 0) -> float:
    """Learning rate at ``step`` of the schedule segment [start, opts.steps): linear warm-up, cosine decay to 10 %."""
    span = opts.steps - start
    step -= start
    warm = min(200, max(1, span // 10))
    if step < warm:
        return opts.lr * (step + 1) / warm
    t = (step - warm) / max(1, span - warm)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train(opts: TrainOptions) -> Path:
    """Train (or resume) and return the checkpoint path."""
    opts.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(opts.threads)
    log = setup_logger(opts.out)
    ckpt_path = opts.out / "ckpt.pt"
    device = torch.device(opts.device)
    torch.manual_seed(opts.seed)
    model = TokenizerNet(opts.cfg).to(device)
    optim = torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters()), lr=opts.lr)
    pool = opts.pool if opts.pool is not None else load_pool(opts.out / "pool.npz")
    sampler = CropSampler(pool, opts.crop, opts.seed)
    gen = torch.Generator(device=device).manual_seed(opts.seed)
    step = 0
    start = 0  # first step of the current schedule segment
    if opts.warm_restart and not opts.resume:
        raise UsageError("--warm-restart needs --resume: it restarts the schedule of an existing checkpoint")
    if opts.resume:
        if not ckpt_path.exists():
            raise UsageError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if NetConfig.from_dict(state["cfg"]) != opts.cfg:
            raise UsageError(f"--resume: checkpoint {ckpt_path} was trained with another network configuration")
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        step = state["step"]
        sampler.rng.bit_generator.state = state["sampler_rng"]
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        start = step if opts.warm_restart else state.get("sched_start", 0)
        if opts.warm_restart and step >= opts.steps:
            raise UsageError(f"--resume: checkpoint {ckpt_path} is at step {step}; give --steps above it")
        log.info("resumed from %s at step %d%s", ckpt_path, step,
                 f" (warm restart: lr {opts.lr:.2e}, schedule {start}..{opts.steps})" if opts.warm_restart else "")
    else:
        run = {**opts.cfg.to_dict(), "steps": opts.steps, "batch": opts.batch, "crop": opts.crop, "lr": opts.lr,
               "seed": opts.seed}
        log.info("training from scratch: %s", json.dumps(run))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("parameters: %d, pool images: %d, device: %s", n_params, len(pool), device)

    def checkpoint() -> None:
        save_atomic({"model": model.state_dict(), "optim": optim.state_dict(), "step": step,
                     "cfg": opts.cfg.to_dict(), "sampler_rng": sampler.rng.bit_generator.state,
                     "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "seed": opts.seed,
                     "sched_start": start}, ckpt_path)
        log.info("checkpoint at step %d → %s", step, ckpt_path)

    model.train()
    last_ckpt = time.monotonic()
    bar = tqdm(total=opts.steps, initial=step, unit="step", dynamic_ncols=True, mininterval=2.0)
    levels = opts.cfg.levels
    acc: list[float] = []
    while step < opts.steps:
        for group in optim.param_groups:
            group["lr"] = lr_at(step, opts, start)
        x = torch.from_numpy(sampler.batch(opts.batch)).to(device)
        depth = int(torch.randint(1, levels + 1, (1,), generator=gen, device=device))
        dead_below = 0.03 if step < start + 0.8 * (opts.steps - start) else 0.0  # stop re-seeding for the last fifth of training
        y, indices, commit, reseeded = model(x, depth, gen, dead_below)
        l1 = (y - x).abs().mean()
        ms = ms_ssim(y.clamp(0, 1), x, data_range=1.0, win_size=7, weights=MSSSIM_WEIGHTS)
        loss = l1 + (1.0 - ms) + opts.commit_weight * commit
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        acc.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{acc[-1]:.4f}", msssim=f"{ms.item():.3f}", d=depth)
        if step % opts.log_every == 0 or step == opts.steps:
            stats = codebook_stats(indices, opts.cfg.vocab)
            log.info("step %d loss %.4f (mean of %d) l1 %.4f msssim@%d %.4f commit %.4f reseeded %d usage %s "
                     "perplexity %s lr %.2e %.2f step/s", step, float(np.mean(acc)), len(acc), l1.item(), depth,
                     ms.item(), commit.item(), reseeded, [round(u, 3) for u, _ in stats],
                     [round(p, 1) for _, p in stats], lr_at(step, opts, start), bar.format_dict["rate"] or 0.0)
            acc.clear()
        if time.monotonic() - last_ckpt > opts.ckpt_every:
            checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    checkpoint()
    return ckpt_path
