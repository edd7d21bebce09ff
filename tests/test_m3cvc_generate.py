"""m3cvc generators on tiny random diffusion models: IT2V/TT2V keyframes, first-last-frame clips, determinism, and the
whole tiny profile through the registry; a missing hub model under HF_HUB_OFFLINE=1 is one clear ModelError."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m3cvcav.engines.interfaces import ClipGenerator, KeyframeGenerator
from m3cvcav.engines.m3cvc.clip import load_clip_generator, model_frames, retime, vace_conditioning
from m3cvcav.engines.m3cvc.keyframe import load_keyframe_generator
from m3cvcav.core.errors import ModelError, UsageError
from tiny_models import synthetic_images

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


def _shifted(frames: list[np.ndarray], dx: int) -> list[np.ndarray]:
    """A motion prediction: each frame moved right by ``dx`` pixels per frame index (frame 0 = the keyframe)."""
    return [frames[0]] + [np.roll(frames[0], dx * i, axis=1) for i in range(1, len(frames))]


@pytest.fixture(scope="module")
def vace(tiny_wan_vace):
    return load_clip_generator(_settings(tiny_wan_vace, "clip_generator", height=16, width=16, window=9))


def test_vace_pipeline(vace):
    first, last = synthetic_images(2, size=32)
    frames = vace.generate(first, last, 4, "the ball rolls", seed=2)
    assert len(frames) == 4 and frames[3].shape == (32, 32, 3)
    a, b = Image.fromarray(first), Image.fromarray(last)
    video, mask = vace_conditioning(a, b, 5)
    assert video[0] is a and video[-1] is b and mask[0].getpixel((0, 0)) == 0 and mask[2].getpixel((0, 0)) == 255


def test_vace_places_the_next_keyframe_at_its_frame_and_takes_the_prediction_as_control_video():
    a, b, g = (Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0)))
    video, mask = vace_conditioning(a, b, 9, last_at=6, guide=[a] + [g] * 8)
    assert video[6] is b and mask[6].getpixel((0, 0)) == 0  # the keyframe where it falls in time, kept
    assert all(video[i] is g and mask[i].getpixel((0, 0)) == 255 for i in (1, 5, 7, 8))  # generated, guided
    assert mask[0].getpixel((0, 0)) == 0


def test_clip_follows_the_motion_prediction(tiny_wan, monkeypatch):
    # FLF2V (video-to-video from the prediction); 32×32 work size. The tiny random Wan VAE (3 channels) hardly tells a
    # leftward from a rightward motion apart in its latent, so what is checked is that each prediction is the start
    # the denoiser gets (its own latents) and that the clip it makes differs from one made without a prediction.
    gen = load_clip_generator(_settings(tiny_wan, "clip_generator", height=32, width=32, window=9,
                                        max_sequence_length=16))
    starts = []
    call = type(gen.pipe).__call__
    monkeypatch.setattr(type(gen.pipe), "__call__", lambda self, **kw: (starts.append(kw.get("latents")),
                                                                         call(self, **kw))[1])
    first, last = synthetic_images(2, size=32)
    for count, nxt in ((6, last), (5, None)):  # 6 frames + next keyframe (n = 6: not 4k), and the end of a video
        starts.clear()
        base = gen.generate(first, nxt, count, "the ball rolls", seed=4)
        right = gen.generate(first, nxt, count, "the ball rolls", seed=4, prediction=_shifted([first] * count, 3))
        left = gen.generate(first, nxt, count, "the ball rolls", seed=4, prediction=_shifted([first] * count, -3))
        for frames in (base, right, left):
            assert len(frames) == count and all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in frames)
            assert np.array_equal(frames[0], first)
        assert starts[0] is None and not torch.equal(starts[1], starts[2])  # each motion is its own start
        assert not all(np.array_equal(x, y) for x, y in zip(right[1:], base[1:]))  # the prediction changes the clip
        again = gen.generate(first, nxt, count, "the ball rolls", seed=4, prediction=_shifted([first] * count, 3))
        assert all(np.array_equal(x, y) for x, y in zip(right, again))  # deterministic
        edited = gen.generate(first, nxt, count, "a cat jumps", seed=4, prediction=_shifted([first] * count, 3))
        assert not all(np.array_equal(x, y) for x, y in zip(right[1:], edited[1:]))  # D^C still conditions it


def test_vace_gets_the_prediction_as_its_control_video(vace, monkeypatch):
    # The tiny random VACE model's output hardly depends on its conditioning video at all (not even on the next
    # keyframe), so what is proven here is what the pipeline is given; the output is checked for count and size.
    calls = []
    pipe = vace.pipe

    class Spy:
        def __getattr__(self, name):
            return getattr(pipe, name)

        def __call__(self, **kwargs):
            calls.append(kwargs)
            return pipe(**kwargs)

    monkeypatch.setattr(vace, "pipe", Spy())
    first, last = synthetic_images(2, size=16)  # the work size: no resizing, so frames compare exactly
    prediction = _shifted([first] * 6, 2)
    frames = vace.generate(first, last, 6, "the ball rolls", seed=4, prediction=prediction)
    assert len(frames) == 6 and all(f.shape == (16, 16, 3) for f in frames)
    (call,) = calls
    video, mask = [np.asarray(v) for v in call["video"]], [np.asarray(m) for m in call["mask"]]
    assert call["num_frames"] == 9 and len(video) == len(mask) == 9  # 4⌈6/4⌉+1 frames, one per source frame
    assert np.array_equal(video[0], first) and mask[0].max() == 0
    assert np.array_equal(video[6], last) and mask[6].max() == 0  # the next keyframe at its own time
    for i in range(1, 6):
        assert np.array_equal(video[i], prediction[i]) and mask[i].min() == 255  # generated, following the motion
    assert call["prompt_embeds"] is not None


def test_clip_prediction_is_checked(clips):
    first = synthetic_images(1, size=32)[0]
    with pytest.raises(UsageError, match="3 frames for a clip of 4"):
        clips.generate(first, None, 4, "x", seed=0, prediction=[first] * 3)
    with pytest.raises(UsageError, match="32x32x3 uint8"):
        clips.generate(first, None, 2, "x", seed=0, prediction=[first, first[:16]])
    # a prediction that is the keyframe throughout (a stream without motion) is the same as none
    still = clips.generate(first, None, 4, "x", seed=0, prediction=[first] * 4)
    assert all(np.array_equal(x, y) for x, y in zip(still, clips.generate(first, None, 4, "x", seed=0)))


def test_long_clip_follows_the_prediction(clips):
    first, last = synthetic_images(2, size=32)
    a = clips.generate(first, last, 9, "x", seed=1, prediction=_shifted([first] * 9, 2))
    assert len(a) == 9 and clips.last_calls == 1 + 3  # 9 intervals > window 5: coarse + 3 spans, each guided
    b = clips.generate(first, None, 9, "x", seed=1, prediction=_shifted([first] * 9, -2))
    assert len(b) == 9 and clips.last_calls == 1 + 2  # the end of a video: 8 intervals


def test_model_frames_and_retime_keep_an_even_pace():
    assert [model_frames(n) for n in (1, 4, 5, 6, 8)] == [5, 5, 9, 9, 9]
    frames = [np.full((1, 1, 3), 10 * i, np.uint8) for i in range(9)]  # 9 model frames, n = 6 intervals
    out = [int(f[0, 0, 0]) for f in retime(frames, 7)]
    assert out == [0, 13, 27, 40, 53, 67, 80]  # even steps of 8/6 model frames, blended; ends kept
    assert [int(f[0, 0, 0]) for f in retime(frames, 5)] == [0, 20, 40, 60, 80]  # whole steps: frames as they are


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
    profile = load_profile("m3cvc", {"roles": {"tokenizer": {"codebooks": [str(tmp_path / "cb.safetensors")],
                                                            "model_id": 17, "repo": "stabilityai/sd-turbo",
                                                            "revision": "b261bac6fd2cf515557d5d0707481eafa0485ec2"}}})
    repo = profile.settings(role)["repo"]
    with pytest.raises(ModelError) as info:
        profile.engine(role)
    message = str(info.value)
    assert "\n" not in message and f"'{repo}'" in message and f"role '{role}'" in message
    assert f"hf download {repo}" in message and "-profile lite" in message


def test_keyframe_prompt_fits_the_text_window(keyframes):
    from m3cvcav.engines.m3cvc.keyframe import fit_prompt

    words = lambda t: len(t.split())  # noqa: E731  (a token per word, for the rule itself)
    text = "A beach at dusk, warm light. A red kite flies left. Two dogs run on the sand near the water."
    assert fit_prompt(text, words, 100) == text
    assert fit_prompt(text, words, 11) == "A beach at dusk, warm light. A red kite flies left."  # whole sentences first
    assert fit_prompt(text, words, 8) == "A beach at dusk, warm light. A red"  # then whole words
    tok = keyframes.img2img.tokenizer  # the tiny CLIP tokenizer: a 32-token window, a token per character
    long = "Dusk, warm light. " + "A red kite flies. " * 6
    fitted = keyframes.prompt(long)
    assert fitted.startswith("Dusk, warm light.") and len(fitted) < len(long)
    assert len(tok(fitted, add_special_tokens=False).input_ids) <= tok.model_max_length - 2


def test_flf2v_image_encoder_and_vae_stay_float32(tiny_wan):
    """In bf16 the transformer and text encoder run in bf16; the CLIP image encoder and the Wan VAE in float32, as
    diffusers' FLF2V example loads them."""
    gen = load_clip_generator(_settings(tiny_wan, "clip_generator", dtype="bfloat16", height=16, width=16, window=5,
                                        max_sequence_length=16))
    assert gen.pipe.transformer.dtype == torch.bfloat16
    assert gen.pipe.image_encoder.dtype == torch.float32 and gen.pipe.vae.dtype == torch.float32
    first, last = synthetic_images(2, size=32)
    assert len(gen.generate(first, last, 4, "x", seed=1)) == 4


