"""bench/gpu_check.py's CPU-runnable parts (the GPU script's network table and its parity column) on the tiny models."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch


torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.slow
def test_network_table_on_cpu(tiny_sd, tiny_wan, tiny_wan_vace, tmp_path):
    import gpu_check

    rows = gpu_check.network_rows({"sd": tiny_sd, "wan": tiny_wan, "wan_vace": tiny_wan_vace}, "cpu", 1,
                                  tmp_path / "engines", compile=False)
    networks = {r["network"] for r in rows}
    assert {"m3cvc-vae-decoder", "m3cvc-unet"} <= networks and len(networks) == 4  # + both Wan transformers
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r]
    assert {r["backend"] for r in rows} == {"torch", "onnxruntime"}
    for r in rows:  # parity against CPU eager: exact for eager itself, float32 close for ONNX Runtime
        assert r["latency_ms"] > 0 and r["max_abs_diff_vs_cpu_eager"] < (1e-6 if r["backend"] == "torch" else 1e-3)
