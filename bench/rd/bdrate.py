"""BD-rate and BD-quality (PyPI ``bjontegaard``, PCHIP) with the overlapping ranges they integrate over."""
from __future__ import annotations

import math
import warnings

import bjontegaard
import numpy as np


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    return (float(lo), float(hi)) if hi > lo else None


def _monotone(rates: np.ndarray, quality: np.ndarray) -> bool:
    order = np.argsort(rates)
    return bool(np.all(np.diff(quality[order]) > 0))


def bd(anchor: list[tuple[float, float]], test: list[tuple[float, float]], higher_is_better: bool = True,
       unit: str = "kbps") -> dict:
    """BD of ``test`` against ``anchor``, each a list of (kbps, quality). ``bd_rate_pct`` < 0: test needs fewer bits
    for the same quality; ``bd_quality``: mean (test − anchor) in the metric's units over the rate overlap (positive is
    better for higher-is-better metrics, negative for error metrics). ``rate_range`` (in ``unit``) / ``quality_range``:
    the intervals BD-quality / BD-rate integrate over; ``*_why`` says why one is not defined."""
    out: dict = {"anchor_points": len(anchor), "test_points": len(test)}
    if len(anchor) < 2 or len(test) < 2:
        return {**out, "why": "needs at least two rate points on each curve"}
    sign = 1.0 if higher_is_better else -1.0
    ra, qa = np.array([p[0] for p in anchor]), sign * np.array([p[1] for p in anchor])
    rt, qt = np.array([p[0] for p in test]), sign * np.array([p[1] for p in test])
    ia, it = np.argsort(ra), np.argsort(rt)
    ra, qa, rt, qt = ra[ia], qa[ia], rt[it], qt[it]
    rate_range = _overlap(np.log(ra), np.log(rt))
    q_range = _overlap(qa, qt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rate_range is None:
            out["bd_quality_why"] = (f"no rate overlap (anchor {ra.min():.3g}–{ra.max():.3g} {unit}, "
                                     f"test {rt.min():.3g}–{rt.max():.3g} {unit})")
        else:
            out["rate_range"] = [math.exp(rate_range[0]), math.exp(rate_range[1])]
            out["bd_quality"] = sign * float(bjontegaard.bd_psnr(ra, qa, rt, qt, method="pchip",
                                                                require_matching_points=False))
        if q_range is None:
            out["bd_rate_why"] = "no quality overlap"
        elif not (_monotone(ra, qa) and _monotone(rt, qt)):
            out["bd_rate_why"] = "quality not monotonic in rate"
        else:
            out["quality_range"] = sorted([sign * q_range[0], sign * q_range[1]])
            out["bd_rate_pct"] = float(bjontegaard.bd_rate(ra, qa, rt, qt, method="pchip",
                                                           require_matching_points=False))
    return out
