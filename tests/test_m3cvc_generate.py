"""m3cvc generators on tiny random diffusion models: IT2V/TT2V keyframes, first-last-frame clips, determinism, and the
whole tiny profile through the registry; a missing hub model under HF_HUB_OFFLINE=1 is one clear ModelError."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m3cvcav.engines.interfaces import ClipGenerator, KeyframeGenerator
from m3cvcav.engines.m3cvc.clip import load_clip_generator, resample, vace_conditioning
from m3cvcav.engines.m3cvc.keyframe import load_keyframe_generator
from m3cvcav.errors import ModelError, UsageError
from tiny_models import (synthetic_images, tiny_codebook, tiny_m3cvc, tiny_root, tiny_sd,  # noqa: F401  (fixtures)
                         tiny_vlm, tiny_wan, tiny_wan_vace)

torch.set_num_threads(1)


def _settings(repo, role: str, **extra) -> dict:
    return {"repo": str(repo), "model_id": 18, "device": "cpu", "steps": 2, "profile": "test", "role": role, **extra}


@pytest.fixture(scope="module")
def keyframes(tiny_sd):
    return load_keyframe_generator(_settings(tiny_sd, "keyframe_generator", strength=0.5))


@pytest.fixture(scope="module")
def clips(tiny_wan):
    return load_clip_generator(_settings(tiny_wan, "clip_generator", height=16, width=16, window=5,
                                         max_sequence_length=16))


def test_keyframe_it2v_and_tt2v(keyframes):
    assert isinstance(keyframes, KeyframeGenerator) and len(keyframes.ref.sha256) == 32
    decoded = synthetic_images(1)[0]
    a = keyframes.generate(decoded, "a red ball on a blue floor", (64, 64), seed=7)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, keyframes.generate(decoded, "a red ball on a blue floor", (64, 64), seed=7))
    assert not np.array_equal(a, keyframes.generate(decoded, "a red ball on a blue floor", (64, 64), seed=8))
    t = keyframes.generate(None, "a red ball on a blue floor", (40, 72), seed=7)  # TT2V: text only
    assert t.shape == (40, 72, 3)
    assert np.array_equal(t, keyframes.generate(None, "a red ball on a blue floor", (40, 72), seed=7))


def test_keyframe_settings_are_checked(tiny_sd):
    with pytest.raises(UsageError, match="strength"):
        load_keyframe_generator(_settings(tiny_sd, "keyframe_generator", steps=1, strength=0.5))


def test_clip_frame_count_size_and_determinism(clips):
    assert isinstance(clips, ClipGenerator)
    first, *_, last = synthetic_images(4, size=48)
    frames = clips.generate(first, last, 4, "the ball rolls to the right", seed=3)
    assert len(frames) == 4 and all(f.shape == (48, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0], first)
    again = clips.generate(first, last, 4, "the ball rolls to the right", seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(frames, again))
    assert clips.generate(first, None, 3, "the ball rolls", seed=3)[0].shape == (48, 48, 3)  # end of the video
    assert len(clips.generate(first, last, 1, "still", seed=3)) == 1


def test_long_clip_uses_windows(clips):
    first, *_, last = synthetic_images(3, size=32)
    frames = clips.generate(first, last, 9, "the ball rolls", seed=1)  # 10 frames > window 5: coarse + 3 spans
    assert len(frames) == 9 and clips.last_calls == 1 + 3


def test_vace_pipeline(tiny_wan_vace):
    vace = load_clip_generator(_settings(tiny_wan_vace, "clip_generator", height=16, width=16, window=5))
    first, last = synthetic_images(2, size=32)
    frames = vace.generate(first, last, 4, "the ball rolls", seed=2)
    assert len(frames) == 4 and frames[3].shape == (32, 32, 3)
    a, b = Image.fromarray(first), Image.fromarray(last)
    video, mask = vace_conditioning(a, b, 5)
    assert video[0] is a and video[-1] is b and mask[0].getpixel((0, 0)) == 0 and mask[2].getpixel((0, 0)) == 255


def test_resample_keeps_ends():
    assert resample(list(range(9)), 4) == [0, 3, 5, 8]


def test_tiny_profile_through_registry(tiny_m3cvc):
    from m3cvcav.engines.registry import load_profile

    profile = load_profile(str(tiny_m3cvc.profile))
    refs = profile.model_refs()
    assert [r.model_id for r in refs] == [17, 18, 19]  # the decoder's models, ids from the m3cvc base profile
    profile.verify(refs)
    image = synthetic_images(1)[0]
    text = profile.engine("describer").describe_frame(image)
    tok = profile.engine("tokenizer")
    decoded = tok.decode(tok.encode(image, 0))
    key = profile.engine("keyframe_generator").generate(decoded, text, (64, 64), seed=0)
    frames = profile.engine("clip_generator").generate(key, None, 3, "still", seed=0)
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)


@pytest.mark.parametrize("role", ["describer", "tokenizer", "keyframe_generator", "clip_generator"])
def test_missing_hub_model_offline(role, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from m3cvcav.engines.registry import load_profile

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    profile = load_profile("m3cvc", {"roles": {"tokenizer": {"codebooks": [str(tmp_path / "cb.safetensors")]}}})
    repo = profile.settings(role)["repo"]
    with pytest.raises(ModelError) as info:
        profile.engine(role)
    message = str(info.value)
    assert "\n" not in message and f"'{repo}'" in message and f"role '{role}'" in message
    assert f"huggingface-cli download {repo}" in message and "-profile lite" in message
