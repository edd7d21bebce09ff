"""Making VAE codebooks for the ``m3cvc`` profile's K*: codebook-only training over a frozen diffusers ``AutoencoderKL``'s latents (the ``m3cvc`` profile's K*).

The VAE, loaded by the m3cvc runtime's own loader (``engines.m3cvc.vae.load_vae``: a local folder or a hub id at a
revision, from the cache; a pipeline's ``vae/`` subfolder or a bare VAE), encodes random crops of the training pool;
its latent means, normalised as the runtime does (``(mean - shift_factor) * scaling_factor``), are
quantised by a residual EMA codebook (same quantiser as the lite tokenizer, dead codes re-seeded). Output: ``codebook.safetensors``
with ``quantizer.levels.<l>.embed`` and metadata naming the VAE; checkpoints are resumable like the full training.
``fit_codebook`` makes one by residual k-means instead, and ``attach_entropy_model`` gives a trained one its entropy
model; the runtime format (read, quantise, dequantise) is ``engines.m3cvc.codebook``.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from m3cvcav.bitstream.entropy import TokenModel
from m3cvcav.core.errors import ModelError, UsageError
from ..m3cvc.codebook import Codebook, load_codebook, save_codebook, to_patches
from ..m3cvc.vae import Vae

from .data import CropSampler, load_pool
from .model import NetConfig, ResidualVQ
from .train import codebook_stats, save_atomic, setup_logger


@dataclass
class CodebookOptions:
    out: Path
    vae: str  # a local folder or a hub id (in the local cache: `hf download` / `engines fetch` first)
    vae_revision: str | None = None  # the hub commit (default: the cached default branch)
    vae_subfolder: str | None = None  # None: "vae" when the folder is a pipeline (has vae/), else the folder itself
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


def load_vae(opts: CodebookOptions):
    """The frozen VAE of ``opts`` in float32 on ``opts.device``, through the runtime's loader (no downloads)."""
    from ..m3cvc.common import resolve_folder
    from ..m3cvc.vae import load_vae as load_runtime_vae

    settings = {"repo": opts.vae, "revision": opts.vae_revision, "device": opts.device, "dtype": "float32",
                "profile": "m3cvc", "role": "tokenizer"}
    subfolder = opts.vae_subfolder
    if subfolder is None:
        folder = resolve_folder(opts.vae, opts.vae_revision, role="tokenizer")
        subfolder = "vae" if (folder / "vae" / "config.json").is_file() else ""
    vae = load_runtime_vae(settings, "tokenizer", subfolder)
    vae.model.requires_grad_(False)
    return vae


def train_codebook(opts: CodebookOptions) -> Path:
    """Train (or resume) the residual codebook; returns the exported ``codebook.safetensors``."""
    opts.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(opts.threads)
    log = setup_logger(opts.out)
    torch.manual_seed(opts.seed)
    vae = load_vae(opts)
    scale, shift = vae.normalisation()
    cfg = NetConfig(latent_dim=vae.channels, vocab=opts.vocab, levels=opts.levels)
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
            z = vae.encode_tensor(x * 2.0 - 1.0)
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


# -- codebooks fitted by k-means, and entropy models for trained ones ----------------------------------------------
def _latents(vae: Vae, images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.cat([vae.encode([im]) for im in images])


def fit_entropy(book: Codebook, latents: torch.Tensor) -> dict[str, np.ndarray]:
    """The static entropy model (``TokenModel`` arrays) of ``book``'s full-depth token grids of ``latents``."""
    return TokenModel.fit(list(book.quantise(latents)), book.vocab).to_arrays()


def attach_entropy_model(path: str | os.PathLike, vae: Vae, images: Sequence[np.ndarray], out: str | os.PathLike,
                         *, codebook_id: int = 0) -> Path:
    """Read a codebook (e.g. from ``train tokenizer --vae``), fit its entropy model on ``images`` and write it to
    ``out`` in this module's format."""
    book = load_codebook(path)
    book.entropy = fit_entropy(book, _latents(vae, images))
    return save_codebook(out, book, codebook_id=codebook_id)


def fit_codebook(vae: Vae, images: Sequence[np.ndarray], *, vocab: int, patch: int = 1, levels: int = 1,
                 iters: int = 20, seed: int = 0, codebook_id: int = 0) -> Codebook:
    """Residual k-means (Lloyd, seeded; level l clusters what levels < l left) over the VAE latents of ``images``
    (sides multiples of ``vae.scale * patch``), then the entropy model fitted on the resulting token grids."""
    latents = _latents(vae, images)
    residual, _ = to_patches(latents, patch)
    if residual.shape[0] < vocab:
        raise ModelError(f"{residual.shape[0]} latent vectors are too few for {vocab} codebook entries: use more images")
    gen = torch.Generator().manual_seed(seed)
    tables = []
    for _ in range(levels):
        entries = _kmeans(residual, vocab, iters, gen)
        residual = residual - entries[torch.cdist(residual, entries).argmin(dim=1)]
        tables.append(entries)
    book = Codebook(torch.stack(tables), patch, latents.shape[1], codebook_id)
    book.entropy = fit_entropy(book, latents)
    return book


def _kmeans(vectors: torch.Tensor, vocab: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    entries = vectors[torch.randperm(vectors.shape[0], generator=gen)[:vocab]].clone()
    for _ in range(iters):
        assign = torch.cdist(vectors, entries).argmin(dim=1)
        sums = torch.zeros_like(entries).index_add_(0, assign, vectors)
        counts = torch.bincount(assign, minlength=vocab).unsqueeze(1)
        empty = counts.squeeze(1) == 0
        entries = torch.where(empty.unsqueeze(1), entries, sums / counts.clamp(min=1))
        if empty.any():  # re-seed dead entries with the worst-served vectors
            err = (vectors - entries[assign]).pow(2).sum(1)
            entries[empty] = vectors[err.topk(int(empty.sum())).indices]
    return entries.contiguous()
