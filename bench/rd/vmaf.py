"""VMAF (model v0.6.1) and VMAF NEG, in process, through the PyPI package ``vmaf-torch`` (a float re-implementation of
libvmaf's ADM, VIF and motion features and of the v0.6.1 SVM; the NEG variant limits the enhancement gain of ADM and
VIF as ``vmaf_v0.6.1neg.json`` does).

Luma only, at the clip's own size, [0, 255]. The motion feature (``motion2``) depends on the reference alone and on its
neighbouring frames, so it is computed once per clip over every frame; ADM and VIF are per frame, computed in batches on
the frames asked for. A frame's score is therefore the one a full-clip run gives that frame, whichever frames are
sampled. Scores are clipped to [0, 100] as libvmaf does by default.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

METRICS = ("vmaf", "vmaf_neg")


def missing() -> str | None:
    """None when vmaf-torch can be imported, else why not (one line)."""
    try:
        import vmaf_torch  # noqa: F401
    except ImportError as exc:
        return f"the vmaf-torch package is not installed ({exc}): pip install -e '.[bench]'"
    return None


@functools.lru_cache(maxsize=1)
def _models():
    from vmaf_torch import VMAF

    return {"vmaf": VMAF(clip_score=True, NEG=False).eval(), "vmaf_neg": VMAF(clip_score=True, NEG=True).eval()}


def _luma(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).to(torch.float32)[:, None]


def motion2(lumas: list[np.ndarray]) -> np.ndarray:
    """libvmaf's ``motion2`` of every frame of a reference clip (H, W uint8 luma planes), shape (N,)."""
    if len(lumas) < 2:
        return np.zeros(len(lumas), np.float32)
    with torch.no_grad():
        return _models()["vmaf"].compute_motion2(_luma(lumas))[:, 0].numpy()


def scores(ref: list[np.ndarray], dist: list[np.ndarray], motion: np.ndarray | None = None,
           batch: int = 8) -> dict[str, list[float]]:
    """Per-frame VMAF and VMAF NEG of ``dist`` against ``ref`` (lists of H×W uint8 luma planes). ``motion``: the
    reference's ``motion2`` at these frames (from :func:`motion2` over the whole clip); None or zeros for still
    images."""
    if len(ref) != len(dist) or (ref and ref[0].shape != dist[0].shape):
        raise ValueError(f"VMAF needs frames of one size in pairs, got {len(ref)} reference and {len(dist)} distorted")
    motion = np.zeros(len(ref), np.float32) if motion is None else np.asarray(motion, np.float32)
    out: dict[str, list[float]] = {name: [] for name in METRICS}
    with torch.no_grad():
        for i in range(0, len(ref), batch):
            r, d = _luma(ref[i:i + batch]), _luma(dist[i:i + batch])
            m = torch.from_numpy(motion[i:i + batch])[:, None]
            for name, model in _models().items():
                adm = model.compute_adm_score(r, d)
                vif = model.compute_vif_features(r, d)
                out[name] += model.predict(adm, m, vif)[:, 0].tolist()
    return out
