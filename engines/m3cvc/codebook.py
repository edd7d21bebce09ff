"""Residual vector quantisation of diffusion-VAE latents: codebook files, quantise / dequantise, k-means fitting.

A codebook has L levels of V entries over p×p patches of latent positions; level l quantises what levels < l left (the
residual), so a grid (d, h/p, w/p) int32 with d ≤ L decodes to the sum of its levels' entries. Two file formats load:
- this module's: safetensors ``codebook`` (L, V, C·p·p) float32, its ``TokenModel`` arrays under ``entropy.<name>``,
  metadata ``codebook_id``, ``patch``, ``latent_channels``;
- ``train tokenizer --vae`` (``engines/tokenizer/vae_codebook.py``): ``quantizer.levels.<l>.embed`` (V, C) and a JSON
  ``config`` (patch 1, no entropy model: add one with ``vae_codebook.attach_entropy_model``).
Dequantising is a table lookup, so the decoder's latent is exactly the encoder's quantised latent. Making codebooks
(training, k-means, fitting entropy models) is ``engines.tokenizer.vae_codebook``'s job: nothing here trains.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from m3cvcav.core.errors import ModelError


ENTROPY_PREFIX = "entropy."
TRAINER_PREFIX = "quantizer.levels."


@dataclass
class Codebook:
    """Residual codebook levels over p×p latent patches, and the arrays of its entropy model."""

    levels: torch.Tensor  # (L, V, C*p*p) float32
    patch: int
    latent_channels: int
    codebook_id: int
    entropy: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def vocab(self) -> int:
        return int(self.levels.shape[1])

    @property
    def depth(self) -> int:
        return int(self.levels.shape[0])

    def quantise(self, latents: torch.Tensor, depth: int | None = None) -> np.ndarray:
        """(N, C, h, w) latents (h, w multiples of ``patch``) → (N, depth, h/p, w/p) int32 indices, level by level."""
        depth = self.depth if depth is None else depth
        residual, grid = to_patches(latents, self.patch)
        out = []
        for entries in self.levels[:depth]:
            idx = torch.cdist(residual, entries).argmin(dim=1)
            residual = residual - entries[idx]
            out.append(idx.to(torch.int32).reshape(latents.shape[0], *grid))
        return torch.stack(out, 1).numpy()

    def dequantise(self, indices: np.ndarray) -> torch.Tensor:
        """(N, d, H, W) indices, d ≤ depth → (N, C, H·p, W·p) latents (sum of the first d levels' entries)."""
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 4 or not 1 <= idx.shape[1] <= self.depth or int(idx.min()) < 0 or int(idx.max()) >= self.vocab:
            raise ModelError(f"token grid {tuple(idx.shape)} does not fit this codebook (vocab {self.vocab}, "
                             f"{self.depth} levels)")
        n, d, h, w = idx.shape
        p, c = self.patch, self.latent_channels
        vec = sum(self.levels[level][idx[:, level].reshape(-1)] for level in range(d))
        return vec.reshape(n, h, w, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h * p, w * p)


def to_patches(latents: torch.Tensor, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, C, h, w) latents → (N·h/p·w/p, C·p·p) patch vectors and the (h/p, w/p) grid."""
    n, c, h, w = latents.shape
    if h % patch or w % patch:
        raise ModelError(f"latent {h}×{w} is not a multiple of the codebook patch {patch}")
    x = latents.float().reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c * patch * patch), (h // patch, w // patch)


def load_codebook(path: str | os.PathLike) -> Codebook:
    """Read a codebook file (either format); a missing or malformed one is a ModelError saying what to do."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"codebook {path} not found: train one with `python -m m3cvcav train tokenizer --vae ...` "
                         "or m3cvcav.engines.tokenizer.vae_codebook.fit_codebook, and list it in tokenizer.codebooks")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            arrays = {key: fh.get_tensor(key) for key in fh.keys()}
        if "codebook" in arrays:
            levels = np.asarray(arrays.pop("codebook"), dtype=np.float32)
            levels = levels[None] if levels.ndim == 2 else levels
            patch, channels, cid = int(meta["patch"]), int(meta["latent_channels"]), int(meta["codebook_id"])
        else:
            count = len([k for k in arrays if k.startswith(TRAINER_PREFIX)])
            levels = np.stack([arrays[f"{TRAINER_PREFIX}{i}.embed"] for i in range(count)]).astype(np.float32)
            patch, channels, cid = 1, int(json.loads(meta["config"])["latent_dim"]), int(meta.get("codebook_id", 0))
    except (KeyError, ValueError, OSError, TypeError) as err:
        raise ModelError(f"codebook {path} is not a codebook file ({type(err).__name__}: {err}): rebuild it") from err
    if levels.ndim != 3 or levels.shape[0] < 1 or levels.shape[2] != channels * patch * patch:
        raise ModelError(f"codebook {path}: levels {levels.shape} do not match patch {patch}, {channels} channels")
    entropy = {k[len(ENTROPY_PREFIX):]: v for k, v in arrays.items() if k.startswith(ENTROPY_PREFIX)}
    return Codebook(torch.from_numpy(np.ascontiguousarray(levels)), patch, channels, cid, entropy)


def save_codebook(path: str | os.PathLike, codebook: Codebook, *, codebook_id: int | None = None) -> Path:
    """Write a codebook file in this module's format (temp file + rename)."""
    path = Path(path)
    cid = codebook.codebook_id if codebook_id is None else codebook_id
    arrays = {"codebook": codebook.levels.numpy().astype(np.float32)}
    arrays.update({ENTROPY_PREFIX + k: np.ascontiguousarray(v) for k, v in codebook.entropy.items()})
    meta = {"codebook_id": str(cid), "patch": str(codebook.patch), "latent_channels": str(codebook.latent_channels)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
