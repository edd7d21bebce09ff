"""``python -m m3cvcav bench entropy [--json] [--quick]``: rANS coder against its model's ideal and constriction.

Part 1 (order-0): Zipf-distributed tokens, V = 1024 and 16384, 4096 and 65536 symbols per call; the table is fitted on a
separate training draw. Reports bits/symbol of the model's ideal, of our stream, and of constriction's ANS and range
coders given the same quantised table, and throughput (Msymbols/s, best of a few runs) of native, Python fallback and
constriction.
Part 2 (context model): a SYNTHETIC token grid with spatial correlation (a blurred noise field cut into 32 bands, each
band owning V/32 symbols used Zipf-like), fitted on 16 grids and measured on 4 held-out ones: order-0 vs the context model.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from m3cvcav.bitstream import entropy
from m3cvcav.options import description

ZIPF_EXPONENT = 1.1


@contextmanager
def _native(flag: str) -> Iterator[None]:
    old = os.environ.get("M3CVC_NATIVE")
    os.environ["M3CVC_NATIVE"] = flag
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("M3CVC_NATIVE", None)
        else:
            os.environ["M3CVC_NATIVE"] = old


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def zipf_tokens(rng: np.random.Generator, vocab: int, count: int) -> np.ndarray:
    """``count`` tokens with P(rank r) ∝ r^-1.1 over a fixed random permutation of the vocabulary."""
    p = 1.0 / np.arange(1, vocab + 1) ** ZIPF_EXPONENT
    perm = np.random.default_rng(vocab).permutation(vocab)
    return perm[rng.choice(vocab, size=count, p=p / p.sum())]


def correlated_grids(rng: np.random.Generator, vocab: int, count: int, shape: tuple[int, int, int],
                     bands: int = 32) -> list[np.ndarray]:
    """Synthetic spatially correlated grids (see the module docstring)."""
    perm = np.random.default_rng(vocab + 1).permutation(vocab)
    per = vocab // bands
    p = 1.0 / np.arange(1, per + 1) ** 1.2
    grids = []
    for _ in range(count):
        z = rng.standard_normal(shape)
        for axis in (1, 2):  # box blur of radius 3, wrapping
            z = sum(np.roll(z, s, axis=axis) for s in range(-3, 4))
        band = np.argsort(np.argsort(z.ravel())).reshape(shape) * bands // z.size
        grids.append(perm[band * per + rng.choice(per, size=shape, p=p / p.sum())])
    return grids


def _constriction_row(tokens: np.ndarray, freqs: np.ndarray, precision: int, repeats: int) -> dict[str, float]:
    import constriction

    probs = freqs.astype(np.float64) / (1 << precision)
    model = constriction.stream.model.Categorical(probs, perfect=False)
    symbols = tokens.astype(np.int32)
    out: dict[str, float] = {}
    for name, make_enc, make_dec in (
        ("ans", constriction.stream.stack.AnsCoder, constriction.stream.stack.AnsCoder),
        ("range", constriction.stream.queue.RangeEncoder, constriction.stream.queue.RangeDecoder),
    ):
        def encode() -> np.ndarray:
            coder = make_enc()
            (coder.encode_reverse if name == "ans" else coder.encode)(symbols, model)
            return coder.get_compressed()

        words = encode()
        back = make_dec(words).decode(model, symbols.size)
        if not np.array_equal(back, symbols):
            raise RuntimeError(f"constriction {name} round trip failed")
        out[f"{name}_bits"] = words.size * 32 / symbols.size
        out[f"{name}_enc"] = symbols.size / _best_seconds(encode, repeats) / 1e6
        out[f"{name}_dec"] = symbols.size / _best_seconds(lambda: make_dec(words).decode(model, symbols.size),
                                                         repeats) / 1e6
    return out


def order0_rows(quick: bool) -> list[dict[str, float]]:
    rng = np.random.default_rng(2024)
    rows = []
    for vocab in (1024, 16384):
        train = zipf_tokens(rng, vocab, 262144)
        model = entropy.TokenModel.fit([train.reshape(1, 1, -1)], vocab, classes=0)
        for count in (4096, 65536):
            grid = zipf_tokens(rng, vocab, count).reshape(1, 1, count)
            repeats = 2 if quick else (5 if count <= 4096 else 3)
            row: dict[str, float] = {"vocab": vocab, "symbols": count, "ideal": model.ideal_bits(grid) / count}
            streams = {}
            for impl, flag in (("native", "1"), ("python", "0")):
                with _native(flag):
                    data = entropy.encode_tokens(grid, model)
                    if not np.array_equal(entropy.decode_tokens(data, grid.shape, model), grid):
                        raise RuntimeError(f"{impl} round trip failed")
                    streams[impl] = data
                    row[f"{impl}_enc"] = count / _best_seconds(lambda: entropy.encode_tokens(grid, model),
                                                                  repeats) / 1e6
                    row[f"{impl}_dec"] = count / _best_seconds(
                        lambda: entropy.decode_tokens(data, grid.shape, model), repeats) / 1e6
            if streams["native"] != streams["python"]:
                raise RuntimeError("native and Python streams differ")
            row["ours"] = len(streams["native"]) * 8 / count
            row.update(_constriction_row(grid.ravel(), model.freqs[0], model.precision, repeats))
            rows.append(row)
    return rows


def context_rows(quick: bool) -> list[dict[str, float]]:
    rng = np.random.default_rng(7)
    shape = (1, 64, 64)
    rows = []
    for vocab in (1024, 16384):
        train = correlated_grids(rng, vocab, 8 if quick else 16, shape)
        test = correlated_grids(rng, vocab, 4, shape)
        n = sum(g.size for g in test)
        row: dict[str, float] = {"vocab": vocab, "symbols": n,
                                 "empirical_order0": sum(entropy.TokenModel.order0_entropy_bits(g) for g in test) / n}
        for name, classes in (("order0", 0), ("context", 8)):
            model = entropy.TokenModel.fit(train, vocab, classes=classes)
            row[name] = sum(len(entropy.encode_tokens(g, model)) for g in test) * 8 / n
        row["saving_pct"] = 100.0 * (1 - row["context"] / row["order0"])
        rows.append(row)
    return rows


def _pct(value: float, ideal: float) -> str:
    return f"{value:.4f} ({100 * (value / ideal - 1):+.2f}%)"


def render(order0: list[dict[str, float]], context: list[dict[str, float]]) -> str:
    lines = [
        "Order-0, Zipf(1.1) tokens; bits/symbol (% over the model's ideal); throughput Msymbols/s encode/decode",
        "",
        "| V | symbols | ideal | ours (rANS) | constriction ANS | constriction range | native enc/dec | python enc/dec "
        "| constriction ANS enc/dec | constriction range enc/dec |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in order0:
        lines.append(
            f"| {r['vocab']} | {r['symbols']} | {r['ideal']:.4f} | {_pct(r['ours'], r['ideal'])} "
            f"| {_pct(r['ans_bits'], r['ideal'])} | {_pct(r['range_bits'], r['ideal'])} "
            f"| {r['native_enc']:.1f} / {r['native_dec']:.1f} | {r['python_enc']:.2f} / {r['python_dec']:.2f} "
            f"| {r['ans_enc']:.1f} / {r['ans_dec']:.1f} | {r['range_enc']:.1f} / {r['range_dec']:.1f} |")
    lines += [
        "",
        "Context model (8 learned classes, left/top neighbours) vs order-0 on SYNTHETIC spatially correlated 64x64 grids "
        "(held-out), coded bits/symbol",
        "",
        "| V | symbols | empirical order-0 entropy | order-0 model | context model | saving |",
        "|---|---|---|---|---|---|",
    ]
    for r in context:
        lines.append(f"| {r['vocab']} | {r['symbols']} | {r['empirical_order0']:.4f} | {r['order0']:.4f} "
                     f"| {r['context']:.4f} | {r['saving_pct']:.1f}% |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav bench entropy", description=description(__doc__))
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and training grids")
    args = parser.parse_args(argv)
    with _native("1"):
        entropy.implementation()  # fails clearly when the native core is not built
    order0, context = order0_rows(args.quick), context_rows(args.quick)
    if args.json:
        print(json.dumps({"order0": order0, "context": context}, indent=2))
    else:
        print(render(order0, context))
    return 0
