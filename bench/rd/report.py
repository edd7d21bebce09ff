"""The report: ``index.md`` + PNGs + ``results.json`` (every number) in the output folder, and the console tables."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from . import plots
from .evaluate import ClipResult

CROP_ORDER = ("x264", "x265", "svtav1", "vvc")  # then the profiles


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def _env_curves(envelope: dict[str, list[dict]]) -> dict[str, list[tuple[float, float]]]:
    return {m: [(p["rate"], p["quality"]) for p in pts] for m, pts in envelope.items()}


def draw(results: list[ClipResult], averaged: dict, profiles: list[str], out: Path, unit: str,
         avg_envelope: dict[str, list[dict]]) -> dict[str, list[str]]:
    """RD PNGs per clip and averaged (with the baselines' envelope), and crops per clip; returns the file names by
    kind."""
    files: dict[str, list[str]] = {"rd": [], "crops": []}
    for r in results:
        curves = {c: [(x.kbps, x.mean(), x.floor) for x in runs] for c, runs in r.runs.items() if runs}
        name = f"rd_{r.clip.name}.png"
        plots.rd_figure(curves, f"{r.clip.name} ({r.clip.width}x{r.clip.height}, {r.clip.frames} frames)", "kbps",
                        out / name, {"warp_err": r.source_warp_err}, _env_curves(r.envelope))
        files["rd"].append(name)
        crop = crop_panels(r)
        if crop:
            name = f"crops_{r.clip.name}.png"
            plots.crops(crop, out / name)
            files["crops"].append(name)
    curves = {c: [(row[unit], row["metrics"], row["floor_clips"] > 0) for row in rows]
              for c, rows in averaged.items() if rows}
    if curves and results:
        source = {"warp_err": sum(r.source_warp_err for r in results) / len(results)}
        title = (f"mean over {len(results)} clips per rung of the ladder (hollow: a floor on at least one clip)")
        plots.rd_figure(curves, title, "kbps" if unit == "kbps" else "bits per pixel", out / "rd_average.png", source,
                        _env_curves(avg_envelope))
        files["rd"].insert(0, "rd_average.png")
    return files


MATCH = 0.15  # a crop's rate within ±15% of the shared rate counts as matched


def crop_panels(r: ClipResult) -> list[tuple[str, "object"]]:
    """Source, then each codec at the clip's shared crop rate, labelled with its real kbps and its distance from the
    shared rate ('floor' where a baseline cannot go that low)."""
    if r.crop_kbps is None or not r.crops:
        return []
    panels = [(f"source\nshared rate {r.crop_kbps:.1f} kbps", r.source_mid)]
    order = {c: i for i, c in enumerate(CROP_ORDER)}
    for c in sorted(r.crops, key=lambda c: order.get(c.codec, len(order))):
        off = 100.0 * (c.kbps / r.crop_kbps - 1.0)
        note = (f"floor: cannot go lower ({off:+.0f}%)" if c.floor and off > 100 * MATCH else
                f"matched ({off:+.0f}%)" if abs(off) <= 100 * MATCH else f"nearest it gets ({off:+.0f}%)")
        panels.append((f"{c.codec} {c.kbps:.1f} kbps\n{note}", c.mid))
    return panels


def to_json(meta: dict, results: list[ClipResult], averaged: dict, compared: dict, closest: list, speed: dict,
            files: dict, rate_acc: dict, frozen: dict, avg_envelope: dict[str, list[dict]]) -> dict:
    return {"meta": meta, "corpus": [asdict(r.clip) for r in results], "files": files, "closest": closest,
            "clips": {r.clip.name: {"source_warp_err": r.source_warp_err, "sampled_frames": r.sample,
                                    "failures": r.failures, "rate_accuracy": r.rate_accuracy, "envelope": r.envelope,
                                    "crop": {"shared_kbps": r.crop_kbps, "points": [c.to_json() for c in r.crops]},
                                    "runs": {c: [x.to_json() for x in runs] for c, runs in r.runs.items()}}
                      for r in results},
            "average": averaged, "envelope": avg_envelope, "compare": compared, "rate_accuracy": rate_acc,
            "frozen": frozen, "speed": speed}


def write(out: Path, data: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(data, indent=1)), ("index.md", markdown(data))):
        tmp = out / (name + ".part")
        tmp.write_text(text)
        os.replace(tmp, out / name)


ORDER = ("ms_ssim", "vmaf", "vmaf_neg", "psnr_y", "psnr_rgb", "semantic", "clip_sim", "warp_err")


def _metrics(names) -> list[str]:
    return sorted(set(names), key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def _share(f: int, m: int) -> str:
    return f"{100.0 * f / m:.1f}% ({f}/{m})" if m else "– (source still)"


def average_table(data: dict) -> list[str]:
    metrics = _metrics(m for rows in data["average"].values() for row in rows for m in row["metrics"])
    lines = ["| codec | rung | kbps | bpp | frozen | " + " | ".join(metrics) + " |", "|---" * (5 + len(metrics)) + "|"]
    if "warp_err" in metrics and data["clips"]:
        src = sum(c["source_warp_err"] for c in data["clips"].values()) / len(data["clips"])
        lines.append("| source | – | – | – | – | " + " | ".join(_fmt(src) if m == "warp_err" else "–" for m in metrics)
                     + " |")
    for codec, rows in data["average"].items():
        for row in rows:
            floor = f" (floor on {row['floor_clips']})" if row["floor_clips"] else ""
            lines.append(f"| {codec} | {row['target']} | {_fmt(row['kbps'], 1)}{floor} | {_fmt(row['bpp'], 4)} | "
                         f"{_share(row['frozen'], row['moving'])} | "
                         + " | ".join(_fmt(row["metrics"].get(m)) for m in metrics) + " |")
    return lines


def _evidence(h: dict, per_clip: dict) -> tuple[str, str]:
    clips = f"{h['clips']} of {h['of']} clips ({', '.join(h['over'])})"
    why = {k: v.get("bd_rate_why") or v.get("why", "") for k, v in per_clip.items()}
    why_s = "; no BD-rate on " + "; ".join(f"{k}: {w}" for k, w in why.items() if w) if any(why.values()) else ""
    if h["kind"] == "bd_rate_pct":
        q, eq = h["quality_range"], h.get("equal_rate")
        also = (f"; at equal rate Δ {eq['value']:+.3g} over {eq['points']} points on {eq['clips']} of {h['of']} clips, "
                f"{eq['rate_range_kbps'][0]:.1f}–{eq['rate_range_kbps'][1]:.1f} kbps" if eq else "")
        return (f"BD-rate {h['value']:+.1f}%",
                f"mean over {clips}; quality {_fmt(q[0])}–{_fmt(q[1])}; overlap ≥ 50% of both curves, ≥ 3 points "
                f"each{also}{why_s}")
    if h["kind"] == "equal_rate_diff":
        lo, hi = h["rate_range_kbps"]
        return (f"Δ at equal rate {h['value']:+.3g}",
                f"mean over {h['points']} overlapping points on {clips}, {lo:.1f}–{hi:.1f} kbps{why_s}")
    return "no overlap", f"the curves share no rate range on any of {h['of']} clips: see the nearest points{why_s}"


def headline_lines(data: dict, metrics: tuple[str, ...] = ("ms_ssim", "vmaf", "vmaf_neg", "psnr_y")) -> list[str]:
    lines = ["| profile | vs | metric | figure | evidence |", "|---|---|---|---|---|"]
    for prof, by_base in data["compare"].items():
        for base, by_metric in by_base.items():
            for metric in metrics:
                if metric in by_metric:
                    fig, ev = _evidence(by_metric[metric]["summary"], by_metric[metric]["per_clip"])
                    lines.append(f"| {prof} | {base} | {metric} | {fig} | {ev} |")
    return lines


def _segments(points: list[dict]) -> list[dict]:
    """Consecutive envelope points from the same baseline, merged into one stretch that runs to the next stretch's
    first point: [{"from", "rates", "qualities"}]."""
    out: list[dict] = []
    for p in points:
        if out:
            out[-1]["rates"][1], out[-1]["qualities"][1] = p["rate"], p["quality"]
        if not out or out[-1]["from"] != p["from"]:
            out.append({"from": p["from"], "rates": [p["rate"]] * 2, "qualities": [p["quality"]] * 2})
    return out


def envelope_lines(data: dict, metrics: tuple[str, ...] = ("ms_ssim", "vmaf", "psnr_y")) -> list[str]:
    """Which baseline the averaged envelope comes from, over which rates, per metric."""
    unit = data["meta"]["ladder_unit"]
    lines = [f"| metric | best baseline: {unit} range (quality range) |", "|---|---|"]
    for metric in metrics:
        if metric in data["envelope"]:
            segs = [f"{s['from']} {_fmt(s['rates'][0], 1)}–{_fmt(s['rates'][1], 1)} "
                    f"({_fmt(s['qualities'][0])}–{_fmt(s['qualities'][1])})"
                    for s in _segments(data["envelope"][metric])]
            lines.append(f"| {metric} | {'; '.join(segs)} |")
    return lines


def _gap_cell(g: dict | None, digits: int) -> tuple[str, str]:
    if not g or not g["points"]:
        return "–", f"no point inside the envelope's rate range ({g['outside'] if g else 0} outside)"
    pts = ", ".join(f"{_fmt(p['rate'], 1)}: {p['diff']:+.{digits}f}" for p in g["pairs"])
    out = f"; {g['outside']} outside its rate range" if g["outside"] else ""
    return f"{g['mean_diff']:+.{digits}f}", f"{g['points']} points ({pts}){out}"


def envelope_gap_lines(data: dict, metric: str = "ms_ssim", digits: int = 4) -> list[str]:
    """Per profile and clip (and on the averaged curve): the profile's ``metric`` minus the envelope's at the same rate,
    at each profile point inside the envelope's rate range, and the mean."""
    lines = [f"| profile | clip | Δ {metric} at equal rate (mean) | at each profile point (rate: Δ) |",
             "|---|---|---|---|"]
    for prof, by_base in data["compare"].items():
        v = by_base.get("envelope", {}).get(metric)
        if not v:
            continue
        rows = [(clip, c.get("at_profile_points")) for clip, c in v["per_clip"].items()]
        rows.append(("averaged curve", (v["on_average_curve"] or {}).get("at_profile_points")))
        for clip, g in rows:
            mean, detail = _gap_cell(g, digits)
            lines.append(f"| {prof} | {clip} | {mean} | {detail} |")
    return lines


def _cmp_cell(v: dict | None) -> str:
    if not v:
        return "–"
    parts = []
    for key, label in (("bd_rate_pct", "BD-rate %"), ("bd_quality", "BD-q")):
        if key in v:
            parts.append(f"{label} {_fmt(v[key], 2)}")
        else:
            parts.append(f"{label}: {v.get(key.replace('_pct', '') + '_why', v.get('why', '–'))}")
    eq = v.get("equal_rate") or {}
    parts.append(f"Δ equal rate {_fmt(eq['mean_diff'])} ({eq['points']} pts)" if eq.get("points")
                 else "no rate overlap")
    parts.append("overlap share rate " + "/".join(f"{100 * x:.0f}%" for x in v.get("rate_share", []))
                 + ", quality " + "/".join(f"{100 * x:.0f}%" for x in v.get("quality_share", [])))
    return "; ".join(parts)


def compare_table(data: dict) -> list[str]:
    lines = ["| profile | vs | metric | clip | comparison |", "|---|---|---|---|---|"]
    for prof, by_base in data["compare"].items():
        for base, by_metric in by_base.items():
            for metric, v in by_metric.items():
                for clip, c in v["per_clip"].items():
                    lines.append(f"| {prof} | {base} | {metric} | {clip} | {_cmp_cell(c)} |")
                lines.append(f"| {prof} | {base} | {metric} | averaged curve | {_cmp_cell(v['on_average_curve'])} |")
    return lines


def closest_lines(data: dict) -> list[str]:
    metrics = _metrics(m for c in data["closest"] for m in c["profile_point"]["metrics"])
    lines = ["| profile point | baseline point | kbps (profile / baseline) | " + " | ".join(metrics) + " |",
             "|---" * (3 + len(metrics)) + "|"]
    for c in data["closest"]:
        p, b = c["profile_point"], c["baseline_point"]
        floor = " floor" if b["floor_clips"] else ""
        lines.append(f"| {c['profile']} {p['target']} | {c['baseline']} {b['target']}{floor} | "
                     f"{_fmt(p['kbps'], 1)} / {_fmt(b['kbps'], 1)} | "
                     + " | ".join(f"{_fmt(p['metrics'].get(m))} / {_fmt(b['metrics'].get(m))}" for m in metrics) + " |")
    return lines


def rate_lines(data: dict) -> list[str]:
    lines = ["| profile | -b:v target | target kbps | achieved kbps (mean) | mean error % | max abs error % | "
             "per clip kbps |", "|---|---|---|---|---|---|---|"]
    for prof, rows in data["rate_accuracy"].items():
        for row in rows:
            per = ", ".join(f"{k} {v:.1f}" for k, v in row["per_clip"].items())
            lines.append(f"| {prof} | {row['target']} | {_fmt(row['target_kbps'], 1)} | {_fmt(row['mean_kbps'], 1)} | "
                         f"{row['mean_error_pct']:+.1f} | {row['max_abs_error_pct']:.1f} | {per} |")
    return lines


def frozen_lines(data: dict) -> list[str]:
    lines = ["| codec | frozen / source-moving frames, all runs | per clip |", "|---|---|---|"]
    for codec, v in data["frozen"].items():
        per = ", ".join(f"{k} {_share(c['frozen'], c['moving'])}" for k, c in v["per_clip"].items())
        lines.append(f"| {codec} | {_share(v['frozen'], v['moving'])} | {per} |")
    return lines


def speed_lines(data: dict) -> list[str]:
    lines = ["| codec | runs | frames | encode fps | decode fps | encode × real time | decode × real time | "
             "peak RSS MB (isolated run) |", "|---|---|---|---|---|---|---|---|"]
    for codec, s in data["speed"].items():
        iso = s.get("isolated_run", {})
        rss = _fmt(iso.get("peak_rss_mb"), 0) if "peak_rss_mb" in iso else iso.get("why", "–")
        lines.append(f"| {codec} | {s['runs']} | {s['frames']} | {_fmt(s['encode_fps'], 1)} | "
                     f"{_fmt(s['decode_fps'], 1)} | "
                     f"{_fmt(s['encode_x_realtime'], 2)} | {_fmt(s['decode_x_realtime'], 2)} | {rss} |")
    return lines


def markdown(data: dict) -> str:
    meta = data["meta"]
    out = ["# m3cvcav rate-distortion report", "", f"Generated {meta['date']} on {meta['machine']}; "
           f"corpus `{meta['corpus']}` ({len(data['corpus'])} clips); ladder {', '.join(meta['ladder'])}"
           + (f" ({meta['ladder_unit']})" if meta["ladder_unit"] == "bpp" else "")
           + f"; took {meta['seconds']:.0f} s.", ""]
    if data["compare"]:
        out += ["## Headlines", "", "Each profile against the envelope (at each rate the best of every baseline at "
                "every picture size) and against each baseline, with the evidence behind each figure (rules in Method; "
                "every metric and clip in *Comparisons* below).", ""] + headline_lines(data) + [""]
        out += ["## MS-SSIM at equal rate minus the envelope's", "", "At each point of the profile inside the "
                "envelope's rate range, the profile's MS-SSIM minus the envelope's at the same rate (linear in log "
                "rate); positive: better than anything a user could pick among the baselines.", ""]
        out += envelope_gap_lines(data) + [""]
    if data["envelope"]:
        out += ["## The envelope", "", "Which baseline is best where, on the averaged curves (the per-clip envelopes "
                "are in `results.json`, `clips.<clip>.envelope`).", ""] + envelope_lines(data) + [""]
    out += ["## Method", ""] + [f"- {line}" for line in meta["method"]] + ["", "## Corpus", "",
            "| clip | size | frames | fps | source | license | color | sha256 | note |", "|---" * 9 + "|"]
    for c in data["corpus"]:
        out.append(f"| {c['name']} | {c['width']}x{c['height']} | {c['frames']} | {c['fps']} | {c['source']} | "
                   f"{c['license']} | {c['color']} | `{c['sha256'][:16]}…` | {c['note']} |")
    out += ["", "## Metrics", "", "Computed: " + ", ".join(meta["metrics_computed"])
            + f" (MS-SSIM / VMAF / semantic on {meta['sampled_frames_per_clip']} frames per clip).", "",
            "Not computed:", ""]
    out += [f"- **{k}**: {v}" for k, v in meta["metrics_not_computed"].items()]
    out += ["", "## Codecs", ""] + [f"- **{k}**: {v}" for k, v in meta["codecs"].items()]
    out += ["", "## Averaged rate-distortion (mean over clips, per rung of the ladder)", "",
            "`frozen`: decoded frames equal to their predecessor while the source moves, over source-moving frames. "
            "`warp_err` is lower-is-better and read against the source's own value (first row).", ""]
    out += average_table(data)
    if data["rate_accuracy"]:
        out += ["", "## Rate accuracy of each profile (-b:v target vs achieved: whole .m3cv file)", ""]
        out += rate_lines(data)
    out += ["", "## Frozen frames", "", "Frame t ≥ 1 is frozen when the decoded clip's mean |Δ luma| from t−1 is < 0.3 "
            "while the source's is > 1.5 (8-bit luma); counted over every run of the sweep.", ""] + frozen_lines(data)
    if data["compare"]:
        out += ["", "## Comparisons (every metric, per clip and on the averaged curve)", "",
                "Overlap shares: the part of the anchor's / the profile's range the two curves share. Values marked "
                "unreliable in `results.json` (`compare`) are kept there with the reason they are not shown.", ""]
        out += compare_table(data)
    else:
        out += ["", "No profile under test produced results, so there is no comparison to report."]
    if data["closest"]:
        out += ["", "## Nearest points in rate (averaged curves; profile / baseline)", "",
                "Where the curves do not overlap, this is the measured distance between them.", ""]
        out += closest_lines(data)
    out += ["", "## Speed and memory", ""] + speed_lines(data)
    out += ["", "## Plots", "", "One color and marker per codec in every figure (a reduced-size baseline: its "
            "codec's, on a dashed line at 1/2, dotted at 1/4); log-rate axis; broad grey band: the envelope; hollow "
            "markers: a baseline's floor; dashed black: the source's own warp error.", ""]
    out += [f"![{f}]({f})" for f in data["files"]["rd"]]
    out += ["", "## Crops at matched rates (middle frame, centre crop)", "",
            "Each codec's point nearest one shared rate, labelled with its real kbps and its distance from that rate; "
            "a baseline that cannot reach it is shown at its floor.", ""]
    out += [f"![{f}]({f})" for f in data["files"]["crops"]]
    failures = {f"{clip}: {k}": v for clip, c in data["clips"].items() for k, v in c["failures"].items()}
    if failures:
        out += ["", "## Failures", ""] + [f"- {k}: {v}" for k, v in failures.items()]
    return "\n".join(out) + "\n"
