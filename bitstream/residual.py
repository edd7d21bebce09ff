"""The keyframe residual layer: the KEYFRAME_RESIDUAL unit (docs/bitstream.md §5.6) — quantised 8×8 DCT levels of
what the keyframe tokens left (source − decoded tokens) in Y'CbCr, 4:2:0, so that keyframe quality keeps rising
with rate past the tokenizer's last rate point.

Levels are stored per block in zigzag order; each plane group (luma; both chroma planes) codes five streams with
``bitstream.symbols``: whether each block has a non-zero level, ``last − 1`` of those that do (``last`` = 1 + the
zigzag index of the last non-zero level), the DC level's difference from the previous block's (0 after an empty
block), the AC levels at zigzag 1–5 and those at 6–63. Parsing is integer-exact and bounded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m3cvcav.core.errors import BitstreamError

from . import symbols
from .framing import write_leb128

KIND = 1
MAX_STEP = 1 << 16  # quantiser steps in 1/4 of a code value
MAX_LEVEL = 1 << 20


@dataclass
class KeyframeResidual:
    """``width`` × ``height`` (the stream's size), ``steps`` (luma, chroma) in 1/4 code value, ``planes``: the Y, Cb,
    Cr levels as (blocks, 64) int32 arrays in zigzag order, blocks in raster order."""

    width: int
    height: int
    steps: tuple[int, int]
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyframeResidual) and (self.width, self.height, self.steps) == (
            other.width, other.height, other.steps) and all(np.array_equal(a, b) for a, b in zip(self.planes,
                                                                                                 other.planes))


def block_counts(width: int, height: int) -> tuple[int, int]:
    """Blocks of the luma plane and of each chroma plane (4:2:0, each rounded up)."""
    cw, ch = -(-width // 2), -(-height // 2)
    return (-(-height // 8)) * (-(-width // 8)), (-(-ch // 8)) * (-(-cw // 8))


def _plane_streams(levels: np.ndarray) -> list[np.ndarray]:
    nz = levels != 0
    last = np.where(nz.any(axis=1), 64 - np.argmax(nz[:, ::-1], axis=1), 0)
    dc = levels[:, 0].astype(np.int64)
    delta = (dc - np.concatenate([[0], dc[:-1]]))[last > 0]
    pos = np.arange(64)[None, :]
    inside = (pos < last[:, None]) & (pos > 0)
    low, high = levels[inside & (pos < 6)], levels[inside & (pos >= 6)]
    return [(last > 0).astype(np.int64), last[last > 0] - 1, symbols.signed(delta), symbols.signed(low),
            symbols.signed(high)]


def encode_residual(res: KeyframeResidual) -> bytes:
    """The KEYFRAME_RESIDUAL payload."""
    luma_blocks, chroma_blocks = block_counts(res.width, res.height)
    shapes = [p.shape for p in res.planes]
    if shapes != [(luma_blocks, 64), (chroma_blocks, 64), (chroma_blocks, 64)] or not all(
            1 <= s <= MAX_STEP for s in res.steps):
        raise BitstreamError(f"residual planes {shapes} or steps {res.steps} do not fit a {res.width}x{res.height} "
                             "keyframe")
    if max(int(np.abs(p).max(initial=0)) for p in res.planes) > MAX_LEVEL:
        raise BitstreamError(f"a residual level is over ±{MAX_LEVEL}")
    luma = _plane_streams(res.planes[0])
    chroma = [np.concatenate(pair) for pair in zip(_plane_streams(res.planes[1]), _plane_streams(res.planes[2]))]
    head = b"".join(write_leb128(v) for v in (KIND, res.width, res.height, *res.steps))
    return head + symbols.pack(luma + chroma)


def _plane_levels(last: np.ndarray, delta: np.ndarray, low: np.ndarray, high: np.ndarray, blocks: int) -> np.ndarray:
    pos = np.arange(64)[None, :]
    inside = (pos < last[:, None]) & (pos > 0)
    if int((inside & (pos < 6)).sum()) != low.size or int((inside & (pos >= 6)).sum()) != high.size \
            or int((last > 0).sum()) != delta.size:
        raise BitstreamError("keyframe residual: the level counts do not match the blocks' last positions; "
                             "the stream is corrupt")
    levels = np.zeros((blocks, 64), np.int64)
    levels[inside & (pos < 6)] = low
    levels[inside & (pos >= 6)] = high
    dc = np.zeros(blocks, np.int64)
    coded = np.flatnonzero(last > 0)
    previous, k = 0, 0
    for b in range(blocks):  # DC predicted from the previous block's (0 for an empty one)
        if k < coded.size and coded[k] == b:
            previous += int(delta[k])
            k += 1
        else:
            previous = 0
        dc[b] = previous
    levels[:, 0] = dc
    if int(np.abs(levels).max(initial=0)) > MAX_LEVEL:
        raise BitstreamError(f"keyframe residual: a level over ±{MAX_LEVEL}; the stream is corrupt")
    return levels.astype(np.int32)


def decode_residual(payload: bytes) -> KeyframeResidual | None:
    """Parse a KEYFRAME_RESIDUAL payload; None for a kind this decoder does not know."""
    from .units import MAX_DIMENSION, _Reader  # the bounded field reader shared by every unit

    r = _Reader(payload, "keyframe residual")
    if r.uleb("kind") != KIND:
        return None
    width, height = r.uleb("width", 1, MAX_DIMENSION), r.uleb("height", 1, MAX_DIMENSION)
    steps = (r.uleb("step_luma", 1, MAX_STEP), r.uleb("step_chroma", 1, MAX_STEP))
    luma_blocks, chroma_blocks = block_counts(width, height)
    limits = []
    for blocks in (luma_blocks, 2 * chroma_blocks):
        limits += [blocks, blocks, blocks, blocks * 5, blocks * 58]
    streams = symbols.unpack(r, limits)
    planes = []
    for group, (flags, last1, delta, low, high) in enumerate((streams[:5], streams[5:])):
        blocks = luma_blocks if group == 0 else 2 * chroma_blocks
        if flags.size != blocks or int(flags.max(initial=0)) > 1 or last1.size != int(flags.sum()) \
                or int(last1.max(initial=0)) > 63:
            raise BitstreamError("keyframe residual: block flags or last positions are out of range; the stream is "
                                 "corrupt")
        last = np.zeros(blocks, np.int64)
        last[flags == 1] = last1 + 1
        planes.append((last, symbols.unsigned(delta), symbols.unsigned(low), symbols.unsigned(high)))
    y = _plane_levels(*planes[0], luma_blocks)
    lc, dc_, lo, hi = planes[1]
    first = lc[:chroma_blocks]
    # split the chroma streams between Cb and Cr by the counts Cb's last positions imply
    pos = np.arange(64)[None, :]
    inside = (pos < first[:, None]) & (pos > 0)
    n_dc, n_lo, n_hi = int((first > 0).sum()), int((inside & (pos < 6)).sum()), int((inside & (pos >= 6)).sum())
    if n_dc > dc_.size or n_lo > lo.size or n_hi > hi.size:
        raise BitstreamError("keyframe residual: chroma level counts do not match; the stream is corrupt")
    cb = _plane_levels(first, dc_[:n_dc], lo[:n_lo], hi[:n_hi], chroma_blocks)
    cr = _plane_levels(lc[chroma_blocks:], dc_[n_dc:], lo[n_lo:], hi[n_hi:], chroma_blocks)
    return KeyframeResidual(width, height, steps, (y, cb, cr))
