"""Entropy coding (docs/entropy.md): table quantisation, native vs fallback byte identity, round trips, corrupt input,
efficiency against the model's ideal, model storage and fitting."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from m3cvcav.bitstream import _native, entropy
from m3cvcav.bitstream.entropy import TokenModel, decode_tokens, encode_tokens, quantize
from m3cvcav.core.errors import BitstreamError, EngineError, ModelError, UsageError

HAS_NATIVE = not isinstance(_native._import(), str)
needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="native core not built (pip install -e . with a C compiler)")


def zipf(rng: np.random.Generator, vocab: int, size, a: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, vocab + 1) ** a
    return rng.choice(vocab, size=size, p=p / p.sum())


def both(monkeypatch, fn):
    """``fn()`` under the Python fallback and (when built) the native core; returns the results."""
    out = []
    for flag in ("0", "1") if HAS_NATIVE else ("0",):
        monkeypatch.setenv("M3CVC_NATIVE", flag)
        assert entropy.implementation() == ("native" if flag == "1" else "python")
        out.append(fn())
    return out


def random_model(rng: np.random.Generator, vocab: int, precision: int, classes: int, groups: int) -> TokenModel:
    contexts = groups * (classes + 1) ** 2
    weights = rng.integers(0, 1000, size=(contexts, vocab)) * (rng.random((contexts, vocab)) < 0.3)
    freqs = np.stack([quantize(w, precision) for w in weights])
    return TokenModel(vocab, precision, classes, groups, rng.integers(0, max(classes, 1), vocab), freqs)


# -- quantisation ------------------------------------------------------------------------------------------------------
def test_quantize_properties():
    rng = np.random.default_rng(1)
    for vocab, precision in ((1, 1), (2, 1), (5, 3), (300, 12), (16384, 16), (4096, 12)):
        w = rng.integers(0, 10**9, vocab) * (rng.random(vocab) < 0.5)
        f = quantize(w, precision)
        assert f.dtype == np.uint32 and f.min() >= 1 and int(f.sum()) == 1 << precision
        assert np.array_equal(f, quantize(w, precision))
    assert quantize(np.array([0, 0, 0]), 2).tolist() == [2, 1, 1]
    assert quantize(np.array([1, 1, 2]), 2).tolist() == [1, 1, 2]
    assert quantize(np.array([6, 2, 0, 0]), 4).tolist() == [11, 3, 1, 1]  # 14 shared 3:1: 10.5, 3.5; tie -> symbol 0
    assert quantize(np.array([1000, 1]), 10).tolist() == [1023, 1]
    for bad in (np.array([-1, 2]), np.zeros(5, np.int64), np.zeros((2, 2), np.int64)):
        with pytest.raises(UsageError):
            quantize(bad, 2)


# -- golden streams derived by hand from docs/entropy.md --------------------------------------------------------------
def test_golden_streams(monkeypatch):
    for got in both(monkeypatch, lambda: entropy.encode_symbols(np.array([0, 1, 2, 0]), np.array([2, 1, 1]))):
        assert got == bytes.fromhex("1c000020")
    for got in both(monkeypatch, lambda: entropy.encode_symbols(np.array([1] * 5), np.array([3, 1]))):
        assert got == bytes.fromhex("0f0000023f")
    for got in both(monkeypatch, lambda: entropy.decode_symbols(bytes.fromhex("0f0000023f"), 5, np.array([3, 1]))):
        assert got.tolist() == [1] * 5


# -- native vs fallback ----------------------------------------------------------------------------------------------
CASES = [
    ("random K=3 G=2", 300, 12, 3, 2, (3, 9, 11), "uniform"),
    ("zipf K=8", 1024, 16, 8, 1, (2, 32, 32), "zipf"),
    ("all-same symbol", 64, 10, 2, 1, (1, 16, 16), "same"),
    ("all freq-1 symbols", 4096, 12, 0, 1, (1, 8, 100), "uniform"),
    ("max vocab", 16384, 16, 1, 1, (1, 40, 50), "uniform"),
    ("1x1x1", 10, 4, 2, 1, (1, 1, 1), "uniform"),
    ("single symbol vocab", 1, 16, 0, 1, (2, 3, 4), "same"),
    ("4x64x64", 512, 15, 4, 4, (4, 64, 64), "zipf"),
    ("empty", 100, 8, 2, 1, (0, 4, 4), "uniform"),
    ("empty rows", 100, 8, 2, 1, (2, 0, 4), "uniform"),
]


@pytest.mark.parametrize("name, vocab, precision, classes, groups, shape, kind", CASES, ids=[c[0] for c in CASES])
def test_backends_identical_and_round_trip(monkeypatch, name, vocab, precision, classes, groups, shape, kind):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    model = random_model(rng, vocab, precision, classes, groups)
    if kind == "uniform":
        grid = rng.integers(0, vocab, shape)
    elif kind == "zipf":
        grid = zipf(rng, vocab, shape)
    else:
        grid = np.full(shape, vocab - 1)
    streams = both(monkeypatch, lambda: encode_tokens(grid, model))
    assert all(s == streams[0] for s in streams)
    assert len(streams[0]) <= 4 + 2 * grid.size
    for back in both(monkeypatch, lambda: decode_tokens(streams[0], shape, model)):
        assert back.dtype == np.int64 and np.array_equal(back, grid)
    if name == "all freq-1 symbols":
        assert len(streams[0]) == 4 + grid.size * 12 // 8  # exactly `precision` bits per symbol
    if kind == "same" and vocab == 1:
        assert len(streams[0]) == 4


def test_fitted_context_model_identical(monkeypatch):
    rng = np.random.default_rng(5)
    grids = [np.cumsum(rng.integers(0, 3, (2, 24, 24)), axis=2) % 200 for _ in range(4)]
    model = TokenModel.fit(grids, 200, classes=6, level_groups=2)
    streams = both(monkeypatch, lambda: encode_tokens(grids[0], model))
    assert all(s == streams[0] for s in streams)
    for back in both(monkeypatch, lambda: decode_tokens(streams[0], grids[0].shape, model)):
        assert np.array_equal(back, grids[0])


# -- corrupt and truncated payloads -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coded():
    rng = np.random.default_rng(9)
    grids = [zipf(rng, 256, (1, 16, 16)) for _ in range(4)]
    model = TokenModel.fit(grids, 256, classes=4)
    return model, grids[0], encode_tokens(grids[0], model)


def _decode_outcome(data, shape, model):
    try:
        return decode_tokens(data, shape, model).tobytes()
    except BitstreamError as exc:
        return type(exc)


def test_truncation_always_raises(monkeypatch, coded):
    model, grid, data = coded
    for cut in range(len(data)):
        for outcome in both(monkeypatch, lambda: _decode_outcome(data[:cut], grid.shape, model)):
            assert outcome is BitstreamError
    for outcome in both(monkeypatch, lambda: _decode_outcome(data + b"\x00", grid.shape, model)):
        assert outcome is BitstreamError


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_mutations_decide_the_same_on_both_backends(monkeypatch, coded, where, xor):
    model, grid, data = coded
    mutated = bytearray(data)
    mutated[where % len(data)] ^= xor
    outcomes = both(monkeypatch, lambda: _decode_outcome(bytes(mutated), grid.shape, model))
    assert all(o == outcomes[0] for o in outcomes)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=80), w=st.integers(0, 12))
def test_random_bytes_only_raise_bitstream_error(monkeypatch, coded, data, w):
    model = coded[0]
    outcomes = both(monkeypatch, lambda: _decode_outcome(data, (1, 3, w), model))
    assert all(o == outcomes[0] for o in outcomes)


def test_bad_shapes_and_tokens(monkeypatch, coded):
    model, grid, data = coded
    for shape in ((1, 2), (1, -1, 4), (1, 1 << 12, 1 << 11), (0, 1 << 33, 1), (1 << 40, 1 << 40, 1 << 40)):
        with pytest.raises(BitstreamError, match="shape"):
            decode_tokens(data, shape, model)
    for bad in (grid + 256, grid - 300, grid[0], grid.astype(np.float32), np.zeros((0, 1 << 33, 1), np.uint8)):
        with pytest.raises(UsageError):
            encode_tokens(bad, model)


# -- efficiency ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab, count", [(1024, 4096), (16384, 4096), (1024, 65536)])
def test_within_one_percent_of_ideal(vocab, count):
    rng = np.random.default_rng(vocab + count)
    model = TokenModel.fit([zipf(rng, vocab, (1, 1, 1 << 18))], vocab, classes=0)
    grid = zipf(rng, vocab, (1, 1, count))
    bits = 8 * len(encode_tokens(grid, model))
    assert model.ideal_bits(grid) <= bits <= 1.01 * model.ideal_bits(grid)


def correlated_grids(rng: np.random.Generator, vocab: int, count: int, shape: tuple[int, int, int],
                     bands: int = 32, block: int = 4) -> list[np.ndarray]:
    """Grids of ``block`` x ``block`` tiles, each tile drawing its tokens from one band of vocab / bands symbols:
    neighbours share a band, which a context model learns and an order-0 model cannot use."""
    per, (levels, h, w) = vocab // bands, shape
    tiles = (levels, -(-h // block), -(-w // block))
    return [rng.integers(0, bands, tiles).repeat(block, 1).repeat(block, 2)[:, :h, :w] * per
            + rng.integers(0, per, shape) for _ in range(count)]


def test_context_model_beats_order0_on_correlated_grids():
    rng = np.random.default_rng(3)
    train, test = correlated_grids(rng, 1024, 8, (1, 48, 48)), correlated_grids(rng, 1024, 2, (1, 48, 48))
    order0 = TokenModel.fit(train, 1024, classes=0)
    context = TokenModel.fit(train, 1024, classes=8)
    bits0 = sum(len(encode_tokens(g, order0)) for g in test)
    bits8 = sum(len(encode_tokens(g, context)) for g in test)
    assert bits8 < 0.95 * bits0
    assert sum(context.ideal_bits(g) for g in test) < sum(order0.ideal_bits(g) for g in test)


# -- model storage and validation -------------------------------------------------------------------------------------
def test_arrays_round_trip_and_validation():
    rng = np.random.default_rng(11)
    model = random_model(rng, 700, 14, 5, 3)
    arrays = model.to_arrays()
    assert arrays["freq_minus_1"].dtype == np.uint16 and arrays["symbol_class"].dtype == np.uint8
    again = TokenModel.from_arrays(arrays)
    grid = rng.integers(0, 700, (3, 10, 10))
    assert encode_tokens(grid, again) == encode_tokens(grid, model)
    assert TokenModel.from_arrays(TokenModel(1, 16, 0, 1, np.zeros(1), np.array([[65536]])).to_arrays()).freqs[0, 0] \
        == 65536

    def broken(**change):
        d = {k: v.copy() for k, v in arrays.items()}
        for key, fn in change.items():
            d[key] = fn(d[key])
        return d

    def bump(a):
        a[2, 7] += 1
        return a

    def bad_class(a):
        a[3] = 5
        return a

    for bad in (broken(freq_minus_1=bump), broken(symbol_class=bad_class), broken(params=lambda p: p + [1, 0, 0, 0, 0]),
                broken(params=lambda p: p + [0, 1, 0, 0, 0]), broken(freq_minus_1=lambda a: a.astype(np.uint32)),
                {k: v for k, v in arrays.items() if k != "symbol_class"}):
        with pytest.raises(ModelError):
            TokenModel.from_arrays(bad)
    with pytest.raises(ModelError, match="table entries"):
        TokenModel(16384, 16, 40, 1, np.zeros(16384), np.ones((1, 1)))


def test_fit_options():
    rng = np.random.default_rng(2)
    grids = [zipf(rng, 64, (3, 8, 8)) for _ in range(3)]
    given_classes = (np.arange(64) % 3).astype(np.uint8)
    model = TokenModel.fit(grids, 64, classes=3, level_groups=2, precision=12, symbol_class=given_classes)
    assert (model.vocab, model.precision, model.classes, model.level_groups) == (64, 12, 3, 2)
    assert np.array_equal(model.symbol_class, given_classes) and model.freqs.shape == (2 * 16, 64)
    assert model.ideal_bits(grids[0]) < TokenModel.fit(grids, 64, classes=0).ideal_bits(grids[0]) + 64
    with pytest.raises(UsageError):
        TokenModel.fit(grids, 16384, classes=200)
    with pytest.raises(UsageError):
        TokenModel.fit([], 64)
    assert TokenModel.order0_entropy_bits(np.array([[[0, 0, 1, 1]]])) == pytest.approx(4.0)


# -- backend selection -----------------------------------------------------------------------------------------------
def test_backend_selection(monkeypatch):
    monkeypatch.setenv("M3CVC_NATIVE", "0")
    assert entropy.implementation() == "python"
    monkeypatch.setenv("M3CVC_NATIVE", "yes")
    with pytest.raises(UsageError, match="M3CVC_NATIVE"):
        entropy.implementation()
    monkeypatch.setattr(_native, "_import", lambda: "No module named '_m3cvcore'")
    monkeypatch.setenv("M3CVC_NATIVE", "1")
    with pytest.raises(EngineError, match="not built"):
        entropy.implementation()
    monkeypatch.delenv("M3CVC_NATIVE")
    assert entropy.implementation() == "python"


@needs_native
def test_native_is_the_default(monkeypatch):
    monkeypatch.delenv("M3CVC_NATIVE", raising=False)
    assert entropy.implementation() == "native"
