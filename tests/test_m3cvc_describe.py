"""m3cvc describer: the three-round VLM dialogue on a tiny random Llava, prompts from the profile or a user TOML."""
from __future__ import annotations

import pytest
import torch

from m3cvcav.engines.interfaces import Describer
from m3cvcav.engines.m3cvc.describer import clean_text, load_describer, sample_frames, video_metadata
from m3cvcav.engines.m3cvc.prompts import DEFAULT_PROMPTS, load_prompts
from m3cvcav.core.errors import InputError, ModelError, UsageError
from tiny_models import synthetic_images

torch.set_num_threads(1)
BUDGETS = {"scene": 5, "frame": 7, "clip": 3}


def _settings(vlm, **extra) -> dict:
    return {"repo": str(vlm), "model_id": 16, "device": "cpu", "clip_frames": 3, "image_size": 64,
            "max_new_tokens": BUDGETS, "profile": "test", "role": "describer", **extra}


def _spy(describer) -> tuple[list[str], list[int]]:
    """Record each rendered prompt and each generate call's token budget."""
    rendered: list[str] = []
    budgets: list[int] = []
    render, generate = describer.processor.apply_chat_template, describer.model.generate

    def spy_render(conv, **kw):
        rendered.append(render(conv, **kw))
        return rendered[-1]

    def spy_generate(**kw):
        assert kw["do_sample"] is False and kw["num_beams"] == 1
        budgets.append(kw["max_new_tokens"])
        return generate(**kw)

    describer.processor.apply_chat_template = spy_render
    describer.model.generate = spy_generate
    return rendered, budgets


def test_dialogue_runs_three_rounds_with_user_prompts(tiny_vlm, tmp_path):
    prompts = tmp_path / "my_prompts.toml"
    prompts.write_text('scene = "Q1 where is this?"\nobjects = "Q2 after {scene} which objects?"\n'
                       'motion = "Q3 given {frame} how do they move?"\n', encoding="utf-8")
    describer = load_describer(_settings(tiny_vlm, prompts=str(prompts)))
    assert isinstance(describer, Describer) and describer.kind == "vlm"
    assert describer.ref.model_id == 16 and len(describer.ref.sha256) == 32
    rendered, budgets = _spy(describer)
    frames = synthetic_images(6)
    frame_text = describer.describe_frame(frames[0])
    clip_text = describer.describe_clip(frames[0], frames)
    assert isinstance(frame_text, str) and isinstance(clip_text, str)
    assert budgets == [BUDGETS["scene"], BUDGETS["frame"], BUDGETS["clip"]]
    r1, r2, r3 = rendered
    assert "Q1 where is this?" in r1 and "Q2" not in r1
    scene = r2.split("Q2 after ")[1].split(" which objects?")[0]
    assert r2.startswith(r1) and f"Q2 after {scene} which objects?" in r2  # round 2 continues round 1, with its answer
    assert frame_text.startswith(scene + " ")  # D^F: round 1's scene (place, light, style), then round 2's objects
    objects = frame_text[len(scene) + 1:]
    assert r3.startswith(r2[: len(r1)]) and f"Q3 given {objects} how do they move?" in r3
    assert r3.count("<image>") == 1 + 3  # the keyframe from rounds 1-2, then 3 sampled frames of the clip


def test_batched_segments_are_deterministic(tiny_vlm):
    describer = load_describer(_settings(tiny_vlm, batch_size=2))
    frames = synthetic_images(5)
    first = describer.describe_frames(frames[:3])
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert describer.describe_frames(frames[:3]) == first
    clips = describer.describe_clips(frames[:2], [frames, frames[2:]])
    assert len(clips) == 2 and describer.describe_clips(frames[:2], [frames, frames[2:]]) == clips


def test_prompt_overrides_and_errors(tmp_path):
    assert load_prompts(None) == DEFAULT_PROMPTS
    assert load_prompts({"scene": "Where?"})["scene"] == "Where?"
    with pytest.raises(UsageError, match="unknown prompt key"):
        load_prompts({"colour": "x"})
    with pytest.raises(UsageError, match=r"uses frame"):
        load_prompts({"objects": "after {frame}"})
    with pytest.raises(InputError, match="not found"):
        load_prompts(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("scene = ", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_prompts(str(bad))


def test_text_helpers():
    assert clean_text(" a\x07b\n\tc  ") == "a b c"
    frames = synthetic_images(7)
    picked = sample_frames(frames, 3)
    assert picked[0] is frames[0] and picked[1] is frames[3] and picked[2] is frames[6]
    assert len(sample_frames(frames[:2], 3)) == 2


def test_video_metadata_carries_the_real_timing():
    from transformers.video_utils import VideoMetadata

    meta = VideoMetadata(**video_metadata(50, [0, 16, 33, 49], 25.0))
    assert meta.sampled_fps == pytest.approx(4 / 50 * 25)  # 4 frames over 2 s: 2 fps, not the 24 fps default
    assert meta.timestamps == [0.0, 0.64, 1.32, 1.96]


def test_clips_without_a_rate_go_in_as_frames(tiny_vlm):
    describer = load_describer(_settings(tiny_vlm, clip_input="video"))
    rendered, _ = _spy(describer)
    frames = synthetic_images(4)
    describer.describe_clip(frames[0], frames)  # no fps: ordered frames, never a video timed at 24 fps
    assert "<image>" in rendered[-1]


def test_processor_needing_torchvision_is_one_line(tiny_vlm, monkeypatch):
    import transformers

    def needs_torchvision(*args, **kwargs):
        raise ImportError("Qwen2VLVideoProcessor requires the Torchvision library but it was not found")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", needs_torchvision)
    with pytest.raises(ModelError, match="needs torchvision.*pip install torchvision==0.28") as err:
        load_describer(_settings(tiny_vlm))
    assert "\n" not in str(err.value)
