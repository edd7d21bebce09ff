"""The tokenizer bench's rate-distortion helpers (BD-rate, interpolation at a rate) on known curves."""
from __future__ import annotations

import numpy as np
import pytest

from m3cvcav.bench.tokenizer import bd_rate, interp_at, psnr


def _curve(scale: float) -> list[dict]:
    return [{"bpp": b * scale, "msssim": q} for b, q in ((0.05, 0.80), (0.1, 0.86), (0.2, 0.91), (0.4, 0.95))]


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_fifty_percent():
    assert bd_rate(_curve(1.0), _curve(1.0))[0] == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(_curve(1.0), _curve(0.5))[0] == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(_curve(1.0), _curve(2.0))[0] == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_without_overlap_is_none():
    low = [{"bpp": b, "msssim": q} for b, q in ((0.01, 0.5), (0.02, 0.6))]
    value, (lo, hi) = bd_rate(_curve(1.0), low)
    assert value is None and lo > hi


def test_interp_at_inside_and_outside_the_sweep():
    curve = _curve(1.0)
    assert interp_at(curve, 0.1, "msssim") == pytest.approx(0.86)
    assert 0.86 < interp_at(curve, 0.15, "msssim") < 0.91
    assert interp_at(curve, 0.01, "msssim") is None and interp_at(curve, 1.0, "msssim") is None


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == 99.0
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255.0 ** 2))
