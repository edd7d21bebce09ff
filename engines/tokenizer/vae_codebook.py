"""Codebook-only training over a frozen diffusers ``AutoencoderKL``'s latents (the ``m3cvc`` profile's K*).

The VAE encodes random crops of the training pool; its latent means, normalised as the m3cvc runtime does
(``(mean - shift_factor) * scaling_factor``, ``engines.m3cvc.vae``), are
quantised by a residual EMA codebook (same quantiser as the lite tokenizer, dead codes re-seeded). Output: ``codebook.safetensors``
with ``quantizer.levels.<l>.embed`` and metadata naming the VAE; checkpoints are resumable like the full training.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from m3cvcav.core.errors import ModelError, UsageError

from .data import CropSampler, load_pool
from .model import NetConfig, ResidualVQ
from .train import codebook_stats, save_atomic, setup_logger


@dataclass
class CodebookOptions:
    out: Path
    vae: str
    steps: int = 2000
    batch: int = 8
    crop: int = 256
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    resume: bool = False
    ckpt_every: float = 180.0
    levels: int = 2
    vocab: int = 1024
    log_every: int = 25
    pool: list | None = None


def load_vae(name: str, device: str):
    """A frozen AutoencoderKL from a local folder or the local hub cache (no downloads)."""
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load VAE {name!r} ({err.__class__.__name__}): pass a folder saved with "
                         "save_pretrained or a hub id already in the local cache") from err
    return vae.to(device).eval().requires_grad_(False)


def train_codebook(opts: CodebookOptions) -> Path:
    """Train (or resume) the residual codebook; returns the exported ``codebook.safetensors``."""
    opts.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(opts.threads)
    log = setup_logger(opts.out)
    torch.manual_seed(opts.seed)
    vae = load_vae(opts.vae, opts.device)
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    cfg = NetConfig(latent_dim=int(vae.config.latent_channels), vocab=opts.vocab, levels=opts.levels)
    vq = ResidualVQ(cfg).to(opts.device).train()
    pool = opts.pool if opts.pool is not None else load_pool(opts.out / "pool.npz")
    sampler = CropSampler(pool, opts.crop, opts.seed)
    gen = torch.Generator(device=opts.device).manual_seed(opts.seed)
    ckpt_path, step = opts.out / "codebook_ckpt.pt", 0
    if opts.resume:
        if not ckpt_path.exists():
            raise UsageError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
        state = torch.load(ckpt_path, map_location=opts.device, weights_only=False)
        if NetConfig.from_dict(state["cfg"]) != cfg:
            raise UsageError(f"--resume: checkpoint {ckpt_path} has another codebook configuration")
        vq.load_state_dict(state["vq"])
        step = state["step"]
        sampler.rng.bit_generator.state = state["sampler_rng"]
        gen.set_state(state["gen"])
        log.info("resumed codebook training from %s at step %d", ckpt_path, step)
    else:
        log.info("codebook training over VAE %s latents: %s", opts.vae, json.dumps(cfg.to_dict()))

    def checkpoint() -> None:
        save_atomic({"vq": vq.state_dict(), "step": step, "cfg": cfg.to_dict(), "vae": opts.vae,
                     "sampler_rng": sampler.rng.bit_generator.state, "gen": gen.get_state()}, ckpt_path)

    last = time.monotonic()
    bar = tqdm(total=opts.steps, initial=step, unit="step", dynamic_ncols=True, mininterval=2.0)
    while step < opts.steps:
        x = torch.from_numpy(sampler.batch(opts.batch)).to(opts.device)
        with torch.no_grad():
            z = (vae.encode(x * 2.0 - 1.0).latent_dist.mean - shift) * scale
        dead_below = 0.03 if step < 0.8 * opts.steps else 0.0
        quantised, indices, commit, reseeded = vq.quantize(z, gen, dead_below)
        rel = float((torch.stack(quantised).sum(0) - z).pow(2).mean() / z.pow(2).mean().clamp_min(1e-12))
        step += 1
        bar.update(1)
        bar.set_postfix(rel_mse=f"{rel:.4f}")
        if step % opts.log_every == 0 or step == opts.steps:
            stats = codebook_stats(indices, cfg.vocab)
            log.info("step %d relative latent mse %.4f reseeded %d usage %s perplexity %s", step, rel, reseeded,
                     [round(u, 3) for u, _ in stats], [round(p, 1) for _, p in stats])
        if time.monotonic() - last > opts.ckpt_every:
            checkpoint()
            last = time.monotonic()
    bar.close()
    checkpoint()
    dst = opts.out / "codebook.safetensors"
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({f"quantizer.levels.{i}.embed": q.embed.detach().cpu().contiguous() for i, q in enumerate(vq.levels)},
              str(tmp), metadata={"config": json.dumps(cfg.to_dict()), "vae": opts.vae,
                                  "scaling_factor": str(scale), "shift_factor": str(shift), "steps": str(step)})
    tmp.replace(dst)
    return dst
