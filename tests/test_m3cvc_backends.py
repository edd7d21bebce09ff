"""The m3cvc keyframe generator's UNet and VAE decoder on the engines' backends (tiny random SD model, 64×64, 2 steps):
torch vs ONNX Runtime parity per network call and for whole keyframes, the shared VAE engine, ahead-of-time export
specs (``engines build``), the backends each pipeline records, a one-line EngineError for an unavailable -engine, and -offload reaching
the engines."""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch

from m3cvcav.engines.backends import onnx_for
from m3cvcav.engines.interfaces import Exportable
from m3cvcav.engines.registry import Engines
from m3cvcav.engines.m3cvc.keyframe import load_keyframe_generator
from m3cvcav.engines.m3cvc.networks import UNET, VAE_DECODER, EngineUNet, EngineVae
from m3cvcav.engines.m3cvc.tokenizer import load_tokenizer
from m3cvcav.core.errors import EngineError
from tiny_models import synthetic_images

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


def test_offload_reaches_the_engines(tiny_m3cvc, monkeypatch, caplog, tmp_path):
    from m3cvcav import api
    from m3cvcav.cli_transcode import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.mp4").write_bytes(b"")  # inputs are checked before anything else

    seen = {}

    def fake_encode(src, dst, **kwargs):
        seen.update(kwargs)
        raise EngineError("recorded")

    monkeypatch.setattr(api, "encode", fake_encode)
    with pytest.raises(EngineError, match="recorded"):
        main(["-i", "in.mp4", "-c", "m3cvc", "-offload", "-profile", str(tiny_m3cvc.profile), "out.mkv"])
    assert seen["offload"] is True
    engines = Engines(str(tiny_m3cvc.profile), "onnxruntime", offload=True)
    with caplog.at_level(logging.INFO, logger="m3cvcav"):
        engines.engine("keyframe_generator")
    assert engines.backends() == "keyframe_generator=onnxruntime"  # what the M3CV_BACKEND tag records
    assert "keyframe_generator: offload applies to GPUs only; on cpu the models stay where they are" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("model", ["flf2v", "vace"])
def test_wan_transformer_on_onnxruntime(model, tiny_wan, tiny_wan_vace):
    """The Wan transformer (rms_norm decomposed, one static-shape export per clip shape) through ONNX Runtime: per call
    within NET_TOL of torch, whole clips within a few levels (``window`` = the clip's 5 model frames, so torch and the
    engine make the same calls), one export per shape (cached)."""
    from m3cvcav.engines.m3cvc.clip import load_clip_generator
    from m3cvcav.engines.m3cvc.networks import EngineWanTransformer

    repo = tiny_wan if model == "flf2v" else tiny_wan_vace
    settings = {"repo": str(repo), "model_id": 19, "device": "cpu", "steps": 2, "profile": "test",
                "role": "clip_generator", "height": 16, "width": 16, "window": 5, "max_sequence_length": 16}
    on_torch = load_clip_generator({**settings, "backend": "torch"})
    on_ort = load_clip_generator({**settings, "backend": "onnxruntime"})
    assert on_ort.backends == {"transformer": "onnxruntime"}
    assert isinstance(on_ort.pipe.transformer, EngineWanTransformer)
    assert load_clip_generator({**settings, "backend": "auto"}).backends == {"transformer": "torch"}
    first, last = synthetic_images(2, size=16)
    a = on_torch.generate(first, last, 4, "the ball rolls", seed=2)
    b = on_ort.generate(first, last, 4, "the ball rolls", seed=2)
    assert len(b) == 4 and max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in zip(a, b)) <= IMAGE_TOL
    assert len(on_ort.pipe.transformer._engines) == 1
    on_ort.generate(first, None, 4, "the ball rolls", seed=2)  # same clip shape: no new export
    assert len(on_ort.pipe.transformer._engines) == 1
    shapes = on_ort._shapes((16, 16), 5)
    spec = on_ort.export_specs([(16, 16)])[0]
    assert [s.name for s in spec.inputs][:3] == ["hidden_states", "timestep", "encoder_hidden_states"]
    g = torch.Generator().manual_seed(0)
    feeds = {name: torch.randn(*shape, generator=g) for name, shape in shapes.items()}
    feeds["timestep"] = torch.tensor([700.0])
    if "control_hidden_states_scale" in feeds:
        feeds["control_hidden_states_scale"] = torch.ones(shapes["control_hidden_states_scale"])
    ref = on_torch.pipe.transformer(**feeds, return_dict=False)[0]
    got = on_ort.pipe.transformer(**feeds, return_dict=False)[0]
    assert got.shape == ref.shape and (got - ref).abs().max().item() < NET_TOL


@contextlib.contextmanager
def offload_hook(module):
    """An accelerate-style hook on ``module`` (what enable_model_cpu_offload installs) recording each module it moves."""
    seen = []

    class Hook:
        def pre_forward(self, hooked):
            seen.append(hooked)

    module._hf_hook = Hook()
    try:
        yield seen
    finally:
        del module._hf_hook


def test_offload_hook_moves_the_engine_vae_for_encode_and_decode(pair):
    """enable_model_cpu_offload hooks the pipeline's VAE — the EngineVae wrapper — so its encode (img2img) and decode
    must trigger the hook that moves it, and the torch VAE inside it, to the GPU (as AutoencoderKL's own do)."""
    _, on_ort = pair
    vae = on_ort.img2img.vae
    with offload_hook(vae) as seen:
        vae.encode(torch.zeros(1, 3, 16, 16))
        vae.decode(torch.zeros(1, 4, 8, 8))
    assert seen == [vae, vae]


