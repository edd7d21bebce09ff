"""Entropy coding of token grids: static context models and the rANS coder of docs/entropy.md.

The native C core (``m3cvcav.bitstream._m3cvcore``) and the numpy/Python fallback here produce byte-identical streams;
``M3CVC_NATIVE=0`` forces the fallback, ``M3CVC_NATIVE=1`` requires the native core.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Sequence

import numpy as np

from m3cvcav.core.errors import BitstreamError, ModelError, UsageError

from ._native import core

RANS_L = 1 << 23
MAX_VOCAB = 16384
MAX_PRECISION = 16
MAX_CLASSES = 255
MAX_LEVEL_GROUPS = 16
MAX_TABLE_ENTRIES = 1 << 24
MAX_SYMBOLS = 1 << 22
MODEL_FORMAT = 1
BUCKET_BITS = 10  # decoder lookup index, not normative (docs/entropy.md §5)

_RC_MESSAGES = {
    -1: "the entropy model is invalid",
    -2: "the token grid is larger than the limit",
    -3: "a token is outside the vocabulary",
    -4: "the output buffer is too small",
    -5: "the token payload is truncated",
    -6: "the token payload is corrupt (rANS state check failed)",
}


def implementation() -> str:
    """``"native"`` when the C core is used, else ``"python"`` (see ``M3CVC_NATIVE``)."""
    return "python" if core() is None else "native"


def quantize(weights: np.ndarray, precision: int) -> np.ndarray:
    """Integer frequencies (each ≥ 1, sum 2^precision) from non-negative integer weights (docs/entropy.md).

    Symbols whose proportional share would be below 1 get exactly 1; the rest share what is left in proportion to
    their weights (floor), and the remainder goes one by one to the largest fractional parts (ties: lower symbol).
    """
    w = np.asarray(weights, dtype=np.int64)
    vocab, total = w.size, 1 << precision
    if w.ndim != 1 or vocab < 1 or vocab > total or (w < 0).any() or int(w.max()) >= 1 << 46:
        raise UsageError(f"cannot quantise {vocab} weights to {precision} bits: need 1..2^precision weights in [0, 2^46)")
    if not w.any():
        spare = total - vocab
        return (1 + spare // vocab + (np.arange(vocab) < spare % vocab)).astype(np.uint32)
    order = np.argsort(w, kind="stable")
    ws = w[order]
    rest_sum = np.cumsum(ws[::-1])[::-1]
    fits = (ws > 0) & (ws * (total - np.arange(vocab)) >= rest_sum)
    k = int(np.argmax(fits))  # symbols order[:k] are clamped to 1; fits[vocab - 1] holds whenever w.any()
    idx = order[k:]
    mass, wsum = total - k, int(rest_sum[k])
    num = w[idx] * mass
    freqs = np.ones(vocab, dtype=np.int64)
    share, frac = num // wsum, num % wsum
    bonus = np.zeros(idx.size, dtype=np.int64)
    bonus[np.lexsort((idx, -frac))[: mass - int(share.sum())]] = 1
    freqs[idx] = share + bonus
    return freqs.astype(np.uint32)


class TokenModel:
    """Static integer context model over ``vocab`` symbols (docs/entropy.md, "Context model").

    ``freqs[c, s]`` is the frequency of symbol ``s`` in context ``c`` (each ≥ 1, each row sums to 2^precision); there are
    ``level_groups * (classes + 1) ** 2`` contexts; ``symbol_class[s]`` is the class of symbol ``s`` (all 0 when
    ``classes == 0``, the order-0 model).
    """

    def __init__(self, vocab: int, precision: int, classes: int, level_groups: int, symbol_class: np.ndarray,
                 freqs: np.ndarray):
        if not 1 <= vocab <= MAX_VOCAB or not 1 <= precision <= MAX_PRECISION or vocab > 1 << precision:
            raise ModelError(f"entropy model with vocab {vocab} and precision {precision} is outside the limits "
                             f"(1 ≤ vocab ≤ min({MAX_VOCAB}, 2^precision), 1 ≤ precision ≤ {MAX_PRECISION})")
        if not 0 <= classes <= MAX_CLASSES or not 1 <= level_groups <= MAX_LEVEL_GROUPS:
            raise ModelError(f"entropy model with {classes} classes and {level_groups} level groups is outside the "
                             f"limits (0..{MAX_CLASSES} classes, 1..{MAX_LEVEL_GROUPS} level groups)")
        contexts = level_groups * (classes + 1) ** 2
        if contexts * vocab > MAX_TABLE_ENTRIES:
            raise ModelError(f"entropy model has {contexts} contexts x {vocab} symbols, over the {MAX_TABLE_ENTRIES} "
                             "table entries allowed; use fewer classes or level groups")
        symbol_class = np.asarray(symbol_class)
        freqs = np.asarray(freqs)
        if symbol_class.shape != (vocab,) or freqs.shape != (contexts, vocab):
            raise ModelError(f"entropy model arrays have shapes {symbol_class.shape} and {freqs.shape}, expected "
                             f"({vocab},) and ({contexts}, {vocab}); the model file is damaged")
        if int(symbol_class.min()) < 0 or int(symbol_class.max()) >= max(classes, 1):
            raise ModelError(f"entropy model has a symbol class outside 0..{max(classes, 1) - 1}; the model is damaged")
        if int(freqs.min()) < 1 or (freqs.astype(np.int64).sum(axis=1) != 1 << precision).any():
            raise ModelError(f"entropy model has a table with a zero frequency or a sum other than 2^{precision}; "
                             "the model is damaged")
        self.vocab, self.precision, self.classes, self.level_groups = vocab, precision, classes, level_groups
        self.symbol_class = np.ascontiguousarray(symbol_class, dtype=np.uint8)
        self.freqs = np.ascontiguousarray(freqs, dtype=np.uint32)
        cum = np.zeros((contexts, vocab + 1), dtype=np.uint32)
        np.cumsum(self.freqs, axis=1, out=cum[:, 1:])
        self.cum = cum
        self._native: Any = None
        self._rows: dict[int, list[int]] = {}

    @property
    def contexts(self) -> int:
        return self.level_groups * (self.classes + 1) ** 2

    # -- storage ---------------------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for safetensors: ``params`` (format, vocab, precision, classes, level_groups), ``symbol_class``
        (uint8) and ``freq_minus_1`` (uint16, frequency − 1)."""
        params = [MODEL_FORMAT, self.vocab, self.precision, self.classes, self.level_groups]
        return {"params": np.array(params, dtype=np.uint32), "symbol_class": self.symbol_class.copy(),
                "freq_minus_1": (self.freqs - 1).astype(np.uint16)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TokenModel:
        """Model from ``to_arrays()`` output; raises ModelError when the arrays do not form a valid model."""
        try:
            params = np.asarray(arrays["params"])
            symbol_class, freq_m1 = np.asarray(arrays["symbol_class"]), np.asarray(arrays["freq_minus_1"])
        except KeyError as exc:
            raise ModelError(f"entropy model lacks the array {exc}; the model file is damaged") from None
        if params.shape != (5,) or int(params[0]) != MODEL_FORMAT:
            raise ModelError(f"entropy model params {params.tolist()} are not format {MODEL_FORMAT}; "
                             "update m3cvcav or re-export the model")
        if symbol_class.dtype != np.uint8 or freq_m1.dtype != np.uint16:
            raise ModelError("entropy model arrays have the wrong dtypes (need uint8 symbol_class, uint16 "
                             "freq_minus_1); the model file is damaged")
        vocab, precision, classes, groups = (int(v) for v in params[1:])
        return cls(vocab, precision, classes, groups, symbol_class, freq_m1.astype(np.uint32) + 1)

    # -- contexts and code lengths ---------------------------------------------------------------------------------
    def context_ids(self, grid: np.ndarray) -> np.ndarray:
        """Context of every token of an (L, H, W) grid (docs/entropy.md, "Context rule")."""
        return _context_ids(self._check_grid(grid), self.symbol_class, self.classes, self.level_groups)

    def ideal_bits(self, grid: np.ndarray) -> float:
        """The model's ideal code length of ``grid`` in bits: Σ (precision − log2 freq)."""
        grid = self._check_grid(grid)
        f = self.freqs[self.context_ids(grid), grid]
        return float(grid.size * self.precision - np.log2(f.astype(np.float64)).sum())

    @staticmethod
    def order0_entropy_bits(grid: np.ndarray) -> float:
        """Empirical order-0 entropy of ``grid`` in bits (its own histogram; a reference for reports)."""
        counts = np.bincount(np.asarray(grid, dtype=np.int64).ravel())
        counts = counts[counts > 0].astype(np.float64)
        n = counts.sum()
        return float(-(counts * np.log2(counts / n)).sum()) if n else 0.0

    def _check_grid(self, grid: np.ndarray) -> np.ndarray:
        return _as_grid(grid, self.vocab)

    # -- fitting ---------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, grids: Sequence[np.ndarray], vocab: int, *, classes: int = 8, level_groups: int = 1,
            precision: int = MAX_PRECISION, symbol_class: np.ndarray | None = None,
            iterations: int = 12) -> TokenModel:
        """Learn a model from (L, H, W) token grids.

        ``symbol_class`` (uint8 [vocab]) may be given (e.g. k-means of codebook vectors); otherwise classes are learned by
        clustering symbols on what follows them as left/top neighbour, starting from frequency-rank classes, keeping the
        class map with the lowest ideal code length over ``iterations`` refinements. Tables are the context counts
        smoothed towards the per-level-group order-0 distribution (strength chosen by leave-one-out), quantised by
        ``quantize``.
        """
        if classes < 0 or classes > MAX_CLASSES:
            raise UsageError(f"classes={classes} is outside 0..{MAX_CLASSES}")
        if not grids:
            raise UsageError("TokenModel.fit needs at least one token grid")
        if not 1 <= vocab <= MAX_VOCAB or not 1 <= level_groups <= MAX_LEVEL_GROUPS:
            raise UsageError(f"vocab={vocab} or level_groups={level_groups} is outside 1..{MAX_VOCAB} / "
                             f"1..{MAX_LEVEL_GROUPS}")
        if (classes + 1) ** 2 * level_groups * vocab > MAX_TABLE_ENTRIES:
            raise UsageError(f"{classes} classes x {level_groups} level groups x vocab {vocab} exceed "
                             f"{MAX_TABLE_ENTRIES} table entries; use fewer classes")
        grids = [_as_grid(g, vocab) for g in grids]
        if classes == 0:
            symbol_class = np.zeros(vocab, np.uint8)
        if symbol_class is not None:
            symbol_class = np.asarray(symbol_class)
            if symbol_class.shape != (vocab,) or int(symbol_class.min()) < 0 \
                    or int(symbol_class.max()) >= max(classes, 1):
                raise UsageError(f"symbol_class must hold {vocab} classes in 0..{max(classes, 1) - 1}")
            probs, _ = _smoothed_tables(grids, vocab, classes, level_groups, symbol_class)
            return _quantized_model(probs, vocab, precision, classes, level_groups, symbol_class)
        best_class = _rank_classes(grids, vocab, classes)
        best, best_cost = _smoothed_tables(grids, vocab, classes, level_groups, best_class)
        assign = best_class
        for _ in range(iterations):
            assign = _refine_classes(grids, vocab, classes, assign)
            probs, cost = _smoothed_tables(grids, vocab, classes, level_groups, assign)
            if cost >= best_cost:
                break
            best, best_cost, best_class = probs, cost, assign
        return _quantized_model(best, vocab, precision, classes, level_groups, best_class)

    # -- native handle ---------------------------------------------------------------------------------------------
    def _struct(self, ffi: Any) -> Any:
        if self._native is None:
            struct = ffi.new("m3cv_model *")
            struct.vocab, struct.precision = self.vocab, self.precision
            struct.classes, struct.level_groups = self.classes, self.level_groups
            bits = min(self.precision, BUCKET_BITS)
            buckets = self._bucket_index(bits)
            keep = (ffi.from_buffer("uint8_t[]", self.symbol_class), ffi.from_buffer("uint32_t[]", self.cum),
                    ffi.from_buffer("uint16_t[]", buckets), buckets)
            struct.symbol_class, struct.cum, struct.bucket_first = keep[:3]
            struct.bucket_bits = bits
            self._native = (struct, keep)
        return self._native[0]

    def _bucket_index(self, bits: int) -> np.ndarray:
        """Decoder speed-up (not normative): per context, the symbol holding the first slot of each of the 2^bits
        slot buckets, and the symbol holding the last slot."""
        total = 1 << self.precision
        slots = np.arange((1 << bits) + 1, dtype=np.int64) << (self.precision - bits)
        slots[-1] = total - 1
        rows = np.arange(self.contexts, dtype=np.int64)[:, None] * (total + 1)
        flat = (self.cum.astype(np.int64) + rows).ravel()
        found = np.searchsorted(flat, (slots[None, :] + rows).ravel(), side="right") - 1
        symbols = found.reshape(self.contexts, -1) - np.arange(self.contexts)[:, None] * (self.vocab + 1)
        return np.ascontiguousarray(symbols, dtype=np.uint16)

    def _row(self, ctx: int) -> list[int]:
        row = self._rows.get(ctx)
        if row is None:
            row = self._rows[ctx] = self.cum[ctx].tolist()
        return row


