"""bench.rd envelope: the best baseline at each rate as one R-D curve, BD-rate and equal-rate gaps against it."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from m3cvcav.bench.rd import evaluate as ev
from m3cvcav.bench.rd import report
from m3cvcav.bench.rd.bdrate import compare
from m3cvcav.bench.rd.corpus import Clip
from m3cvcav.bench.rd.envelope import envelope, envelopes, gap

FULL = [(10.0, 0.80), (20.0, 0.85), (40.0, 0.88), (80.0, 0.90)]  # better at high rates
HALF = [(5.0, 0.78), (10.0, 0.83), (20.0, 0.86), (40.0, 0.87)]  # better at low rates: they cross at 20-40


def _at(points: list[tuple[float, float]], rate: float) -> float:
    rates, qs = zip(*sorted(points))
    return float(np.interp(math.log(rate), np.log(rates), qs))


def test_envelope_is_the_best_curve_at_each_rate_with_the_crossing():
    env = envelope({"x265": FULL, "x265@1/2": HALF})
    assert [(p["rate"], p["from"]) for p in env] == [
        (5.0, "x265@1/2"), (10.0, "x265@1/2"), (20.0, "x265@1/2"), (pytest.approx(20 * math.sqrt(2)), "x265"),
        (40.0, "x265"), (80.0, "x265")]
    assert env[3]["quality"] == pytest.approx(0.865)  # the lines meet half way (in log rate) from 20 to 40, x265 above
    pts = [(p["rate"], p["quality"]) for p in env]
    for rate in np.geomspace(5, 80, 40):  # the envelope is the pointwise best of the curves that reach the rate
        reach = [_at(c, rate) for c in (FULL, HALF) if c[0][0] <= rate <= c[-1][0]]
        assert _at(pts, rate) == pytest.approx(max(reach), abs=1e-12)


def test_envelope_is_strictly_increasing_and_keeps_a_lone_point():
    dip = [(10.0, 0.80), (20.0, 0.79), (40.0, 0.86)]  # more bits, lower quality: a bigger budget can spend less
    env = envelope({"svtav1": dip, "svtav1@1/4": [(100.0, 0.95)]})
    assert [(p["rate"], p["quality"]) for p in env] == [(10.0, 0.80), (40.0, 0.86), (100.0, 0.95)]
    assert env[-1]["from"] == "svtav1@1/4"
    assert envelope({"x264": []}) == []


def test_envelopes_per_metric_skip_lower_is_better_metrics():
    curves = {"x265": [(r, {"ms_ssim": q, "vmaf": 100 * q, "warp_err": 0.01}) for r, q in FULL],
              "x265@1/2": [(r, {"ms_ssim": q}) for r, q in HALF]}
    env = envelopes(curves)
    assert set(env) == {"ms_ssim", "vmaf"}
    assert {p["from"] for p in env["vmaf"]} == {"x265"} and len(env["ms_ssim"]) == 6


def test_gap_at_the_profile_points_inside_the_envelope():
    env = [(p["rate"], p["quality"]) for p in envelope({"x265": FULL, "x265@1/2": HALF})]
    g = gap(env, [(3.0, 0.5), (10.0, 0.84), (60.0, 0.88), (200.0, 0.99)])
    assert (g["points"], g["outside"]) == (2, 2)
    assert [p["rate"] for p in g["pairs"]] == [10.0, 60.0]
    assert g["pairs"][0]["diff"] == pytest.approx(0.01)
    assert g["pairs"][1]["diff"] == pytest.approx(0.88 - (0.88 + 0.02 * math.log(1.5) / math.log(2)))
    assert g["mean_diff"] == pytest.approx(np.mean([p["diff"] for p in g["pairs"]]))
    assert gap(env, [(1.0, 0.5)])["mean_diff"] is None


def test_bd_rate_against_the_envelope_is_defined():
    env = [(p["rate"], p["quality"]) for p in envelope({"x265": FULL, "x265@1/2": HALF})]
    cheaper = [(0.8 * r, q) for r, q in env]  # every envelope quality at 80% of its rate
    c = compare(env, cheaper)
    assert c["bd_rate_pct"] == pytest.approx(-20.0, abs=1e-6)


def _run(codec: str, kbps: float, ms_ssim: float) -> ev.Run:
    return ev.Run(codec, "p", [], 100, kbps, 0.01, False, 0.1, 0.1, 4, {"ms_ssim": [ms_ssim]}, {"moving": 0,
                                                                                                "frozen": 0})


def _clip_result() -> ev.ClipResult:
    clip = Clip("c", "c.y4m", 64, 36, "25/1", 4, "s", "l", "bt709 limited", "0" * 64, "r")
    r = ev.ClipResult(clip, 0.0, np.zeros((36, 64, 3), np.uint8), [0, 3])
    r.runs = {"x265": [_run("x265", k, q) for k, q in FULL], "x265@1/2": [_run("x265@1/2", k, q) for k, q in HALF],
              "lite": [_run("lite", 6.0, 0.82), _run("lite", 12.0, 0.86), _run("lite", 30.0, 0.90)]}
    r.envelope = envelopes({b: [(x.kbps, x.mean()) for x in r.runs[b]] for b in ("x265", "x265@1/2")})
    return r


def test_profiles_are_compared_with_the_envelope_first():
    r = _clip_result()
    averaged = {c: [{"kbps": x.kbps, "metrics": x.mean()} for x in runs] for c, runs in r.runs.items()}
    avg_env = ev.average_envelope(averaged, ["x265", "x265@1/2"], "kbps")
    out = ev.comparisons([r], ["lite"], ["x265", "x265@1/2"], averaged, "kbps", avg_env)
    assert list(out["lite"]) == ["envelope", "x265", "x265@1/2"]
    v = out["lite"]["envelope"]["ms_ssim"]
    at = v["per_clip"]["c"]["at_profile_points"]
    env_pts = [(p["rate"], p["quality"]) for p in r.envelope["ms_ssim"]]
    assert at["points"] == 3 and [p["diff"] for p in at["pairs"]] == pytest.approx(
        [q - _at(env_pts, k) for k, q in ((6.0, 0.82), (12.0, 0.86), (30.0, 0.90))])
    assert v["summary"]["kind"] == "bd_rate_pct" and v["summary"]["value"] < 0  # lite beats the envelope here
    assert v["on_average_curve"]["at_profile_points"]["mean_diff"] == pytest.approx(at["mean_diff"])


def test_report_lines_for_the_envelope():
    r = _clip_result()
    averaged = {c: [{"kbps": x.kbps, "metrics": x.mean()} for x in runs] for c, runs in r.runs.items()}
    avg_env = ev.average_envelope(averaged, ["x265", "x265@1/2"], "kbps")
    data = {"meta": {"ladder_unit": "kbps"}, "envelope": avg_env,
            "compare": ev.comparisons([r], ["lite"], ["x265", "x265@1/2"], averaged, "kbps", avg_env)}
    (comp,) = report.envelope_lines(data)[2:]
    assert comp == "| ms_ssim | x265@1/2 5.0–28.3 (0.780–0.865); x265 28.3–80.0 (0.865–0.900) |"
    clip_line, avg_line = report.envelope_gap_lines(data)[2:]
    assert clip_line.startswith("| lite | c | +0.") and "3 points (6.0: " in clip_line
    assert avg_line.startswith("| lite | averaged curve |")
    assert report.headline_lines(data)[2].startswith("| lite | envelope | ms_ssim | BD-rate ")


def test_rd_measures_reduced_baselines_and_their_envelope_on_a_user_folder(tmp_path):
    import json

    import cv2

    from m3cvcav.bench import rd
    from m3cvcav.bench.rd.color import rgb_to_yuv420
    from m3cvcav.bench.rd.video import write_y4m

    rng = np.random.default_rng(0)
    big = (cv2.GaussianBlur(rng.random((72, 200, 3)).astype(np.float32), (0, 0), 2) * 600 - 170).clip(0, 255)
    frames = [rgb_to_yuv420(np.ascontiguousarray(big[:, 4 * i: 4 * i + 128]).astype(np.uint8)) for i in range(6)]
    (tmp_path / "clips").mkdir()
    write_y4m(tmp_path / "clips" / "pan.y4m", frames, Fraction(25))
    out = tmp_path / "report"
    assert rd.main(["--corpus", str(tmp_path / "clips"), "--profiles", "", "--baselines", "x265,svtav1@1/2,x265@1/8",
                    "--kbps", "20,60,200", "--sample", "2", "--no-semantic", "--no-isolated", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    clip = data["clips"]["pan"]
    assert "x265@1/8" in clip["failures"] and "x265@1/8" not in clip["runs"]  # 16x8 is below x265's smallest picture
    assert "1/2 of the width and height" in data["meta"]["codecs"]["svtav1@1/2"]
    assert {p["codec"] for p in clip["crop"]["points"]} == {"x265", "svtav1@1/2"}
    for metric in ("ms_ssim", "vmaf", "psnr_y"):
        env = [(p["rate"], p["quality"]) for p in clip["envelope"][metric]]
        assert {p["from"] for p in clip["envelope"][metric]} <= {"x265", "svtav1@1/2"}
        assert all(b[1] > a[1] for a, b in zip(env, env[1:]))
        for codec in ("x265", "svtav1@1/2"):
            for run in clip["runs"][codec]:  # no baseline point lies above the envelope
                assert run["metrics"][metric] <= _at(env, run["kbps"]) + 1e-9
        assert data["envelope"][metric]
    assert "## The envelope" in (out / "index.md").read_text()
