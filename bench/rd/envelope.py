"""The envelope: at each rate, the best quality any baseline reaches (every codec at every picture size), as one R-D
curve per metric: the anchor for "what would a user pick instead of the profile under test"."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .metrics import HIGHER_IS_BETTER, REFERENCE_RELATIVE

Curve = tuple[np.ndarray, np.ndarray]  # log rates (increasing), qualities
METRICS = tuple(m for m, higher in HIGHER_IS_BETTER.items() if higher and m not in REFERENCE_RELATIVE)


def _curve(points: list[tuple[float, float]]) -> Curve:
    pts = sorted(points)
    return np.array([math.log(p[0]) for p in pts]), np.array([p[1] for p in pts], float)


def _covers(c: Curve, x: float) -> bool:
    return bool(c[0][0] <= x <= c[0][-1])


def _value(c: Curve, x: float) -> float:
    return float(np.interp(x, *c))


def _top(curves: dict[str, Curve], x: float) -> tuple[float, str]:
    """The best quality at log rate ``x`` over the curves that reach it, and whose it is."""
    return max((_value(c, x), name) for name, c in curves.items() if _covers(c, x))


def _crossings(curves: dict[str, Curve], grid: list[float]) -> dict[float, str]:
    """Log rates between grid points where two curves cross on top of the others (where the best curve changes), each
    with the curve that is best above it."""
    out = {}
    for a, b in zip(grid, grid[1:]):
        both = {n: c for n, c in curves.items() if _covers(c, a) and _covers(c, b)}
        for (n1, c1), (n2, c2) in combinations(both.items(), 2):
            da, db = _value(c1, a) - _value(c2, a), _value(c1, b) - _value(c2, b)
            if da * db < 0:
                x = a + (b - a) * da / (da - db)
                if _value(c1, x) >= _top(curves, x)[0] - 1e-12:
                    out[x] = n1 if db > 0 else n2
    return out


def envelope(curves: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """Upper envelope of ``curves`` (codec → [(rate, quality)], higher quality is better): each curve linear in log
    rate between its points, the pointwise best over the curves that reach a rate, sampled at every curve's points and
    where the best curve changes, then made increasing (a larger budget can always spend less, so a point no better
    than one at a lower rate is dropped). ``[{"rate", "quality", "from"}]`` by rate, quality strictly increasing;
    ``from``: the curve the point is on (at a crossing, the one that is best above it)."""
    lines = {name: _curve(pts) for name, pts in curves.items() if pts}
    rates = {math.log(r): r for pts in curves.values() for r, _ in pts}  # measured rates, kept exact
    grid = sorted(rates)
    crossings = _crossings(lines, grid)
    out: list[dict] = []
    for x in sorted({*grid, *crossings}):
        q, name = _top(lines, x)
        if not out or q > out[-1]["quality"]:
            out.append({"rate": rates.get(x, math.exp(x)), "quality": q, "from": crossings.get(x, name)})
    return out


def envelopes(curves: dict[str, list[tuple[float, dict[str, float]]]]) -> dict[str, list[dict]]:
    """Per metric of :data:`METRICS` that the curves have: the :func:`envelope` of ``curves`` (codec → [(rate,
    metrics)])."""
    out = {}
    for metric in METRICS:
        per_codec = {c: [(r, m[metric]) for r, m in pts if metric in m] for c, pts in curves.items()}
        env = envelope(per_codec)
        if env:
            out[metric] = env
    return out


def gap(env: list[tuple[float, float]], test: list[tuple[float, float]]) -> dict:
    """At each point of ``test`` inside the rate range of the envelope ``env`` (both [(rate, quality)]): its quality
    minus the envelope's at the same rate (linear in log rate); their mean, and how many points lie outside."""
    curve = _curve(env)
    pairs = [{"rate": r, "diff": q - _value(curve, math.log(r))}
             for r, q in sorted(test) if _covers(curve, math.log(r))]
    return {"points": len(pairs), "outside": len(test) - len(pairs), "pairs": pairs,
            "mean_diff": float(np.mean([p["diff"] for p in pairs])) if pairs else None}