def _as_grid(grid: np.ndarray, vocab: int) -> np.ndarray:
    """``grid`` as an int64 (L, H, W) array of tokens in 0..vocab-1, or UsageError."""
    grid = np.asarray(grid)
    if grid.ndim != 3 or grid.dtype.kind not in "iu":
        raise UsageError(f"token grid must be a 3-D (levels, height, width) integer array, got {grid.dtype} "
                         f"{grid.shape}")
    if grid.size > MAX_SYMBOLS or max(grid.shape) > MAX_SYMBOLS:
        raise UsageError(f"token grid {grid.shape} has more than {MAX_SYMBOLS} tokens; code it in parts")
    if grid.size and (int(grid.min()) < 0 or int(grid.max()) >= vocab):
        raise UsageError(f"token grid holds values outside 0..{vocab - 1} (the model's vocabulary)")
    return grid.astype(np.int64, copy=False)


def _rank_classes(grids: list[np.ndarray], vocab: int, classes: int) -> np.ndarray:
    """Initial classes: symbols by descending count cut into ``classes`` groups of about equal token mass."""
    counts = sum(np.bincount(g.ravel(), minlength=vocab) for g in grids)
    order = np.argsort(-counts, kind="stable")
    mass = np.cumsum(counts[order]) / max(int(counts.sum()), 1)
    assign = np.zeros(vocab, dtype=np.uint8)
    assign[order] = np.minimum((mass * classes).astype(np.int64), classes - 1)
    return assign


