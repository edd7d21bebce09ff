"""The lite clip generator: bidirectional-flow frame interpolation between two keyframes with occlusion-aware blending.

For time t in (0, 1) between I0 and I1 with flows F01, F10, the flows from the in-between frame are approximated as in
Super SloMo (Jiang et al. 2018): F_t0 = -(1-t) t F01 + t² F10 and F_t1 = (1-t)² F01 - t(1-t) F10. Both keyframes are
backward-warped to t; each is weighted by its temporal closeness times its visibility, where a pixel counts as occluded
in the other frame when forward-backward consistency fails (|F01(x) + F10(x + F01(x))| large against the motion).
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np

from m3cvcav.errors import UsageError

from ..interfaces import Image, ModelRef
from .motion import DisMotion

ALGORITHM = "m3cvcav.lite.flow-interpolator/1"


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Backward warp: out(x) = image(x + flow(x)) (bilinear, borders replicated)."""
    xs, ys = grid
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visibility(f_ab: np.ndarray, f_ba: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Soft visibility in [0, 1] of each pixel of A in B from forward-backward consistency (Sundaram et al. 2010):
    |F_ab + F_ba(x + F_ab)|² against 0.01 (|F_ab|² + |F_ba(x + F_ab)|²) + 0.5."""
    back = warp(f_ba, f_ab, grid)
    err = np.sum((f_ab + back) ** 2, axis=2)
    tol = 0.01 * (np.sum(f_ab ** 2, axis=2) + np.sum(back ** 2, axis=2)) + 0.5
    return np.exp(-err / tol).astype(np.float32)


class FlowInterpolator:
    """``ClipGenerator`` for the lite profile; the text is not used (it has no language model)."""

    def __init__(self, *, model_id: int, work_size: int = 512, preset: str = "medium") -> None:
        self.motion = DisMotion(work_size=work_size, preset=preset)
        desc = f"{ALGORITHM} work_size={int(work_size)} preset={preset}".encode()
        self.ref = ModelRef(model_id=int(model_id), sha256=hashlib.sha256(desc).digest(), name="flow-interpolator")

    def interpolate(self, first: Image, last: Image, times: list[float]) -> list[Image]:
        """Frames at each time t in [0, 1] between ``first`` (t=0) and ``last`` (t=1)."""
        if first.shape != last.shape or first.dtype != np.uint8 or first.ndim != 3:
            raise UsageError(f"keyframes must be two (H, W, 3) uint8 images of one size, got {first.shape} "
                             f"{last.shape}")
        f01 = self.motion.flow(first, last)
        f10 = self.motion.flow(last, first)
        grid = _grid(*first.shape[:2])
        vis0, vis1 = visibility(f01, f10, grid), visibility(f10, f01, grid)
        i0, i1 = first.astype(np.float32), last.astype(np.float32)
        frames = []
        for t in times:
            if t <= 0.0 or t >= 1.0:
                frames.append((first if t <= 0.0 else last).copy())
                continue
            ft0 = -(1 - t) * t * f01 + t * t * f10
            ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
            w0 = (1 - t) * warp(vis0, ft0, grid) + 1e-4
            w1 = t * warp(vis1, ft1, grid) + 1e-4
            mix = (w0[..., None] * warp(i0, ft0, grid) + w1[..., None] * warp(i1, ft1, grid)) / (w0 + w1)[..., None]
            frames.append(np.clip(mix + 0.5, 0, 255).astype(np.uint8))
        return frames

    def generate(self, first: Image, last: Image | None, count: int, text: str, seed: int) -> list[Image]:
        """``count`` frames at t = i / count (frame 0 is ``first``; ``last`` is the next segment's keyframe and is not
        among them). Without ``last`` nothing is extrapolated: ``first`` is held."""
        if count < 1:
            raise UsageError(f"a clip needs at least one frame, got count={count}")
        if last is None:
            return [first.copy() for _ in range(count)]
        return self.interpolate(first, last, [i / count for i in range(count)])
