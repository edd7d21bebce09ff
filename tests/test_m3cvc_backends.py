"""The m3cvc keyframe generator's UNet and VAE decoder on the engines' backends (tiny random SD model, 64×64, 2 steps):
torch vs ONNX Runtime parity per network call and for whole keyframes, the shared VAE engine, ahead-of-time export
specs (``engines build``), backends_used, a one-line EngineError for an unavailable -engine, and -offload reaching
the engines."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from m3cvcav.engines.backends import backends_used, onnx_for
from m3cvcav.engines.interfaces import Exportable
from m3cvcav.engines.m3cvc.keyframe import load_keyframe_generator
from m3cvcav.engines.m3cvc.networks import UNET, VAE_DECODER, EngineUNet, EngineVae
from m3cvcav.engines.m3cvc.tokenizer import load_tokenizer
from m3cvcav.errors import EngineError
from tiny_models import (synthetic_images, tiny_codebook, tiny_m3cvc, tiny_root, tiny_sd,  # noqa: F401  (fixtures)
                         tiny_vlm, tiny_wan, tiny_wan_vace)

torch.set_num_threads(1)
NET_TOL = 1e-4  # per network call, float32 (measured ≈1e-6)
IMAGE_TOL = 4  # whole keyframe, uint8 levels: 2 Euler steps amplify the per-call differences (measured ≤ 1)
PROMPT = "a red ball on a blue floor"


@pytest.fixture(scope="module", autouse=True)
def engine_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("M3CVC_ENGINE_CACHE", str(tmp_path_factory.mktemp("engines")))
    yield
    mp.undo()


def _settings(repo, backend: str) -> dict:
    return {"repo": str(repo), "model_id": 18, "device": "cpu", "steps": 2, "strength": 0.5, "profile": "test",
            "role": "keyframe_generator", "backend": backend}


@pytest.fixture(scope="module")
def pair(tiny_sd):
    return (load_keyframe_generator(_settings(tiny_sd, "torch")),
            load_keyframe_generator(_settings(tiny_sd, "onnxruntime")))


def test_networks_swapped_and_recorded(pair):
    on_torch, on_ort = pair
    assert on_torch.backends == {"vae_decoder": "torch", "unet": "torch"}
    assert on_ort.backends == {"vae_decoder": "onnxruntime", "unet": "onnxruntime"}
    for pipe in (on_ort.img2img, on_ort.txt2img):
        assert isinstance(pipe.unet, EngineUNet) and isinstance(pipe.vae, EngineVae)
    assert not isinstance(on_torch.img2img.unet, EngineUNet)
    on_ort.generate(None, PROMPT, (64, 64), seed=1)
    used = backends_used()
    assert used[UNET] == "onnxruntime" and used[VAE_DECODER] == "onnxruntime"


def test_unet_and_vae_decoder_parity(pair):
    on_torch, on_ort = pair
    g = torch.Generator().manual_seed(0)
    sample, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    for t in (999.0, 500.0, torch.tensor(1.0)):
        ref = on_torch.img2img.unet(sample, t, encoder_hidden_states=text, return_dict=False)[0]
        got = on_ort.img2img.unet(sample, t, encoder_hidden_states=text).sample
        assert got.shape == ref.shape and (got - ref).abs().max().item() < NET_TOL
    latent = torch.randn(1, 4, 12, 8, generator=g)
    ref = on_torch.img2img.vae.decode(latent).sample
    got = on_ort.img2img.vae.decode(latent, return_dict=False)[0]
    assert got.shape == ref.shape == (1, 3, 24, 16) and (got - ref).abs().max().item() < NET_TOL


def test_whole_keyframes_close_to_torch(pair):
    on_torch, on_ort = pair
    decoded = synthetic_images(1)[0]
    for source, size in ((decoded, (64, 64)), (None, (64, 64))):
        a = on_torch.generate(source, PROMPT, size, seed=7)
        b = on_ort.generate(source, PROMPT, size, seed=7)
        assert b.shape == a.shape == (64, 64, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= IMAGE_TOL
        assert np.array_equal(b, on_ort.generate(source, PROMPT, size, seed=7))  # deterministic per backend


def test_tokenizer_shares_the_vae_engine(pair, tiny_sd, tiny_codebook):
    _, on_ort = pair
    settings = {"repo": str(tiny_sd), "model_id": 3, "device": "cpu", "codebooks": [str(tiny_codebook)],
                "profile": "test", "role": "tokenizer"}
    tok = load_tokenizer({**settings, "backend": "onnxruntime"})
    assert tok.backend == "onnxruntime" and tok.vae.decoder("onnxruntime") is on_ort.img2img.vae
    ref = load_tokenizer({**settings, "backend": "torch"})
    grid = ref.encode(synthetic_images(1)[0], 0)
    assert np.abs(ref.decode(grid).astype(int) - tok.decode(grid).astype(int)).max() <= 1


def test_export_specs_for_engines_build(pair):
    _, on_ort = pair
    assert isinstance(on_ort, Exportable)
    specs = on_ort.export_specs([(64, 64), (32, 48)])
    assert [s.name for s in specs] == [VAE_DECODER, UNET]
    for spec in specs:
        assert [p.name for p in spec.profiles] == ["32x48", "64x64"]
        assert spec.inputs[0].dynamic_axes() == {0: "batch", 2: "height", 3: "width"}
        assert len(onnx_for(spec)) > 10_000
    assert specs[1].profiles[1].max["sample"] == (2, 4, 32, 32)


def test_tensorrt_unavailable_is_one_line(tiny_sd):
    with pytest.raises(EngineError, match=r"-engine tensorrt cannot run m3cvc-\S+: .*; use -engine auto") as err:
        load_keyframe_generator(_settings(tiny_sd, "tensorrt"))
    assert "\n" not in str(err.value)


def test_engines_build_exports_the_profile(tiny_m3cvc, tmp_path, monkeypatch, capsys):
    from m3cvcav.cli_engines import main

    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path / "built"))
    assert main(["build", "-profile", str(tiny_m3cvc.profile), "-s", "64x64", "-engine", "onnxruntime",
                 "-device", "cpu"]) == 0
    lines = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("keyframe_generator")}
    assert set(lines) == {VAE_DECODER, UNET}
    assert all(words[2] == "onnx" and int(words[3]) > 10_000 for words in lines.values())


def test_offload_reaches_the_engines(tiny_m3cvc, monkeypatch, caplog):
    from m3cvcav import api
    from m3cvcav.cli_transcode import main

    seen = {}

    def fake_encode(src, dst, **kwargs):
        seen.update(kwargs)
        raise EngineError("recorded")

    monkeypatch.setattr(api, "encode", fake_encode)
    with pytest.raises(EngineError, match="recorded"):
        main(["-i", "in.mp4", "-c", "m3cvc", "-offload", "-profile", str(tiny_m3cvc.profile), "out.mkv"])
    assert seen["offload"] is True
    engines = api.Engines(str(tiny_m3cvc.profile), "onnxruntime", offload=True)
    with caplog.at_level(logging.INFO, logger="m3cvcav"):
        engines.engine("keyframe_generator")
    assert engines.backends() == "keyframe_generator=onnxruntime"  # what the M3CV_BACKEND tag records
    assert "keyframe_generator: offload applies to GPUs only; on cpu the models stay where they are" in caplog.text
