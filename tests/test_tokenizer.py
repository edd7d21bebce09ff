"""The shipped lite tokenizer: weights and sha256, odd sizes, token stream through both entropy coder back ends."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch

from m3cvcav.bitstream.entropy import decode_tokens, encode_tokens, implementation
from m3cvcav.engines.interfaces import KeyframeTokenizer, TokenGrid
from m3cvcav.engines.tokenizer import CODEBOOK_ID, MODEL_ID, WEIGHTS, load_lite
from m3cvcav.engines.tokenizer.rates import grid_shape
from m3cvcav.core.errors import ModelError, UsageError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return load_lite({"working_width": 256})


def _image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, ((xx // 16 + yy // 16) % 2) * 200], -1).astype(np.uint8)


def test_shipped_weights_load_and_match_their_sha256(tok):
    assert isinstance(tok, KeyframeTokenizer)
    assert WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    # the project rule (engines.loaders.weights_sha256): sha256 over each weight file's sha256
    assert tok.ref.sha256 == hashlib.sha256(hashlib.sha256(WEIGHTS.read_bytes()).digest()).digest()
    assert tok.ref.model_id == MODEL_ID and tok.codebook_id == CODEBOOK_ID
    assert len(tok.rate_points) >= 3
    bpp = [r.nominal_bpp for r in tok.rate_points]
    assert all(b > 0 for b in bpp) and bpp == sorted(bpp)


def test_odd_size_round_trip_restores_source_size(tok, media):
    img = _image(241, 321)
    for rp in range(len(tok.rate_points)):
        grid = tok.encode(img, rp)
        assert grid.indices.dtype == np.int32
        assert grid.indices.shape == grid_shape((241, 321), 256, tok.specs[rp])
        assert 0 <= grid.indices.min() and grid.indices.max() < tok.vocab
        out = tok.decode(grid)
        assert out.shape == (241, 321, 3) and out.dtype == np.uint8
    # a trained model: a real photo comes back close, and closer with more levels
    photo = cv2.cvtColor(cv2.imread(str(media("photos/skimage_astronaut.png"))), cv2.COLOR_BGR2RGB)[:241, :321]
    err = [np.abs(tok.decode(tok.encode(photo, rp)).astype(float) - photo).mean()
           for rp in (1, len(tok.rate_points) - 1)]
    assert err[1] < err[0] < 40


@pytest.mark.parametrize("native", ["0", "1"])
def test_tokens_entropy_coded_and_decoded_identically(tok, monkeypatch, native):
    monkeypatch.setenv("M3CVC_NATIVE", native)
    assert implementation() == ("native" if native == "1" else "python")
    img = _image(120, 200)
    rp = len(tok.rate_points) - 1
    grid = tok.encode(img, rp)
    model = tok.token_model(rp)
    data = encode_tokens(grid.indices, model)
    assert 0 < len(data) < grid.indices.size * 2
    back = decode_tokens(data, grid.indices.shape, model)
    assert np.array_equal(back, grid.indices)
    out = tok.decode(TokenGrid(back.astype(np.int32), grid.codebook_id, rp, grid.vocab, grid.image_size))
    assert np.array_equal(out, tok.decode(grid))


def test_streams_are_byte_identical_across_backends(tok, monkeypatch):
    grid = tok.encode(_image(97, 131), 2)
    model = tok.token_model(2)
    streams = []
    for native in ("0", "1"):
        monkeypatch.setenv("M3CVC_NATIVE", native)
        streams.append(encode_tokens(grid.indices, model))
    assert streams[0] == streams[1]


def test_bad_inputs_are_one_line_errors(tok):
    with pytest.raises(UsageError, match="rate point 9"):
        tok.encode(_image(32, 32), 9)
    with pytest.raises(UsageError, match="uint8"):
        tok.encode(np.zeros((32, 32), np.uint8), 0)
    grid = tok.encode(_image(64, 64), 0)
    with pytest.raises(UsageError, match="does not match"):
        tok.decode(TokenGrid(grid.indices[:, :1], CODEBOOK_ID, 0, tok.vocab, (64, 64)))
    with pytest.raises(ModelError, match="codebook"):
        tok.decode(TokenGrid(grid.indices, CODEBOOK_ID + 1, 0, tok.vocab, (64, 64)))
    with pytest.raises(ModelError, match="missing"):
        load_lite({"weights": "/nonexistent/lite.safetensors"})