@pytest.mark.parametrize("steps", [4, 30])
@pytest.mark.parametrize("kind", ["UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"])
def test_skipped_steps_run_on_the_wan_schedulers(kind, steps):
    """Video-to-video skips the head of the schedule; the tail must run as the pipelines run it (``set_timesteps``,
    then ``step`` over ``scheduler.timesteps``) on UniPC — what the Wan repos ship, whose ``step`` asserted
    ``this_order > 0`` when only the timesteps were cut — and on FlowMatchEuler, from the sigma the start was noised
    to, down to 0."""
    import diffusers

    from m3cvcav.engines.m3cvc.clip import _skip_steps
    from tiny_models import WAN_SCHEDULER

    config = WAN_SCHEDULER if kind.startswith("UniPC") else {"shift": 3.0}
    scheduler = getattr(diffusers, kind)(**config)
    scheduler.set_timesteps(steps)
    full_sigmas = scheduler.sigmas.clone()
    skip = steps - max(1, round(steps * 0.7))
    x0 = torch.full((1, 4, 2, 2), 0.5)
    sample = full_sigmas[skip] * torch.ones_like(x0) + (1 - full_sigmas[skip]) * x0
    with _skip_steps(scheduler, skip):
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        assert len(timesteps) == steps - skip and float(scheduler.sigmas[0]) == pytest.approx(float(full_sigmas[skip]))
        for t in timesteps:
            sample = scheduler.step(torch.ones_like(x0) - x0, t, sample, return_dict=False)[0]  # the exact flow
    assert torch.allclose(sample, x0, atol=1e-3)  # the exact velocity field lands on x0