def _refine_classes(grids: list[np.ndarray], vocab: int, classes: int, assign: np.ndarray) -> np.ndarray:
    """One k-means step: symbols described by the class distribution of the tokens right of and below them."""
    prof = np.zeros((vocab, classes), dtype=np.float64)
    for g in grids:
        cls = assign[g].astype(np.int64)
        np.add.at(prof, (g[:, :, :-1].ravel(), cls[:, :, 1:].ravel()), 1.0)
        np.add.at(prof, (g[:, :-1, :].ravel(), cls[:, 1:, :].ravel()), 1.0)
    weight = prof.sum(axis=1)
    seen = weight > 0
    emb = np.sqrt((prof + 0.5) / (weight + 0.5 * classes)[:, None])  # Hellinger embedding
    centroids = np.zeros((classes, classes))
    empty = np.zeros(classes, dtype=bool)
    for c in range(classes):
        members = seen & (assign == c)
        empty[c] = not members.any()
        if not empty[c]:
            centroids[c] = np.average(emb[members], axis=0, weights=weight[members])
    dist = (centroids**2).sum(axis=1)[None, :] - 2.0 * emb @ centroids.T
    dist[:, empty] = np.inf
    new = assign.copy()
    new[seen] = np.argmin(dist[seen], axis=1).astype(np.uint8)
    return new


