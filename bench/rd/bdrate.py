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


MIN_SHARE = 0.5  # a BD figure needs the overlap to cover at least this share of each curve's range
MIN_POINTS = 3  # ... and at least this many points on each curve


def _share(overlap: tuple[float, float] | None, values: np.ndarray) -> float:
    span = float(values.max() - values.min())
    if overlap is None:
        return 0.0
    return 1.0 if span == 0 else (overlap[1] - overlap[0]) / span


def equal_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> dict:
    """Quality difference (test − anchor) at equal rate, at every point of either curve that lies inside the other's
    rate range (the other curve linearly interpolated in log rate): the comparison the points support without
    fitting."""
    ra, qa = (np.array(v, float) for v in zip(*sorted(anchor)))
    rt, qt = (np.array(v, float) for v in zip(*sorted(test)))
    pairs = []
    for r, q in zip(rt, qt):
        if ra.min() <= r <= ra.max():
            pairs.append({"rate": float(r), "diff": float(q - np.interp(np.log(r), np.log(ra), qa))})
    for r, q in zip(ra, qa):
        if rt.min() <= r <= rt.max() and not any(p["rate"] == r for p in pairs):
            pairs.append({"rate": float(r), "diff": float(np.interp(np.log(r), np.log(rt), qt) - q)})
    pairs.sort(key=lambda p: p["rate"])
    return {"points": len(pairs), "mean_diff": float(np.mean([p["diff"] for p in pairs])) if pairs else None,
            "pairs": pairs}


def compare(anchor: list[tuple[float, float]], test: list[tuple[float, float]], higher_is_better: bool = True,
            unit: str = "kbps", min_share: float = MIN_SHARE, min_points: int = MIN_POINTS) -> dict:
    """:func:`bd` kept only where it is evidence: BD-rate when the quality overlap covers ≥ ``min_share`` of both
    curves' quality ranges, BD-quality when the log-rate overlap covers ≥ ``min_share`` of both curves' log-rate ranges,
    each with ≥ ``min_points`` points per curve; otherwise the reason. Always: the overlap shares and the equal-rate
    quality difference over the points that overlap (:func:`equal_rate`)."""
    out = bd(anchor, test, higher_is_better, unit)
    ra, qa = np.log([p[0] for p in anchor]), np.array([p[1] for p in anchor], float)
    rt, qt = np.log([p[0] for p in test]), np.array([p[1] for p in test], float)
    rate_ov, q_ov = _overlap(ra, rt), _overlap(qa, qt)
    out["rate_share"] = [_share(rate_ov, ra), _share(rate_ov, rt)]  # of the anchor's and the test's log-rate range
    out["quality_share"] = [_share(q_ov, qa), _share(q_ov, qt)]
    out["equal_rate"] = equal_rate(anchor, test)
    few = min(len(anchor), len(test)) < min_points
    for key, share_key in (("bd_rate_pct", "quality_share"), ("bd_quality", "rate_share")):
        if key not in out:
            continue
        if few:
            why = f"needs ≥ {min_points} points on each curve (anchor {len(anchor)}, test {len(test)})"
        elif min(out[share_key]) < min_share:
            what = "quality" if share_key == "quality_share" else "log-rate"
            why = (f"overlap covers {100 * out[share_key][0]:.0f}% / {100 * out[share_key][1]:.0f}% of the anchor's / "
                   f"test's {what} range (< {100 * min_share:.0f}%)")
        else:
            continue
        out[f"{key.replace('_pct', '')}_why"] = why
        out[f"{key}_unreliable"] = out.pop(key)
    return out
