"""Keyframe residuals: what the tokenizer's reconstruction misses, coded as quantised 8×8 DCT levels in Y'CbCr 4:2:0
(``bitstream.residual``) and added back by the decoder before the keyframe generator. The quantiser step is the
rate knob that keeps keyframe quality rising with rate, and the fine one that lands ``-b:v`` on its target.

Colour: BT.601 full-range Y'CbCr (as JPEG) of the RGB keyframe; the chroma residual is averaged over 2×2 pixels and
brought back bilinearly. Frequencies are weighted (``WEIGHTS``): high ones are quantised more coarsely, as the eye and
MS-SSIM care less about them.
"""
from __future__ import annotations

import cv2
import numpy as np

from m3cvcav.bitstream.residual import KeyframeResidual, block_counts

DEAD_ZONE = 0.3  # rounding offset below 1/2: small levels fall to zero (cheaper, and mostly noise)
CHROMA_STEP = 1.5  # chroma step relative to luma


def _dct_matrix() -> np.ndarray:
    k, n = np.mgrid[0:8, 0:8]
    m = np.cos(np.pi * (2 * n + 1) * k / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


DCT = _dct_matrix()
ZIGZAG = np.array(sorted(range(64), key=lambda i: (i // 8 + i % 8, (i // 8) if (i // 8 + i % 8) % 2 else (i % 8))))
# ZIGZAG[k] is the natural (row · 8 + column) index of the k-th coefficient in JPEG's zigzag order
WEIGHTS = (16 + 3 * (np.arange(64) // 8 + np.arange(64) % 8))[ZIGZAG] / 16.0  # per zigzag position


def _to_blocks(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    padded = cv2.copyMakeBorder(plane, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
    return padded.reshape(ph // 8, 8, pw // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)


def _from_blocks(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    return blocks.reshape(ph // 8, pw // 8, 8, 8).transpose(0, 2, 1, 3).reshape(ph, pw)[:h, :w]


def _ycc(image: np.ndarray) -> list[np.ndarray]:
    """Y, Cb, Cr planes (float32; chroma at half size) of an RGB image."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    h, w = image.shape[:2]
    half = (-(-w // 2), -(-h // 2))
    return [ycrcb[..., 0]] + [cv2.resize(ycrcb[..., c], half, interpolation=cv2.INTER_AREA) for c in (2, 1)]


class ResidualCoder:
    """Codes the residual of one decoded keyframe against its source at any step; ``apply`` is the decoder's half."""

    def __init__(self, source: np.ndarray, decoded: np.ndarray) -> None:
        self.height, self.width = source.shape[:2]
        src, rec = _ycc(source), _ycc(decoded)
        self.coefs = [np.einsum("ij,bjk,lk->bil", DCT, _to_blocks(s - r), DCT).reshape(-1, 64)[:, ZIGZAG]
                      for s, r in zip(src, rec)]

    def code(self, step: int) -> KeyframeResidual:
        """Levels at a luma step of ``step``/4 code values (chroma ``CHROMA_STEP`` times coarser)."""
        steps = (int(step), max(1, round(step * CHROMA_STEP)))
        planes = []
        for i, c in enumerate(self.coefs):
            q = steps[min(i, 1)] / 4.0 * WEIGHTS
            planes.append((np.sign(c) * np.floor(np.abs(c) / q + 0.5 - DEAD_ZONE)).astype(np.int32))
        return KeyframeResidual(self.width, self.height, steps, tuple(planes))


def apply(image: np.ndarray, residual: KeyframeResidual) -> np.ndarray:
    """The decoded keyframe with the residual added (the image must be at the residual's size)."""
    h, w = image.shape[:2]
    if (w, h) != (residual.width, residual.height):
        image = cv2.resize(image, (residual.width, residual.height), interpolation=cv2.INTER_CUBIC)
        h, w = image.shape[:2]
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    luma_blocks, chroma_blocks = block_counts(w, h)
    chroma_size = (-(-h // 2), -(-w // 2))
    for i, levels in enumerate(residual.planes):
        q = residual.steps[min(i, 1)] / 4.0 * WEIGHTS
        coefs = np.zeros((levels.shape[0], 64), np.float32)
        coefs[:, ZIGZAG] = levels * q
        blocks = np.einsum("ji,bjk,kl->bil", DCT, coefs.reshape(-1, 8, 8), DCT)
        if i == 0:
            ycrcb[..., 0] += _from_blocks(blocks, h, w)
        else:
            plane = _from_blocks(blocks, *chroma_size)
            ycrcb[..., 2 if i == 1 else 1] += cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(np.clip(ycrcb + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)