def test_clip_generator_loads_the_variant_it_hashes(tiny_wan, tmp_path):
    """A profile with ``variant = "fp16"``: the clip generator must run the variant's files, the ones its model ref
    hashes (it loaded the plain ones, so a stream named weights its decoder did not run)."""
    import shutil

    from diffusers import WanTransformer3DModel

    from m3cvcav.engines.m3cvc.common import pipeline_files

    folder = shutil.copytree(tiny_wan, tmp_path / "wan")
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    with torch.no_grad():
        for p in transformer.parameters():
            p.add_(0.5)
    transformer.save_pretrained(folder / "transformer", variant="fp16")
    for sub in ("vae", "text_encoder", "image_encoder"):
        for plain in (folder / sub).glob("*.safetensors"):
            shutil.copy(plain, plain.with_name(plain.name.replace(".safetensors", ".fp16.safetensors")))
    settings = _settings(folder, "clip_generator", height=16, width=16, window=5, variant="fp16")
    gen = load_clip_generator(settings)
    assert all(".fp16." in p.name for p in pipeline_files(settings))
    name, value = next(iter(transformer.state_dict().items()))
    assert torch.equal(gen.pipe.transformer.state_dict()[name], value)  # the variant's weights run


def test_engines_build_makes_the_wan_engine_a_run_uses(tiny_wan, tmp_path, monkeypatch):
    """`engines build` and a run must meet in the engine cache: the build exports the transformer from the float32
    file weights (not the bf16-rounded ones the model runs with) at the shapes every call uses — with the
    transformer on an engine each call makes ``window`` frames, whatever the segment's length."""
    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path / "engines"))
    gen = load_clip_generator(_settings(tiny_wan, "clip_generator", height=16, width=16, window=9, dtype="bfloat16",
                                        backend="onnxruntime", max_sequence_length=16))
    (built,) = gen.export_specs([(32, 32)])
    engine = gen.pipe.transformer
    seen = []
    make = engine._make_for
    monkeypatch.setattr(engine, "_make_for", lambda shapes: (seen.append(shapes), make(shapes))[1])
    first, last = synthetic_images(2, size=32)
    for count in (3, 6, 9, 14):
        assert len(gen.generate(first, last, count, "the ball rolls", seed=1)) == count
    assert len(seen) == 1 and gen.transformer_spec(seen[0]).digest() == built.digest()
