"""bench/gpu_check.py: the shipped real-architecture configs, the row machinery (errors and the budget as rows, the
table), and the whole check in its CPU mode (``--device cpu --small``: every section at reduced widths)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
FIELDS = {"what", "shape", "dtype", "backend", "seconds", "peak_gib", "max_diff", "status", "note"}
# Rows that may be skipped on a CPU machine, by what their reason names: the GPU-only backends, and the Qwen2.5-VL
# processor's video half where torchvision is not installed (the m3cvc extra does not install it).
ALLOWED_SKIPS = ("needs a CUDA device", "torchvision")


def _config(name: str) -> dict:
    folder = ROOT / "tests" / "data" / "configs" / name
    path = folder / "scheduler_config.json" if (folder / "scheduler_config.json").exists() else folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_shipped_configs_hold_the_production_architectures():
    unet, vae, text = _config("sd-turbo/unet"), _config("sd-turbo/vae"), _config("sd-turbo/text_encoder")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["attention_head_dim"] == [5, 10, 20, 20]
    assert unet["cross_attention_dim"] == text["hidden_size"] == 1024 and unet["use_linear_projection"] is True
    assert vae["block_out_channels"] == [128, 256, 512, 512] and vae["scaling_factor"] == 0.18215
    assert _config("sd-turbo/scheduler")["timestep_spacing"] == "trailing"
    wan = _config("wan-vace-1.3b/transformer")
    assert (wan["num_attention_heads"], wan["attention_head_dim"], wan["num_layers"], wan["ffn_dim"]) == (12, 128, 30,
                                                                                                           8960)
    assert wan["vace_layers"] == list(range(0, 29, 2)) and wan["vace_in_channels"] == 96 and wan["text_dim"] == 4096
    from diffusers import AutoencoderKLWan

    defaults = AutoencoderKLWan().config  # diffusers' defaults are Wan's VAE
    assert all(defaults[k] == v for k, v in _config("wan-vace-1.3b/vae").items() if not k.startswith("_"))
    import tiny_models

    scheduler = _config("wan-vace-1.3b/scheduler")
    assert scheduler["_class_name"] == "UniPCMultistepScheduler"
    assert all(scheduler[k] == v for k, v in tiny_models.WAN_SCHEDULER.items())  # the tiny pipelines' UniPC
    qwen = _config("qwen2.5-vl-small")
    head = qwen["hidden_size"] // qwen["num_attention_heads"]
    assert head == 128 == 2 * sum(qwen["rope_scaling"]["mrope_section"])  # M-RoPE's sections fill the real head
    assert (qwen["image_token_id"], qwen["video_token_id"], qwen["vocab_size"]) == (151655, 151656, 151936)
    assert qwen["vision_config"]["out_hidden_size"] == qwen["hidden_size"]


def test_small_widths_build_every_network():
    import gpu_check
    from diffusers import AutoencoderKL, AutoencoderKLWan, UNet2DConditionModel, WanVACETransformer3DModel

    unet = UNet2DConditionModel.from_config(gpu_check.config("sd-turbo/unet", small=True))
    assert len(unet.down_blocks) == 4 and unet.config.cross_attention_dim == 1024
    AutoencoderKL.from_config(gpu_check.config("sd-turbo/vae", small=True))
    AutoencoderKLWan.from_config(gpu_check.config("wan-vace-1.3b/vae", small=True))
    vace = WanVACETransformer3DModel.from_config(gpu_check.config("wan-vace-1.3b/transformer", small=True))
    assert vace.config.text_dim == 4096 and vace.config.vace_in_channels == 96
    tokenizer = gpu_check.qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"])
    assert ids == [151643, 151645, 151655, 151656]


@pytest.mark.slow
def test_rows_report_errors_and_the_spent_budget(tmp_path):
    import gpu_check

    ck = gpu_check.Check("cpu", True, 60.0, tmp_path)
    ok = ck.row("fine", "1x1", "fp32", "torch", lambda: {"seconds": 0.5, "max_diff": 0.0})
    bad = ck.row("broken", "1x1", "fp32", "torch", lambda: 1 / 0)
    skipped = ck.row("absent", "1x1", "fp32", "tensorrt", lambda: (_ for _ in ()).throw(gpu_check.Skip("not here")))
    assert (ok.status, bad.status, skipped.status) == ("ok", "error", "skip")
    assert bad.note == "ZeroDivisionError: division by zero" and skipped.note == "not here"
    result = gpu_check.run("cpu", small=True, budget_s=0.0)  # every row skipped, none built
    assert result["rows"] and all(r["status"] == "skip" and "budget" in r["note"] for r in result["rows"])
    text = gpu_check.table(result)
    assert text.count("\n| ") == len(result["rows"]) + 1 and "| # | what | shape |" in text


@pytest.mark.slow
def test_cpu_mode_runs_every_section():
    import gpu_check

    torch.set_num_threads(1)
    result = gpu_check.run("cpu", small=True, budget_s=3600.0)
    rows = result["rows"]
    for row in rows:
        assert set(row) == FIELDS, row
        assert row["status"] in ("ok", "skip"), row
        if row["status"] == "skip":
            assert any(reason in row["note"] for reason in ALLOWED_SKIPS), row
        else:
            assert row["seconds"] is not None and row["seconds"] > 0, row
    whats = [r["what"] for r in rows if r["status"] == "ok"]
    for expected in ("img2img, keyframe generator", "m3cvc-unet", "m3cvc-vae-decoder", "-engine onnxruntime",
                     "transformer, 1 guided step", "vae encode", "vae decode", "clip generator", "tiny flf2v + UniPC",
                     "tiny vace + UniPC", "tiny encode -> decode", "-offload"):
        assert any(expected in what for what in whats), expected
    for row in rows:
        if row["what"].startswith("m3cvc-") and row["status"] == "ok":  # the exported graphs at 36x64 and 64x64
            assert row["max_diff"] < 1e-3, row
        if "-engine onnxruntime" in row["what"] and row["status"] == "ok":  # whole keyframes, in uint8 levels
            assert row["max_diff"] <= 4, row
        if "-offload" in row["what"]:  # a no-op on the CPU: the same frames
            assert row["max_diff"] == 0, row
    print(gpu_check.table(result))
