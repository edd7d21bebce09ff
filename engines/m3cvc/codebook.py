"""Vector quantisation of diffusion-VAE latents: the codebook file, quantise / dequantise, and k-means fitting.

A codebook file is safetensors with ``codebook`` (V, C·p·p) float32 (one entry per p×p patch of latent positions) and the
arrays of its entropy model (``m3cvcav.bitstream.entropy.TokenModel.to_arrays()``) under ``entropy.<name>``; metadata
``codebook_id``, ``patch`` and ``latent_channels``. Token grids are (1, h/p, w/p) int32. Dequantising is a table lookup,
so the decoder's latent is exactly the encoder's quantised latent.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from m3cvcav.errors import ModelError

from .vae import Vae

ENTROPY_PREFIX = "entropy."


@dataclass
class Codebook:
    """One rate point's codebook: entries over p×p latent patches, and the arrays of its entropy model."""

    entries: torch.Tensor  # (V, C*p*p) float32
    patch: int
    latent_channels: int
    codebook_id: int
    entropy: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def vocab(self) -> int:
        return int(self.entries.shape[0])

    def quantise(self, latents: torch.Tensor) -> np.ndarray:
        """(N, C, h, w) latents (h, w multiples of ``patch``) → (N, 1, h/p, w/p) int32 nearest-entry indices."""
        vectors, grid = _patches(latents, self.patch)
        dist = torch.cdist(vectors, self.entries)  # (N·H·W, V)
        return dist.argmin(dim=1).to(torch.int32).reshape(latents.shape[0], 1, *grid).numpy()

    def dequantise(self, indices: np.ndarray) -> torch.Tensor:
        """(N, 1, H, W) indices → (N, C, H·p, W·p) latents."""
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 4 or idx.shape[1] != 1 or int(idx.min()) < 0 or int(idx.max()) >= self.vocab:
            raise ModelError(f"token grid {tuple(idx.shape)} does not fit this codebook (vocab {self.vocab}, 1 level)")
        n, _, h, w = idx.shape
        p, c = self.patch, self.latent_channels
        vec = self.entries[idx.reshape(-1)].reshape(n, h, w, c, p, p)
        return vec.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h * p, w * p)


def _patches(latents: torch.Tensor, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    n, c, h, w = latents.shape
    if h % patch or w % patch:
        raise ModelError(f"latent {h}×{w} is not a multiple of the codebook patch {patch}")
    x = latents.float().reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c * patch * patch), (h // patch, w // patch)


def load_codebook(path: str | os.PathLike) -> Codebook:
    """Read a codebook file; a missing or malformed one is a ModelError saying how to make it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"codebook {path} not found: train one with `python -m m3cvcav train tokenizer --vae ...` "
                         "or set tokenizer.codebooks in the profile")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        arrays = load_file(str(path))
        entries = torch.from_numpy(arrays.pop("codebook").astype(np.float32))
        patch, channels, cid = int(meta["patch"]), int(meta["latent_channels"]), int(meta["codebook_id"])
    except (KeyError, ValueError, OSError) as err:
        raise ModelError(f"codebook {path} is not a m3cvc codebook file ({err}): rebuild it") from err
    if entries.ndim != 2 or entries.shape[1] != channels * patch * patch:
        raise ModelError(f"codebook {path}: entries {tuple(entries.shape)} do not match patch {patch}, {channels} channels")
    entropy = {k[len(ENTROPY_PREFIX):]: v for k, v in arrays.items() if k.startswith(ENTROPY_PREFIX)}
    return Codebook(entries, patch, channels, cid, entropy)


def save_codebook(path: str | os.PathLike, codebook: Codebook, *, codebook_id: int | None = None) -> Path:
    """Write a codebook file (temp file + rename)."""
    path = Path(path)
    cid = codebook.codebook_id if codebook_id is None else codebook_id
    arrays = {"codebook": codebook.entries.numpy().astype(np.float32)}
    arrays.update({ENTROPY_PREFIX + k: np.ascontiguousarray(v) for k, v in codebook.entropy.items()})
    meta = {"codebook_id": str(cid), "patch": str(codebook.patch), "latent_channels": str(codebook.latent_channels)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def fit_codebook(vae: Vae, images: Sequence[np.ndarray], *, vocab: int, patch: int = 1, iters: int = 20,
                 seed: int = 0, codebook_id: int = 0) -> Codebook:
    """k-means (Lloyd, seeded) over the VAE latents of ``images`` (each a multiple of ``vae.scale * patch`` in size),
    then the static entropy model fitted on the resulting token grids."""
    latents = torch.cat([vae.encode([im]) for im in images])
    vectors, _ = _patches(latents, patch)
    if vectors.shape[0] < vocab:
        raise ModelError(f"{vectors.shape[0]} latent vectors are too few for {vocab} codebook entries: use more images")
    gen = torch.Generator().manual_seed(seed)
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
    book = Codebook(entries.contiguous(), patch, latents.shape[1], codebook_id)
    from m3cvcav.bitstream.entropy import TokenModel

    grids = list(book.quantise(latents))
    book.entropy = TokenModel.fit(grids, vocab).to_arrays()
    return book