def _context_ids(grid: np.ndarray, symbol_class: np.ndarray, classes: int, level_groups: int) -> np.ndarray:
    levels = grid.shape[0]
    g = np.minimum(np.arange(levels), level_groups - 1).astype(np.int64)[:, None, None]
    k = classes
    if k == 0:
        return np.broadcast_to(g, grid.shape).copy()
    cls = symbol_class[grid].astype(np.int64)
    a = np.full(grid.shape, k, dtype=np.int64)
    b = np.full(grid.shape, k, dtype=np.int64)
    a[:, :, 1:] = cls[:, :, :-1]
    b[:, 1:, :] = cls[:, :-1, :]
    return (g * (k + 1) + a) * (k + 1) + b


def _smoothed_tables(grids: list[np.ndarray], vocab: int, classes: int, level_groups: int,
                     symbol_class: np.ndarray) -> tuple[np.ndarray, float]:
    """Context probabilities from counts smoothed towards the level group's order-0 distribution, and the training
    code length (bits) under them."""
    contexts = level_groups * (classes + 1) ** 2
    symbol_class = np.asarray(symbol_class, dtype=np.uint8)
    keys = [(_context_ids(g, symbol_class, classes, level_groups) * vocab + g).ravel() for g in grids]
    counts = np.bincount(np.concatenate(keys), minlength=contexts * vocab)
    counts = counts.reshape(contexts, vocab).astype(np.float64)
    per_group = (classes + 1) ** 2
    group_counts = counts.reshape(level_groups, per_group, vocab).sum(axis=1)
    prior = (group_counts + 0.5) / (group_counts.sum(axis=1, keepdims=True) + 0.5 * vocab)
    prior = np.repeat(prior, per_group, axis=0)
    totals = counts.sum(axis=1, keepdims=True)
    alpha = _loo_strength(counts, totals, prior)
    probs = (counts + alpha * prior) / (totals + alpha)
    nz = counts > 0
    return probs, float(-(counts[nz] * np.log2(probs[nz])).sum())


