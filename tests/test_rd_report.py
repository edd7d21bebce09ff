"""bench.rd report pieces: crop labels at the shared rate, one style per codec, headline evidence lines."""
from __future__ import annotations

import numpy as np

from m3cvcav.bench.rd import plots, report
from m3cvcav.bench.rd.corpus import Clip
from m3cvcav.bench.rd.evaluate import ClipResult, CropPoint


def _result() -> ClipResult:
    clip = Clip("c", "c.y4m", 64, 48, "25/1", 10, "s", "l", "bt709 limited", "0" * 64, "r")
    img = np.zeros((48, 64, 3), np.uint8)
    r = ClipResult(clip, 0.0, img, [0, 9], crop_kbps=10.0)
    r.crops = [CropPoint("lite", "b:v=10k", 10.0, False, img), CropPoint("x265", "crf=40", 10.9, False, img),
               CropPoint("svtav1", "vbr=10k", 19.0, True, img), CropPoint("x264", "crf=20", 14.0, False, img)]
    return r


def test_crop_labels_say_matched_floor_or_how_far():
    labels = [label for label, _ in report.crop_panels(_result())]
    assert labels == ["source\nshared rate 10.0 kbps", "x264 14.0 kbps\nnearest it gets (+40%)",
                      "x265 10.9 kbps\nmatched (+9%)", "svtav1 19.0 kbps\nfloor: cannot go lower (+90%)",
                      "lite 10.0 kbps\nmatched (+0%)"]


def test_one_style_per_codec():
    codecs = ("lite", "m3cvc", "x264", "x265", "svtav1", "vvc")
    styles = [plots.style(c) for c in codecs]
    assert len(set(styles)) == len(codecs) and all(plots.style(c) == s for c, s in zip(codecs, styles))
    assert plots.style("mine") == plots.style("mine")


def test_headline_lines_carry_their_evidence():
    per_clip = {"a": {"bd_rate_why": "no quality overlap"}, "b": {"why": "needs at least two rate points"}}
    data = {"compare": {"lite": {"x265": {"ms_ssim": {"per_clip": per_clip, "summary": {
        "kind": "equal_rate_diff", "value": -0.05, "points": 4, "clips": 1, "of": 2, "over": ["a"],
        "rate_range_kbps": [5.0, 20.0]}}}}}}
    (line,) = report.headline_lines(data)[2:]
    assert "Δ at equal rate -0.05" in line and "4 overlapping points on 1 of 2 clips (a), 5.0–20.0 kbps" in line
    assert "a: no quality overlap" in line and "b: needs at least two rate points" in line
