"""Color conversion between Y'CbCr 4:2:0 planes and RGB, with the matrix and range a clip's color description states
(``ColorDescription``: ITU-T H.273 code points, the one color description of the tree, ``bitstream.units``).

The harness works in the Y'CbCr domain of the source (what the codecs take) and converts to full-range RGB only for the
RGB metrics. Sources carry no color description in Y4M, so a clip's color (from the manifest or the stream) picks the
matrix: BT.709 limited range unless the source says otherwise.
"""
from __future__ import annotations

import numpy as np

from m3cvcav.bitstream.units import ColorDescription

BT709, BT601 = 1, 6  # H.273 MatrixCoefficients (5, BT.470BG, is BT.601's matrix too)
# Kr, Kb per H.273 matrix the harness reads; anything else is read as BT.709.
_KRKB = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114)}
NAMES = {"bt709": BT709, "bt601": BT601}  # the manifest's words for them


def color_of_stream(matrix_code: int, range_code: int) -> ColorDescription:
    """The color description from a decoded frame's H.273 matrix and FFmpeg range codes (unspecified → BT.709
    limited)."""
    matrix = int(matrix_code)
    return ColorDescription(matrix=matrix if matrix in _KRKB else BT709, full_range=int(range_code) == 2)


def color_name(color: ColorDescription) -> str:
    """The manifest's words for a color description: "bt709 limited", "bt601 full", ..."""
    return f"{'bt709' if _KRKB.get(color.matrix) == _KRKB[BT709] else 'bt601'} " \
        f"{'full' if color.full_range else 'limited'}"


def parse_color(text: str) -> ColorDescription:
    """The color description the manifest's words ("bt709 limited") name."""
    matrix, rng = text.split()
    return ColorDescription(matrix=NAMES[matrix], full_range=rng == "full")


def _coeffs(color: ColorDescription) -> tuple[float, float, float]:
    kr, kb = _KRKB.get(color.matrix, _KRKB[BT709])
    return kr, kb, 1.0 - kr - kb


def _scales(color: ColorDescription) -> tuple[float, float, float]:
    """(Y offset, Y scale, C scale) mapping unit-range values to 8-bit code values."""
    return (0.0, 255.0, 255.0) if color.full_range else (16.0, 219.0, 224.0)


def yuv420_to_rgb(planar: np.ndarray, color: ColorDescription = ColorDescription()) -> np.ndarray:
    """(H*3/2, W) uint8 I420 planes → (H, W, 3) uint8 full-range RGB (chroma upsampled by pixel replication)."""
    h = planar.shape[0] * 2 // 3
    w = planar.shape[1]
    y = planar[:h].astype(np.float32)
    u = planar[h: h + h // 4].reshape(h // 2, w // 2).astype(np.float32)
    v = planar[h + h // 4:].reshape(h // 2, w // 2).astype(np.float32)
    u = u.repeat(2, 0).repeat(2, 1)
    v = v.repeat(2, 0).repeat(2, 1)
    off, ys, cs = _scales(color)
    kr, kb, kg = _coeffs(color)
    yn = (y - off) / ys
    pb = (u - 128.0) / cs
    pr = (v - 128.0) / cs
    r = yn + 2.0 * (1.0 - kr) * pr
    b = yn + 2.0 * (1.0 - kb) * pb
    g = (yn - kr * r - kb * b) / kg
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray, color: ColorDescription = ColorDescription()) -> np.ndarray:
    """(H, W, 3) uint8 RGB (H, W even) → (H*3/2, W) uint8 I420 planes (chroma averaged over 2×2)."""
    x = rgb.astype(np.float32) / 255.0
    kr, kb, kg = _coeffs(color)
    yn = kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]
    pb = (x[..., 2] - yn) / (2.0 * (1.0 - kb))
    pr = (x[..., 0] - yn) / (2.0 * (1.0 - kr))
    h, w = yn.shape
    pb = pb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    pr = pr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    off, ys, cs = _scales(color)
    y = np.clip(np.rint(off + ys * yn), 0, 255).astype(np.uint8)
    u = np.clip(np.rint(128.0 + cs * pb), 0, 255).astype(np.uint8)
    v = np.clip(np.rint(128.0 + cs * pr), 0, 255).astype(np.uint8)
    return np.concatenate([y, u.reshape(-1, w), v.reshape(-1, w)], axis=0)
