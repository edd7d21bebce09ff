"""The lite keyframe generator: the tokenizer's reconstruction is the keyframe (no generative restoration).

The lite profile has no text-to-image model, so text-only (TT2V) keyframes cannot be made with it.
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np

from m3cvcav.core.errors import ModelError, UsageError

from ..interfaces import Image, ModelRef

ALGORITHM = "m3cvcav.lite.keyframe-passthrough/1 resize=lanczos4"


class PassthroughKeyframes:
    """``KeyframeGenerator`` returning the decoded keyframe at ``size`` (H, W), Lanczos-resized when it differs."""

    def __init__(self, *, model_id: int) -> None:
        self.ref = ModelRef(model_id=int(model_id), sha256=hashlib.sha256(ALGORITHM.encode()).digest(),
                            name="keyframe-passthrough")

    def generate(self, decoded: Image | None, text: str, size: tuple[int, int], seed: int,
                 strength: float | None = None) -> Image:
        """``decoded`` at ``size`` (no diffusion, so no ``strength``)."""
        if decoded is None:
            raise ModelError("the lite profile cannot make a keyframe from text alone (TT2V): use -profile m3cvc")
        if decoded.ndim != 3 or decoded.shape[2] != 3 or decoded.dtype != np.uint8:
            raise UsageError(f"keyframes must be (H, W, 3) uint8 RGB arrays, got {decoded.shape} {decoded.dtype}")
        h, w = size
        if decoded.shape[:2] == (h, w):
            return decoded.copy()
        return cv2.resize(decoded, (w, h), interpolation=cv2.INTER_LANCZOS4)
