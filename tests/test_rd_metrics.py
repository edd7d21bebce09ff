"""bench.rd metrics and BD-rate on synthetic inputs with known answers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from m3cvcav.bench.rd import metrics as mt
from m3cvcav.bench.rd.bdrate import bd
from m3cvcav.bench.rd.color import rgb_to_yuv420
from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.quality import PSNR_CAP, psnr

torch.set_num_threads(1)


def _texture(h: int = 96, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 3) * 255 * 3 - 255).clip(0, 255).astype(np.uint8)


def _moving(frames: int = 4, step: int = 2) -> list[np.ndarray]:
    big = _texture(96, 160 + step * frames)
    return [rgb_to_yuv420(np.ascontiguousarray(big[:, i * step: i * step + 160])) for i in range(frames)]


def test_psnr_known_values():
    a = np.zeros((8, 8), np.uint8)
    assert mt.psnr(a, a) == PSNR_CAP and mt.psnr is psnr  # the one PSNR (core.quality)
    assert mt.psnr(a, a + 1) == pytest.approx(10 * np.log10(255 ** 2), abs=1e-9)


def test_msssim_window_and_values():
    assert mt.msssim_window(288, 512) == 11
    assert mt.msssim_window(144, 256) == 7
    with pytest.raises(ValueError):
        mt.msssim_window(40, 64)
    img = _texture()
    noisy = np.clip(img.astype(int) + np.random.default_rng(1).integers(-40, 41, img.shape), 0, 255).astype(np.uint8)
    same, worse = mt.msssim_frames([img, img], [img, noisy])
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0 < worse < 0.95


def test_sample_indices_spread_and_include_ends():
    assert mt.sample_indices(50, 8)[0] == 0 and mt.sample_indices(50, 8)[-1] == 49
    assert len(mt.sample_indices(50, 8)) == 8
    assert mt.sample_indices(5, 8) == [0, 1, 2, 3, 4]
    assert mt.sample_indices(5, None) == [0, 1, 2, 3, 4]


def test_warp_error_small_for_the_source_and_larger_for_a_frozen_frame():
    planes = _moving()
    avail = mt.Availability()
    ref = mt.prepare(planes, ColorDescription(), avail, sample=2)
    assert ref.sample == [0, 3]
    frozen = [planes[0]] * len(planes)
    good = mt.compare(ref, planes, avail)
    bad = mt.compare(ref, frozen, avail)
    assert len(good["warp_err"]) == len(planes) - 1 and len(good["ms_ssim"]) == 2
    assert np.mean(good["warp_err"]) == pytest.approx(ref.warp_err)
    assert np.mean(bad["warp_err"]) > 5 * np.mean(good["warp_err"])
    assert good["psnr_y"] == [PSNR_CAP] * len(planes)
    assert min(bad["psnr_y"][1:]) < 30
    with pytest.raises(ValueError):
        mt.compare(ref, planes[:2], avail)


def test_semantic_uses_the_embedder_on_sampled_frames():
    planes = _moving()
    calls = []

    def embed(frames):
        calls.append(len(frames))
        v = np.stack([f.astype(np.float32).mean(axis=(0, 1)) + 1 for f in frames])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    avail = mt.Availability(embed=embed)
    ref = mt.prepare(planes, ColorDescription(), avail, sample=3)
    out = mt.compare(ref, planes, avail)
    assert calls == [3, 3]
    assert out["semantic"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_probe_says_why_optional_metrics_are_missing():
    avail = mt.probe(semantic=False)
    assert avail.not_computed["semantic"] == "disabled with --no-semantic"
    for name in ("lpips", "dists"):
        assert "weights" in avail.not_computed[name]
    assert ("vmaf" in avail.not_computed) != avail.vmaf and ("vmaf_neg" in avail.not_computed) != avail.vmaf


def test_bd_rate_half_the_bits_is_minus_fifty_percent():
    anchor = [(10, 30), (20, 33), (40, 36), (80, 39)]
    test = [(5, 30), (10, 33), (20, 36), (40, 39)]
    out = bd(anchor, test)
    assert out["bd_rate_pct"] == pytest.approx(-50.0, abs=1e-6)
    assert out["bd_quality"] == pytest.approx(3.0, abs=1e-6)
    assert out["rate_range"] == pytest.approx([10, 40])
    assert out["quality_range"] == pytest.approx([30, 39])
    assert bd(test, anchor)["bd_rate_pct"] == pytest.approx(100.0, abs=1e-6)


def test_bd_error_metric_sign_and_reasons():
    out = bd([(10, 0.1), (20, 0.05), (40, 0.02)], [(10, 0.05), (20, 0.02), (40, 0.01)], higher_is_better=False)
    assert out["bd_rate_pct"] < 0 and out["bd_quality"] < 0
    far = bd([(10, 30), (20, 33)], [(1000, 50), (2000, 60)])
    assert "no rate overlap" in far["bd_quality_why"] and "no quality overlap" in far["bd_rate_why"]
    bumpy = bd([(10, 30), (20, 33), (40, 32)], [(10, 31), (20, 34)])
    assert "monotonic" in bumpy["bd_rate_why"] and "bd_quality" in bumpy
    assert "at least two" in bd([(10, 30)], [(10, 31), (20, 33)])["why"]


def test_compare_gives_bd_only_with_enough_overlap_and_points():
    from m3cvcav.bench.rd.bdrate import compare

    anchor = [(10, 30), (20, 33), (40, 36), (80, 39)]
    good = compare(anchor, [(5, 30), (10, 33), (20, 36), (40, 39)])
    assert good["bd_rate_pct"] == pytest.approx(-50.0, abs=1e-6) and good["quality_share"] == [1.0, 1.0]
    assert good["equal_rate"]["mean_diff"] == pytest.approx(3.0) and good["equal_rate"]["points"] == 3
    two = compare(anchor, [(10, 33), (20, 36)])
    assert "bd_rate_pct" not in two and "≥ 3 points" in two["bd_rate_why"] and "bd_rate_pct_unreliable" in two
    sliver = compare(anchor, [(60, 38), (120, 41), (240, 44)])  # shares 38–39 dB of a 30–39 dB curve
    assert "bd_rate_pct" not in sliver and "< 50%" in sliver["bd_rate_why"]
    # equal rate: the test point at 60 kbps against the anchor interpolated in log rate, the anchor's 80 kbps point
    assert [p["rate"] for p in sliver["equal_rate"]["pairs"]] == [60, 80]
    assert sliver["equal_rate"]["pairs"][0]["diff"] == pytest.approx(38 - (36 + 3 * np.log(1.5) / np.log(2)))


def test_headline_prefers_bd_then_equal_rate_and_names_its_clips():
    from m3cvcav.bench.rd.bdrate import compare
    from m3cvcav.bench.rd.evaluate import headline

    anchor = [(10, 30), (20, 33), (40, 36), (80, 39)]
    bd_clip = compare(anchor, [(5, 30), (10, 33), (20, 36), (40, 39)])
    eq_clip = compare(anchor, [(60, 38), (120, 41), (240, 44)])
    far = compare(anchor, [(500, 45), (1000, 46), (2000, 47)])
    h = headline({"a": bd_clip, "b": eq_clip, "c": far}, 3)
    assert (h["kind"], h["clips"], h["of"], h["over"]) == ("bd_rate_pct", 1, 3, ["a"])
    h = headline({"b": eq_clip, "c": far}, 3)
    assert h["kind"] == "equal_rate_diff" and h["over"] == ["b"] and h["points"] == 2
    assert h["rate_range_kbps"] == [60, 80]
    assert headline({"c": far}, 3) == {"kind": "no_overlap", "value": None, "clips": 0, "of": 3, "over": []}
    both = headline({"a": bd_clip, "b": eq_clip}, 2)
    assert both["kind"] == "bd_rate_pct" and both["equal_rate"]["over"] == ["a", "b"]
