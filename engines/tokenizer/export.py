"""Export a training checkpoint as the shipped weight file, with the entropy models fitted from training-image tokens
(the pool and its mirror images).

The file (safetensors) holds the encoder/decoder weights and codebooks, one ``TokenModel`` per rate point (left/top
neighbour-class contexts, one level group per residual level) under ``entropy.rp<i>.<array>``, and metadata: the
network configuration, training steps, codebook usage over the training tokens, and each rate point's nominal bpp
measured (ideal code length of the fitted model) on the held-out images resized to 512 px wide.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from m3cvcav.bitstream.entropy import TokenModel

from .data import held_out_images, load_pool
from .runtime import ENTROPY_PREFIX, LiteTokenizer, resize

SHIPPED_BUFFERS_DROPPED = ("cluster_size", "embed_avg", "initted")
BENCH_WIDTH = 512


def _write(tensors: dict[str, torch.Tensor], meta: dict[str, str], dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(dst)


def to_width(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    return resize(img, (max(1, round(h * width / w)), width))


def _grids(tok: LiteTokenizer, images: list[np.ndarray]) -> dict[float, list[np.ndarray]]:
    """Token grids of every image at each coding scale, with all the levels any rate point at that scale uses."""
    deepest: dict[float, int] = {}
    for rp, spec in enumerate(tok.specs):
        if spec.scale not in deepest or spec.levels > tok.specs[deepest[spec.scale]].levels:
            deepest[spec.scale] = rp
    return {scale: [tok.encode(img, rp).indices for img in images] for scale, rp in deepest.items()}


def _usage(grids: list[np.ndarray], vocab: int) -> list[dict]:
    """Per residual level over the training tokens: fraction of the codebook used and perplexity."""
    out = []
    for level in range(grids[0].shape[0]):
        counts = np.bincount(np.concatenate([g[level].ravel() for g in grids]), minlength=vocab).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        perplexity = float(np.exp(-(p * np.log(p)).sum()))
        out.append({"used": round(float((counts > 0).mean()), 4), "perplexity": round(perplexity, 1)})
    return out


def export_weights(ckpt: Path, dst: Path, pool: list[np.ndarray] | None = None,
                   held_out: list[np.ndarray] | None = None, fit_opts: dict | None = None) -> Path:
    """Write ``dst`` from checkpoint ``ckpt``; ``pool``/``held_out`` default to the media pool and held-out set."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    tensors = {k: v for k, v in state["model"].items() if not k.endswith(SHIPPED_BUFFERS_DROPPED)}
    meta = {"config": json.dumps(state["cfg"]), "steps": str(state["step"]), "seed": str(state["seed"]),
            "format": "m3cvcav-tokenizer-lite/1"}
    _write(tensors, meta, dst)  # network only: used below to tokenise
    tok = LiteTokenizer(dst, 0, 0)
    if pool is None:
        pool = load_pool(ckpt.parent / "pool.npz")
    if held_out is None:
        held_out = [n.image for n in held_out_images()]
    held_out = [to_width(img, BENCH_WIDTH) for img in held_out]
    pixels = sum(img.shape[0] * img.shape[1] for img in held_out)
    mirrored = [np.ascontiguousarray(img[:, ::-1]) for img in pool]  # twice the tokens for the context counts
    train_grids, test_grids = _grids(tok, pool + mirrored), _grids(tok, held_out)
    nominal = []
    for rp, spec in enumerate(tok.specs):
        grids = [g[: spec.levels] for g in train_grids[spec.scale]]
        model = TokenModel.fit(grids, tok.vocab, **{"level_groups": spec.levels, **(fit_opts or {})})
        for key, arr in model.to_arrays().items():
            tensors[f"{ENTROPY_PREFIX}rp{rp}.{key}"] = torch.from_numpy(np.ascontiguousarray(arr))
        bits = sum(model.ideal_bits(g[: spec.levels]) for g in test_grids[spec.scale])
        nominal.append(round(bits / pixels, 5))
    meta["nominal_bpp"] = json.dumps(nominal)
    meta["codebook_usage"] = json.dumps(_usage(max(train_grids.values(), key=lambda g: g[0].shape[0]), tok.vocab))
    _write(tensors, meta, dst)
    return dst
