"""The lite enhancer (engines/lite/enhancer.py): variant 0 is bicubic exactly, the model's output, the encoder's choice,
the shipped weights' identity, and the training entry point (2 steps, then a resume)."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from m3cvcav.bitstream import av1
from m3cvcav.engines.lite import enhancer as enh
from m3cvcav.engines.lite import load_enhancer


def _enhancer(**kw):
    if not enh.WEIGHTS.exists():
        pytest.skip(f"the enhancer weights ({enh.WEIGHTS}) are not installed")
    return load_enhancer({"model_id": 5, "threads": 1, **kw})


def _picture(h=36, w=64, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_variant_0_is_bicubic_exactly():
    e = _enhancer()
    pic = _picture()
    np.testing.assert_array_equal(e.upscale(pic, (160, 90), 0), av1.upscale(pic, (160, 90)))


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_model_variants_give_display_size_uint8_and_differ_from_bicubic(backend):
    e = _enhancer(backend=backend)
    pic = _picture()
    outs = [e.upscale(pic, (150, 84), v) for v in range(e.variants + 1)]
    for out in outs:
        assert out.shape == (84, 150, 3) and out.dtype == np.uint8
    assert np.abs(outs[1].astype(int) - outs[0]).max() > 0
    assert np.abs(outs[1].astype(int) - outs[0]).mean() > np.abs(outs[2].astype(int) - outs[0]).mean()  # strength
    np.testing.assert_array_equal(e.candidates(pic, (150, 84))[1], outs[1])


def test_onnxruntime_and_torch_agree():
    pic = _picture(seed=3)
    a = _enhancer(backend="onnxruntime").upscale(pic, (128, 72), 1).astype(int)
    b = _enhancer(backend="torch").upscale(pic, (128, 72), 1).astype(int)
    assert np.abs(a - b).max() <= 1


def test_bad_variant_and_bad_picture_are_usage_errors():
    from m3cvcav.core.errors import UsageError

    e = _enhancer()
    with pytest.raises(UsageError):
        e.upscale(_picture(), (128, 72), e.variants + 1)
    with pytest.raises(UsageError):
        e.upscale(np.zeros((36, 64), np.uint8), (128, 72), 1)


def test_choose_keeps_bicubic_when_bicubic_is_the_source():
    e = _enhancer()
    pics = [_picture(seed=s) for s in range(2)]
    source = [av1.upscale(p, (128, 72)) for p in pics]  # bicubic reproduces the source exactly: nothing can beat it
    assert e.choose(source, pics, (128, 72)) == 0


def test_choose_picks_the_model_on_a_held_out_sintel_frame(media):
    e = _enhancer()
    frame = cv2.cvtColor(cv2.imread(str(media("frames/sintel/frame_0020.png"))), cv2.COLOR_BGR2RGB)
    frame = av1.downscale(frame, (512, 218))
    coded = av1.decode(av1.encode([frame], av1.coded_size(512, 218, 0.25), 25, 50))
    from m3cvcav.core.quality import ms_ssim

    variant = e.choose([frame], coded, (512, 218))
    assert variant >= 1
    assert ms_ssim(frame, e.upscale(coded[0], (512, 218), variant)) > ms_ssim(frame, av1.upscale(coded[0], (512, 218)))


def test_ref_is_the_hash_of_the_shipped_weights():
    e = _enhancer()
    file_digest = hashlib.sha256(enh.WEIGHTS.read_bytes()).digest()
    assert e.ref.sha256 == hashlib.sha256(file_digest).digest()  # loaders.weights_sha256 of one file
    assert e.ref.model_id == 5 and e.ref.name == enh.NAME
    assert enh.WEIGHTS.stat().st_size < 4 << 20


def test_train_runs_two_steps_and_resumes(tmp_path):
    import torch

    from m3cvcav.core.errors import UsageError
    from m3cvcav.engines.lite.enhancer_net import NetConfig
    from m3cvcav.engines.lite.enhancer_train import Segment, TrainOptions, train

    rng = np.random.default_rng(1)
    source = np.stack([cv2.resize(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), (80, 48)) for _ in range(3)])
    coded = np.stack([av1.downscale(s, (40, 24)) for s in source])
    pool = [Segment("tiny", coded, source, 0.5, 40.0)]
    cfg = NetConfig(channels=4, layers=3)
    lines: list[str] = []
    opts = TrainOptions(out=tmp_path, steps=2, batch=2, pool=pool, cfg=cfg, export=tmp_path / "w.safetensors")
    ckpt = train(opts, log=lines.append)
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 2
    assert any(line.startswith("step 2/2") for line in lines)
    first = {k: v.clone() for k, v in state["net"].items()}
    train(TrainOptions(out=tmp_path, steps=3, batch=2, pool=pool, cfg=cfg, resume=True,
                       export=tmp_path / "w.safetensors"), log=lines.append)
    state = torch.load(ckpt, weights_only=False)
    assert "resumed at step 2" in lines and state["step"] == 3
    assert any(not torch.equal(first[k], state["net"][k]) for k in first)
    with pytest.raises(UsageError, match="no checkpoint"):
        train(TrainOptions(out=tmp_path / "empty", steps=1, pool=pool, cfg=cfg, resume=True))
    # the exported file loads as an enhancer whose ref is its hash
    e = enh.Enhancer(model_id=9, weights=tmp_path / "w.safetensors", backend="torch")
    assert e.config == cfg and e.upscale(coded[0], (80, 48), 1).shape == (48, 80, 3)


def test_profile_role_builds_the_enhancer_and_names_its_weights_without_loading():
    from m3cvcav.engines.interfaces import PictureEnhancer
    from m3cvcav.engines.lite import enhancer_model_ref
    from m3cvcav.engines.registry import load_profile

    _enhancer()
    role = {"factory": "m3cvcav.engines.lite:load_enhancer", "model_id": 5, "decoder": True}
    profile = load_profile("lite", {"roles": {"enhancer": role}, "backends": {"onnxruntime": {"threads": 1}}})
    assert "enhancer" in profile.recorded_roles()
    ref = enhancer_model_ref(profile.role_settings("enhancer"))
    engine = profile.engine("enhancer")
    assert isinstance(engine, PictureEnhancer) and engine.ref == ref and ref.model_id == 5
    assert engine.upscale(_picture(), (96, 54), 1).shape == (54, 96, 3)
