"""The tokenizer bench's rate-distortion helpers (BD-rate through ``bench rd``'s, interpolation at a rate) on known
curves."""
from __future__ import annotations

import numpy as np
import pytest

from m3cvcav.bench.tokenizer import bd_rate, interp_at


def _curve(scale: float) -> list[dict]:
    return [{"bpp": b * scale, "msssim": q} for b, q in ((0.05, 0.80), (0.1, 0.86), (0.2, 0.91), (0.4, 0.95))]


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_fifty_percent():
    assert bd_rate(_curve(1.0), _curve(1.0))[0] == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(_curve(1.0), _curve(0.5))[0] == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(_curve(1.0), _curve(2.0))[0] == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_without_overlap_is_none_and_says_why():
    low = [{"bpp": b, "msssim": q} for b, q in ((0.01, 0.5), (0.02, 0.6))]
    value, why = bd_rate(_curve(1.0), low)
    assert value is None and "overlap" in why


def test_interp_at_inside_and_outside_the_sweep():
    curve = _curve(1.0)
    assert interp_at(curve, 0.1, "msssim") == pytest.approx(0.86)
    assert 0.86 < interp_at(curve, 0.15, "msssim") < 0.91
    assert interp_at(curve, 0.01, "msssim") is None and interp_at(curve, 1.0, "msssim") is None


def test_luma_is_bt709_limited_range():
    from m3cvcav.bench.tokenizer import luma

    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]]], np.uint8)
    assert luma(img).tolist() == [[16, 235, 63, 173]]  # BT.709 limited-range Y' of black, white, red, green


def test_image_vmaf_identical_and_degraded():
    pytest.importorskip("vmaf_torch", reason="vmaf-torch is in the bench extra")
    import cv2

    from m3cvcav.bench.tokenizer import image_vmaf

    rng = np.random.default_rng(0)
    img = (cv2.GaussianBlur(rng.random((96, 128, 3)).astype(np.float32), (0, 0), 2) * 900 - 320).clip(0, 255)
    img = img.astype(np.uint8)
    same = image_vmaf(img, img)
    assert same["vmaf"] == pytest.approx(97.428, abs=0.01) and same["vmaf_neg"] == pytest.approx(97.428, abs=0.01)
    blurred = image_vmaf(img, cv2.GaussianBlur(img, (0, 0), 2.0))
    assert blurred["vmaf"] < 80 and blurred["vmaf_neg"] < 80
