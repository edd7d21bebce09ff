"""Rate points of the lite tokenizer: each is (coding scale relative to the working width, residual VQ levels).

A keyframe is resized to ``round(min(source width, working width) × scale)`` pixels wide (aspect kept), padded to a
multiple of 16, and coded as ``levels`` token planes of size ⌈h/16⌉ × ⌈w/16⌉; the decoder restores the source size.
"""
from __future__ import annotations

from dataclasses import dataclass

from .model import STRIDE


@dataclass(frozen=True)
class RateSpec:
    name: str
    scale: float
    levels: int


RATE_SPECS: tuple[RateSpec, ...] = (
    RateSpec("half-1", 0.5, 1),
    RateSpec("full-1", 1.0, 1),
    RateSpec("full-2", 1.0, 2),
    RateSpec("full-3", 1.0, 3),
)
# The network's fourth residual level is trained, but 1.0 × 4 levels (0.135 bpp held-out) measured below WebP's MS-SSIM
# at equal bpp (docs/models/tokenizer.md), so it is not offered as a rate point.


def coded_size(image_size: tuple[int, int], working_width: int, spec: RateSpec) -> tuple[int, int]:
    """(height, width) at which a (height, width) source is coded (each at least one stride)."""
    h, w = image_size
    cw = max(STRIDE, round(min(w, working_width) * spec.scale))
    ch = max(STRIDE, round(h * cw / w))
    return ch, cw


def grid_shape(image_size: tuple[int, int], working_width: int, spec: RateSpec) -> tuple[int, int, int]:
    """(levels, rows, cols) of the token grid of a source of ``image_size``."""
    ch, cw = coded_size(image_size, working_width, spec)
    return spec.levels, -(-ch // STRIDE), -(-cw // STRIDE)