def _quantized_model(probs: np.ndarray, vocab: int, precision: int, classes: int, level_groups: int,
                     symbol_class: np.ndarray) -> TokenModel:
    weights = np.floor(probs * float(1 << 40)).astype(np.int64)
    freqs = np.stack([quantize(row, precision) for row in weights])
    return TokenModel(vocab, precision, classes, level_groups, np.asarray(symbol_class, dtype=np.uint8), freqs)


def _loo_strength(counts: np.ndarray, totals: np.ndarray, prior: np.ndarray) -> float:
    """Smoothing strength with the best leave-one-out log-likelihood over a geometric grid."""
    rows, cols = np.nonzero(counts)
    n, tot, p0 = counts[rows, cols], totals[rows, 0], prior[rows, cols]
    best, best_cost = 1.0, np.inf
    for alpha in 2.0 ** np.arange(-2, 15):
        cost = -(n * (np.log2(n - 1 + alpha * p0) - np.log2(tot - 1 + alpha))).sum()
        if cost < best_cost:
            best, best_cost = float(alpha), cost
    return best


# -- coding ------------------------------------------------------------------------------------------------------------
def encode_tokens(grid: np.ndarray, model: TokenModel) -> bytes:
    """rANS stream of an (L, H, W) token grid under ``model`` (docs/entropy.md)."""
    grid = model._check_grid(grid)
    native = core()
    if native is None:
        return _encode_python(grid, model)
    ffi, lib = native
    levels, height, width = grid.shape
    tokens = np.ascontiguousarray(grid, dtype=np.uint16)
    capacity = int(lib.m3cv_encode_bound(tokens.size))
    out = bytearray(capacity)
    out_len = ffi.new("size_t *")
    rc = lib.m3cv_tokens_encode(model._struct(ffi), ffi.from_buffer("uint16_t[]", tokens), levels, height, width,
                                ffi.from_buffer(out), capacity, out_len)
    if rc:
        raise BitstreamError(f"token encoding failed: {_RC_MESSAGES.get(rc, rc)}")
    return bytes(out[: out_len[0]])


def decode_tokens(data: bytes | memoryview, shape: Sequence[int], model: TokenModel) -> np.ndarray:
    """Token grid (int64, ``shape`` = (L, H, W)) from a stream of ``encode_tokens``; raises BitstreamError."""
    dims = [int(d) for d in shape]
    if len(dims) != 3 or not all(0 <= d <= MAX_SYMBOLS for d in dims) or math.prod(dims) > MAX_SYMBOLS:
        raise BitstreamError(f"token grid shape {tuple(shape)} is invalid or over {MAX_SYMBOLS} tokens; "
                             "the stream is corrupt")
    levels, height, width = dims
    data = memoryview(data).cast("B")
    native = core()
    if native is None:
        return _decode_python(bytes(data), (levels, height, width), model)
    ffi, lib = native
    grid = np.zeros((levels, height, width), dtype=np.uint16)
    rc = lib.m3cv_tokens_decode(model._struct(ffi), ffi.from_buffer(data), len(data),
                                ffi.from_buffer("uint16_t[]", grid), levels, height, width)
    if rc:
        raise BitstreamError(f"token decoding failed: {_RC_MESSAGES.get(rc, rc)}; the stream is damaged")
    return grid.astype(np.int64)