def test_tiny_unet_through_the_external_data_path(pair, tmp_path):
    """The path SD-Turbo's 3.5 GB float32 UNet takes (over protobuf's 2 GiB): graph + one .onnx.data file, read back
    by ONNX Runtime from the path, equal to torch."""
    import dataclasses

    from m3cvcav.engines.backends import EngineCache, create_engine
    from m3cvcav.engines.m3cvc.networks import unet_spec

    on_torch, _ = pair
    spec = dataclasses.replace(unet_spec(on_torch.unet, 77, [(32, 32)], 2), external_data=True)
    cache = EngineCache(tmp_path / "ext")
    model = onnx_for(spec, cache)
    assert model.data is not None and model.data.stat().st_size > 0.9 * spec.weight_bytes()  # (some are folded)
    g = torch.Generator().manual_seed(1)
    feeds = {"sample": torch.randn(2, 4, 16, 16, generator=g), "timestep": torch.tensor([999.0, 10.0]),
             "encoder_hidden_states": torch.randn(2, 77, 32, generator=g)}
    with create_engine(spec, "onnxruntime", device="cpu", cache=cache) as ort, \
            create_engine(spec, "torch", device="cpu") as eager:
        assert (ort(feeds)["noise"] - eager(feeds)["noise"]).abs().max().item() < NET_TOL


def test_export_uses_float32_weights_from_the_files(tiny_sd):
    """A VAE running in bf16 is exported from its float32 file weights, not from bf16-rounded ones."""
    from diffusers import AutoencoderKL

    from m3cvcav.engines.m3cvc.networks import _for_export

    exact = AutoencoderKL.from_pretrained(str(tiny_sd), subfolder="vae")
    rounded = AutoencoderKL.from_pretrained(str(tiny_sd), subfolder="vae", torch_dtype=torch.bfloat16)
    reloaded = _for_export(rounded, lambda: AutoencoderKL.from_pretrained(str(tiny_sd), subfolder="vae"))
    name, ref = next((n, t) for n, t in exact.state_dict().items() if t.dtype == torch.float32 and t.numel() > 100)
    assert torch.equal(reloaded.state_dict()[name], ref)
    assert not torch.equal(_for_export(rounded).state_dict()[name], ref)  # what the export used to carry


def test_encoder_records_decoder_models_without_loading_them(tiny_m3cvc, monkeypatch):
    """model_refs names the keyframe and clip generators' weights from their files: no SD / Wan pipeline is built,
    and the refs equal the built engines'."""
    from m3cvcav.engines.registry import load_profile

    profile = load_profile(str(tiny_m3cvc.profile))
    refs = profile.model_refs()
    assert profile.built() == {} and [r.model_id for r in refs] == [17, 18, 19]
    built = {r: profile.engine(r).ref for r in ("tokenizer", "keyframe_generator", "clip_generator")}
    assert sorted(built.values(), key=lambda ref: ref.model_id) == refs


def test_unet_graph_runs_at_every_latent_shape(tmp_path):
    """SD's UNet (three ×2 upsamplers, like SD-Turbo) exported through ONNX Runtime runs at a 16:9 latent (36×64: a
    512×288 source), its transpose, the 4×4 profile minimum and a multiple of 8, equal to torch: a graph traced at a
    multiple of 8 froze plain ×2 upsamples and failed in ``up_blocks.1/Concat`` at all but the last."""
    from diffusers import UNet2DConditionModel

    from m3cvcav.engines.backends import EngineCache, create_engine
    from m3cvcav.engines.m3cvc.networks import unet_spec

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, in_channels=4, out_channels=4, cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), norm_num_groups=4, attention_head_dim=4,
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).eval()
    spec = unet_spec(unet, 8, [(256, 256), (512, 512)], 8)
    with create_engine(spec, "onnxruntime", device="cpu", cache=EngineCache(tmp_path)) as ort:
        for latent in ((36, 64), (64, 36), (4, 4), (32, 32)):
            g = torch.Generator().manual_seed(1)
            feeds = {"sample": torch.randn(1, 4, *latent, generator=g), "timestep": torch.tensor([999.0]),
                     "encoder_hidden_states": torch.randn(1, 8, 16, generator=g)}
            ref = unet(feeds["sample"], feeds["timestep"], encoder_hidden_states=feeds["encoder_hidden_states"]).sample
            assert (ort(feeds)["noise"] - ref).abs().max().item() < NET_TOL, latent


def test_tokenizer_encodes_through_the_offloaded_engine_vae(pair, tiny_sd, tiny_codebook):
    """VQ codebooks + -offload + an engine VAE: enable_model_cpu_offload hooks the pipeline's VAE, the EngineVae
    wrapper, so the tokenizer's encode must go through that wrapper (its hook moves the VAE inside it to the GPU);
    calling the inner VAE left its weights on the CPU and its input on the GPU."""
    _, on_ort = pair
    tok = load_tokenizer({"repo": str(tiny_sd), "model_id": 17, "device": "cpu", "codebooks": [str(tiny_codebook)],
                          "profile": "test", "role": "tokenizer", "backend": "onnxruntime"})
    wrapper = on_ort.img2img.vae
    assert tok.vae.decoder("onnxruntime") is wrapper
    with offload_hook(wrapper) as seen:
        tok.decode(tok.encode(synthetic_images(1)[0], 0))
    assert seen == [wrapper, wrapper]  # encode, then decode
