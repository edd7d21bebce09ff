"""The lite motion estimator: OpenCV DIS optical flow at a working resolution chosen for speed."""
from __future__ import annotations

import cv2
import numpy as np

from m3cvcav.core.errors import UsageError

from ..interfaces import Image

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def dis(preset: str = "fast") -> cv2.DISOpticalFlow:
    """OpenCV's DIS optical flow at ``preset``: the one place it is built (the lite motion engine, the describer
    through it, and the benchmarks' temporal consistency metric)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown DIS preset {preset!r}: use one of {', '.join(PRESETS)}")
    return cv2.DISOpticalFlow_create(PRESETS[preset])


def _check(image: Image) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"frames must be (H, W, 3) uint8 RGB arrays, got {image.shape} {image.dtype}")


class DisMotion:
    """``MotionEstimator``: dense DIS flow computed with the longer side scaled to ``work_size`` pixels (never
    upscaled), returned at the input size in input pixels."""

    def __init__(self, *, work_size: int = 320, preset: str = "fast") -> None:
        self._dis = dis(preset)
        self.work_size, self.preset = int(work_size), preset

    def _work(self, image: Image) -> tuple[np.ndarray, float]:
        _check(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.work_size / max(h, w))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        return gray, scale

    def work_flow(self, a: Image, b: Image) -> np.ndarray:
        """Flow from ``a`` to ``b`` at the working resolution, in working-resolution pixels."""
        if a.shape != b.shape:
            raise UsageError(f"flow needs two frames of one size, got {a.shape} and {b.shape}")
        ga, _ = self._work(a)
        gb, _ = self._work(b)
        return self._dis.calc(ga, gb, None)

    def flow(self, a: Image, b: Image) -> np.ndarray:
        small = self.work_flow(a, b)
        h, w = a.shape[:2]
        if small.shape[:2] == (h, w):
            return small
        sy, sx = h / small.shape[0], w / small.shape[1]
        full = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        full[..., 0] *= sx
        full[..., 1] *= sy
        return full

    def stats(self, a: Image, b: Image) -> dict[str, float]:
        """Flow magnitude statistics from ``a`` to ``b`` as fractions of the image diagonal, plus the mean motion
        (dx, dy) in the same unit: mean, median, p95, max, dx, dy."""
        f = self.work_flow(a, b)
        diag = float(np.hypot(*f.shape[:2]))
        mag = np.hypot(f[..., 0], f[..., 1]) / diag
        return {"mean": float(mag.mean()), "median": float(np.median(mag)), "p95": float(np.percentile(mag, 95)),
                "max": float(mag.max()), "dx": float(f[..., 0].mean() / diag), "dy": float(f[..., 1].mean() / diag)}

    def magnitude(self, a: Image, b: Image) -> float:
        return self.stats(a, b)["mean"]