def _encode_python(grid: np.ndarray, model: TokenModel) -> bytes:
    flat = grid.ravel()
    ctx = model.context_ids(grid).ravel()
    starts = model.cum[ctx, flat]
    freqs = model.cum[ctx, flat + 1] - starts
    p, unit = model.precision, (RANS_L >> model.precision) << 8
    out = bytearray()
    emit = out.append
    x = RANS_L
    for start, freq in zip(starts[::-1].tolist(), freqs[::-1].tolist()):
        x_max = unit * freq
        while x >= x_max:
            emit(x & 0xFF)
            x >>= 8
        q, r = divmod(x, freq)
        x = (q << p) + r + start
    out.reverse()
    return x.to_bytes(4, "little") + bytes(out)


def _decode_python(data: bytes, shape: tuple[int, int, int], model: TokenModel) -> np.ndarray:
    levels, height, width = shape
    if len(data) < 4:
        raise BitstreamError("token decoding failed: the token payload is truncated; the stream is damaged")
    x = int.from_bytes(data[:4], "little")
    if not RANS_L <= x < RANS_L << 8:
        raise BitstreamError("token decoding failed: the token payload is corrupt (rANS state check failed); "
                             "the stream is damaged")
    p, mask, end = model.precision, (1 << model.precision) - 1, len(data)
    k, groups = model.classes, model.level_groups
    cls = model.symbol_class.tolist()
    row_of = model._row
    out = [0] * (levels * height * width)
    pos, i = 4, 0
    for level in range(levels):
        g = min(level, groups - 1)
        for y in range(height):
            for xx in range(width):
                if k == 0:
                    ctx = g
                else:
                    a = cls[out[i - 1]] if xx else k
                    b = cls[out[i - width]] if y else k
                    ctx = (g * (k + 1) + a) * (k + 1) + b
                c = row_of(ctx)
                slot = x & mask
                s = bisect_right(c, slot) - 1
                start = c[s]
                x = (c[s + 1] - start) * (x >> p) + slot - start
                while x < RANS_L:
                    if pos >= end:
                        raise BitstreamError("token decoding failed: the token payload is truncated; "
                                             "the stream is damaged")
                    x = (x << 8) | data[pos]
                    pos += 1
                out[i] = s
                i += 1
    if x != RANS_L or pos != end:
        raise BitstreamError("token decoding failed: the token payload is corrupt (rANS state check failed); "
                             "the stream is damaged")
    return np.array(out, dtype=np.int64).reshape(shape)


def _order0_model(freqs: np.ndarray) -> TokenModel:
    freqs = np.asarray(freqs, dtype=np.int64)
    total = int(freqs.sum()) if freqs.ndim == 1 and freqs.size else 0
    precision = total.bit_length() - 1
    if total < 2 or total != 1 << precision or precision > MAX_PRECISION:
        raise UsageError(f"frequency table must be 1-D and sum to a power of two 2..2^{MAX_PRECISION}, got {total}")
    return TokenModel(freqs.size, precision, 0, 1, np.zeros(freqs.size, np.uint8), freqs[None, :])


def encode_symbols(symbols: np.ndarray, freqs: np.ndarray) -> bytes:
    """rANS stream of a 1-D symbol sequence under one order-0 table ``freqs`` (each ≥ 1, sum 2^precision)."""
    symbols = np.asarray(symbols)
    return encode_tokens(symbols.reshape(1, 1, symbols.size), _order0_model(freqs))


def decode_symbols(data: bytes | memoryview, count: int, freqs: np.ndarray) -> np.ndarray:
    """``count`` symbols from a stream of ``encode_symbols`` with the same ``freqs``."""
    return decode_tokens(data, (1, 1, count), _order0_model(freqs)).ravel()
