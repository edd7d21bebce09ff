"""Colour conversion between Y'CbCr 4:2:0 planes and RGB, with the matrix and range stated (H.273 matrix code points).

The harness works in the Y'CbCr domain of the source (what the codecs take) and converts to full-range RGB only for the
RGB metrics. Sources carry no colour description in Y4M, so a clip's ``colour`` (from the manifest or the stream) picks
the matrix: BT.709 limited range unless the source says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kr, Kb per matrix name; H.273 MatrixCoefficients 1 = bt709, 5/6 = bt601 (bt470bg / smpte170m).
_KRKB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
_H273_MATRIX = {1: "bt709", 5: "bt601", 6: "bt601"}


@dataclass(frozen=True)
class Colour:
    """How a clip's Y'CbCr is to be read: ``matrix`` ('bt709' | 'bt601') and ``full_range``."""

    matrix: str = "bt709"
    full_range: bool = False

    def describe(self) -> str:
        return f"{self.matrix.upper().replace('BT', 'BT.')} {'full' if self.full_range else 'limited'} range"


def colour_of_stream(matrix_code: int, range_code: int) -> Colour:
    """The Colour from a decoded frame's H.273 matrix and FFmpeg range codes (unspecified → BT.709 limited)."""
    return Colour(_H273_MATRIX.get(int(matrix_code), "bt709"), int(range_code) == 2)


def _coeffs(colour: Colour) -> tuple[float, float, float]:
    kr, kb = _KRKB[colour.matrix]
    return kr, kb, 1.0 - kr - kb


def _scales(colour: Colour) -> tuple[float, float, float]:
    """(Y offset, Y scale, C scale) mapping unit-range values to 8-bit code values."""
    return (0.0, 255.0, 255.0) if colour.full_range else (16.0, 219.0, 224.0)


def yuv420_to_rgb(planar: np.ndarray, colour: Colour = Colour()) -> np.ndarray:
    """(H*3/2, W) uint8 I420 planes → (H, W, 3) uint8 full-range RGB (chroma upsampled by pixel replication)."""
    h = planar.shape[0] * 2 // 3
    w = planar.shape[1]
    y = planar[:h].astype(np.float32)
    u = planar[h: h + h // 4].reshape(h // 2, w // 2).astype(np.float32)
    v = planar[h + h // 4:].reshape(h // 2, w // 2).astype(np.float32)
    u = u.repeat(2, 0).repeat(2, 1)
    v = v.repeat(2, 0).repeat(2, 1)
    off, ys, cs = _scales(colour)
    kr, kb, kg = _coeffs(colour)
    yn = (y - off) / ys
    pb = (u - 128.0) / cs
    pr = (v - 128.0) / cs
    r = yn + 2.0 * (1.0 - kr) * pr
    b = yn + 2.0 * (1.0 - kb) * pb
    g = (yn - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray, colour: Colour = Colour()) -> np.ndarray:
    """(H, W, 3) uint8 RGB (H, W even) → (H*3/2, W) uint8 I420 planes (chroma averaged over 2×2)."""
    x = rgb.astype(np.float32) / 255.0
    kr, kb, kg = _coeffs(colour)
    yn = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    pb = (x[..., 2] - yn) / (2.0 * (1.0 - kb))
    pr = (x[..., 0] - yn) / (2.0 * (1.0 - kr))
    h, w = yn.shape
    pb = pb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    pr = pr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    off, ys, cs = _scales(colour)
    y = np.clip(np.rint(off + ys * yn), 0, 255).astype(np.uint8)
    u = np.clip(np.rint(128.0 + cs * pb), 0, 255).astype(np.uint8)
    v = np.clip(np.rint(128.0 + cs * pr), 0, 255).astype(np.uint8)
    return np.concatenate([y, u.reshape(-1, w), v.reshape(-1, w)], axis=0)
