"""m3cvc tokenizer: VQ over a tiny diffusion VAE (codebook fitted here), token grids, entropy coding round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from m3cvcav.bitstream.entropy import decode_tokens, encode_tokens
from m3cvcav.engines.interfaces import KeyframeTokenizer
from m3cvcav.engines.m3cvc.codebook import Codebook, load_codebook, save_codebook
from m3cvcav.engines.tokenizer.vae_codebook import attach_entropy_model, fit_codebook
from m3cvcav.engines.m3cvc.tokenizer import load_tokenizer
from m3cvcav.engines.m3cvc.vae import load_vae
from m3cvcav.core.errors import ModelError, UsageError
from tiny_models import synthetic_images

torch.set_num_threads(1)


def _settings(sd, codebook, **extra) -> dict:
    return {"repo": str(sd), "model_id": 17, "codebooks": [str(codebook)], "device": "cpu", "profile": "test",
            "role": "tokenizer", **extra}


def test_round_trip_shapes_and_entropy_coding(tiny_sd, tiny_codebook):
    tok = load_tokenizer(_settings(tiny_sd, tiny_codebook))
    assert isinstance(tok, KeyframeTokenizer) and tok.vocab == 16 and tok.codebook_id == 1
    assert tok.ref.model_id == 17 and len(tok.ref.sha256) == 32
    image = synthetic_images(1, size=64, seed=5)[0][:48]  # 48×64: not square
    grid = tok.encode(image, 0)
    assert grid.indices.dtype == np.int32 and grid.indices.shape == (1, 24, 32)  # tiny VAE: 2 px per latent
    assert grid.indices.min() >= 0 and grid.indices.max() < tok.vocab and grid.image_size == (48, 64)
    out = tok.decode(grid)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    model = tok.token_model(0)
    data = encode_tokens(grid.indices, model)
    assert np.array_equal(decode_tokens(data, grid.indices.shape, model), grid.indices)
    assert 8 * len(data) <= grid.indices.size * np.log2(tok.vocab) + 64  # no worse than fixed-length codes


def test_quantise_dequantise_is_exact(tiny_codebook):
    book = load_codebook(tiny_codebook)
    indices = np.arange(book.vocab, dtype=np.int32).reshape(1, 1, 4, 4)
    latents = book.dequantise(indices)
    assert latents.shape == (1, book.latent_channels, 4, 4)
    assert torch.equal(latents[0, :, 0, 1], book.levels[0, 1])
    assert np.array_equal(book.quantise(latents), indices)  # every entry is its own nearest entry


def test_patched_codebook_and_rate_points(tiny_sd, tiny_codebook, tmp_path):
    book = load_codebook(tiny_codebook)
    entries = torch.randn(book.vocab, 4 * 2 * 2, generator=torch.Generator().manual_seed(0))  # 2×2 latent patches
    save_codebook(tmp_path / "p2.safetensors", Codebook(entries[None], 2, 4, book.codebook_id, book.entropy))
    tok = load_tokenizer(_settings(tiny_sd, tiny_codebook, codebooks=[str(tmp_path / "p2.safetensors"),
                                                                      str(tiny_codebook)], max_side=32))
    assert [p.index for p in tok.rate_points] == [0, 1] and tok.rate_points[0].nominal_bpp < tok.rate_points[1].nominal_bpp
    image = synthetic_images(1)[0]
    assert tok.encode(image, 0).indices.shape == (1, 8, 8)  # 64 px → 32 px working size → 16 latents → 2×2 patches
    assert tok.encode(image, 1).indices.shape == (1, 16, 16)
    assert tok.decode(tok.encode(image, 0)).shape == (64, 64, 3)
    with pytest.raises(UsageError, match="rate point 2"):
        tok.encode(image, 2)


def test_bad_codebooks(tiny_sd, tiny_codebook, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_codebook(tmp_path / "none.safetensors")
    with pytest.raises(UsageError, match="codebooks"):
        load_tokenizer(_settings(tiny_sd, tiny_codebook, codebooks=[]))
    tok = load_tokenizer(_settings(tiny_sd, tiny_codebook))
    grid = tok.encode(synthetic_images(1)[0], 0)
    grid.codebook_id = 9
    with pytest.raises(ModelError, match="codebook 9"):
        tok.decode(grid)


def test_residual_levels_are_rate_points(tiny_sd, tmp_path):
    vae = load_vae({"repo": str(tiny_sd), "model_id": 0, "device": "cpu"}, "tokenizer")
    images = synthetic_images(4, seed=3)
    book = fit_codebook(vae, images, vocab=8, levels=2, iters=6, seed=1, codebook_id=1)
    latents = vae.encode(images)
    errors = [float((book.dequantise(book.quantise(latents, d)) - latents).pow(2).mean()) for d in (1, 2)]
    assert errors[1] < errors[0]  # the second level refines what the first left
    tok = load_tokenizer(_settings(tiny_sd, save_codebook(tmp_path / "r2.safetensors", book)))
    assert [p.name for p in tok.rate_points] == ["vq8-p1-d1", "vq8-p1-d2"]
    grids = [tok.encode(images[0], r) for r in (0, 1)]
    assert grids[0].indices.shape == (1, 32, 32) and grids[1].indices.shape == (2, 32, 32)
    assert np.array_equal(grids[1].indices[:1], grids[0].indices)  # depth 1 is a prefix of depth 2
    data = encode_tokens(grids[1].indices, tok.token_model(1))
    assert np.array_equal(decode_tokens(data, (2, 32, 32), tok.token_model(1)), grids[1].indices)
    grids[0].rate_point = 1
    with pytest.raises(ModelError, match="does not match rate point 1"):
        tok.decode(grids[0])


def test_trainer_codebook_format(tiny_sd, tmp_path):
    """A codebook as `train tokenizer --vae` writes it loads; its entropy model is attached before use."""
    rng = np.random.default_rng(0)
    trained = tmp_path / "codebook.safetensors"
    save_file({f"quantizer.levels.{i}.embed": rng.normal(size=(8, 4)).astype(np.float32) for i in range(2)},
              str(trained), metadata={"config": '{"latent_dim": 4, "vocab": 8, "levels": 2}', "vae": str(tiny_sd)})
    book = load_codebook(trained)
    assert (book.depth, book.vocab, book.patch, book.entropy) == (2, 8, 1, {})
    tok = load_tokenizer(_settings(tiny_sd, trained))
    with pytest.raises(ModelError, match="attach_entropy_model"):
        tok.token_model(0)
    vae = load_vae({"repo": str(tiny_sd), "model_id": 0, "device": "cpu"}, "tokenizer")
    ready = attach_entropy_model(trained, vae, synthetic_images(2), tmp_path / "ready.safetensors", codebook_id=3)
    tok = load_tokenizer(_settings(tiny_sd, ready))
    grid = tok.encode(synthetic_images(1)[0], 1)
    assert tok.codebook_id == 3 and grid.indices.shape == (2, 32, 32)
    assert np.array_equal(decode_tokens(encode_tokens(grid.indices, tok.token_model(1)), (2, 32, 32),
                                        tok.token_model(1)), grid.indices)


def test_no_codebook_is_the_shipped_lite_tokenizer_and_ids_must_agree(tiny_sd, tiny_codebook):
    from m3cvcav.engines.tokenizer import MODEL_ID

    lite = load_tokenizer({"model_id": MODEL_ID, "profile": "test", "role": "tokenizer", "working_width": 64})
    assert isinstance(lite, KeyframeTokenizer) and lite.ref.model_id == MODEL_ID
    image = synthetic_images(1, size=64)[0]
    assert lite.decode(lite.encode(image, 0)).shape == (64, 64, 3)
    with pytest.raises(UsageError, match="set tokenizer.model_id = 17"):
        load_tokenizer(_settings(tiny_sd, tiny_codebook, model_id=MODEL_ID))
    with pytest.raises(UsageError, match="no codebooks are listed"):
        load_tokenizer({"model_id": 17, "profile": "test", "role": "tokenizer"})
