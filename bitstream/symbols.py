"""Residual streams (docs/bitstream.md §5.7): sequences of non-negative integers coded with the rANS core under
parametric integer tables, for the layers whose statistics are known only per unit (motion, keyframe residuals).

A stream is stored as ``decay (u8) | count (uleb) | length (uleb) | rANS bytes``; a value ``v`` is the symbol
``min(v, 31)``, and each 31 is followed, in the tail after all the streams of a unit, by ``uleb(v − 31)`` (the
escapes of stream 0 first, then stream 1, …). The table of decay ``d`` is ``quantize(w, 12)`` with
``w_0 = 2^40, w_{s+1} = (w_s · d) >> 8`` (at least 1): one byte chooses a geometric distribution, and decoding
is integer-exact.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3cvcav.core.errors import BitstreamError, M3cvError

from .entropy import decode_symbols, encode_symbols, quantize
from .framing import read_leb128, write_leb128

ALPHABET = 32  # the last symbol escapes to the tail
ESCAPE = ALPHABET - 1
PRECISION = 12
MAX_ESCAPE = (1 << 32) - 1


def table(decay: int) -> np.ndarray:
    """The frequency table (sum 2^12) of ``decay`` 1..255."""
    if not 1 <= decay <= 255:
        raise BitstreamError(f"stream table decay {decay} is outside 1..255")
    weights, w = [], 1 << 40
    for _ in range(ALPHABET):
        weights.append(max(w, 1))
        w = (w * decay) >> 8
    return quantize(np.array(weights, dtype=np.int64), PRECISION)


_TABLES = [np.zeros(0)] + [table(d) for d in range(1, 256)]
_COSTS = np.stack([-np.log2(_TABLES[d].astype(np.float64) / (1 << PRECISION)) for d in range(1, 256)])


def signed(values: np.ndarray) -> np.ndarray:
    """Zigzag map of signed integers to non-negative ones (0, -1, 1, -2 … → 0, 1, 2, 3 …)."""
    v = np.asarray(values, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unsigned(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`signed`."""
    u = np.asarray(values, dtype=np.int64)
    return np.where(u & 1, -(u >> 1) - 1, u >> 1)


def best_decay(symbols: np.ndarray) -> int:
    """The decay whose table codes these symbols in the fewest bits."""
    counts = np.bincount(symbols, minlength=ALPHABET).astype(np.float64)
    return int(np.argmin(_COSTS @ counts)) + 1


def pack(streams: Sequence[np.ndarray]) -> bytes:
    """The streams and their shared escape tail."""
    out, tail = bytearray(), bytearray()
    for values in streams:
        v = np.asarray(values, dtype=np.int64).ravel()
        if v.size and (int(v.min()) < 0 or int(v.max()) - ESCAPE > MAX_ESCAPE):
            raise BitstreamError("a stream value is negative or over 2^32: the layer is out of range")
        symbols = np.minimum(v, ESCAPE)
        decay = best_decay(symbols) if v.size else 128
        data = encode_symbols(symbols, _TABLES[decay]) if v.size else b""
        out += bytes((decay,)) + write_leb128(v.size) + write_leb128(len(data)) + data
        for extra in (v[v >= ESCAPE] - ESCAPE).tolist():
            tail += write_leb128(int(extra))
    return bytes(out + tail)


def unpack(r, limits: Sequence[int]) -> list[np.ndarray]:
    """Read the streams ``pack`` wrote (``r``: the unit's bounded field reader, left after the tail); ``limits``
    bounds each stream's count."""
    symbols = []
    for i, limit in enumerate(limits):
        decay = r.u8("decay")
        if decay == 0:
            raise r.fail(f"stream {i}: table decay 0")
        count = r.uleb("count", 0, limit)
        data = r.raw(r.uleb("length", 0, len(r.data)), "rANS data")
        try:
            symbols.append(decode_symbols(data, count, _TABLES[decay]) if count else np.zeros(0, np.int64))
        except M3cvError as err:
            raise r.fail(f"stream {i}: {err}") from None
    tail = r.rest()
    pos, out = 0, []
    for s in symbols:
        v = np.asarray(s, dtype=np.int64).copy()
        for j in np.flatnonzero(v == ESCAPE).tolist():
            try:
                extra, pos = read_leb128(tail, pos, 5)
            except BitstreamError as err:
                raise r.fail(f"escape value: {err}") from None
            v[j] += extra
        out.append(v)
    if pos != len(tail):
        raise r.fail(f"{len(tail) - pos} bytes after the escape values")
    return out
