"""The report: ``index.md`` + PNGs + ``results.json`` (every number) in the output folder, and the console tables."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from . import plots
from .evaluate import ClipResult

CROP_ORDER = ("x265", "svtav1")


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def draw(results: list[ClipResult], averaged: dict, profiles: list[str], out: Path) -> dict[str, list[str]]:
    """RD PNGs per clip and averaged, and crops per clip; returns the file names by kind."""
    files: dict[str, list[str]] = {"rd": [], "crops": []}
    for r in results:
        curves = {c: [(x.kbps, x.mean(), x.floor) for x in runs] for c, runs in r.runs.items() if runs}
        name = f"rd_{r.clip.name}.png"
        plots.rd_figure(curves, f"{r.clip.name} ({r.clip.width}x{r.clip.height}, {r.clip.frames} frames)", "kbps",
                        out / name)
        files["rd"].append(name)
        crop = _crop_panels(r, profiles)
        if crop:
            name = f"crops_{r.clip.name}.png"
            plots.crops(crop, out / name)
            files["crops"].append(name)
    curves = {c: [(row["bpp"], row["metrics"], row["floor_clips"] > 0) for row in rows] for c, rows in averaged.items()
              if rows}
    if curves:
        title = f"average over {len(results)} clips (baselines per target bpp, profiles per rate point)"
        plots.rd_figure(curves, title, "bits per pixel",
                        out / "rd_average.png")
        files["rd"].insert(0, "rd_average.png")
    return files


def _crop_panels(r: ClipResult, profiles: list[str]) -> list:
    anchor_codec = next((p for p in profiles if r.runs.get(p)), None) or ("x265" if r.runs.get("x265") else None)
    if anchor_codec is None:
        return []
    lowest = min((x.kbps for c in CROP_ORDER for x in r.runs.get(c, [])), default=None)
    # the anchor codec's point nearest to the baselines' lowest rate: as close to matched as the curves allow
    anchor = min(r.runs[anchor_codec], key=lambda x: abs(math.log(x.kbps / lowest)) if lowest else x.kbps)
    panels = [("source", r.source_mid)]
    for codec in (*CROP_ORDER, *profiles):
        runs = r.runs.get(codec)
        if runs:
            best = min(runs, key=lambda x: abs(math.log(x.kbps / anchor.kbps)))
            panels.append((f"{codec} {best.kbps:.1f} kbps", best.mid))
    return panels


def to_json(meta: dict, results: list[ClipResult], averaged: dict, bd: dict, closest: list, speed: dict,
            files: dict) -> dict:
    return {"meta": meta, "corpus": [asdict(r.clip) for r in results], "files": files, "closest": closest,
            "clips": {r.clip.name: {"source_warp_err": r.source_warp_err, "sampled_frames": r.sample,
                                    "failures": r.failures,
                                    "runs": {c: [x.to_json() for x in runs] for c, runs in r.runs.items()}}
                      for r in results},
            "average": averaged, "bd": bd, "speed": speed}


def write(out: Path, data: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(data, indent=1)), ("index.md", markdown(data))):
        tmp = out / (name + ".part")
        tmp.write_text(text)
        os.replace(tmp, out / name)


def average_table(data: dict) -> list[str]:
    metrics = sorted({m for rows in data["average"].values() for row in rows for m in row["metrics"]})
    lines = ["| codec | target | bpp | kbps | " + " | ".join(metrics) + " |",
             "|---" * (4 + len(metrics)) + "|"]
    for codec, rows in data["average"].items():
        for row in rows:
            floor = f" (floor on {row['floor_clips']})" if row["floor_clips"] else ""
            lines.append(f"| {codec} | {row['target']} | {_fmt(row['bpp'], 4)}{floor} | {_fmt(row['kbps'], 1)} | "
                         + " | ".join(_fmt(row["metrics"].get(m)) for m in metrics) + " |")
    return lines


def _defined(v: dict) -> bool:
    avg = v["on_average_curve_bpp"] or {}
    return v["mean_bd_rate_pct"] is not None or v["mean_bd_quality"] is not None or "bd_rate_pct" in avg \
        or "bd_quality" in avg


def bd_table(data: dict, only_defined: bool = False) -> list[str]:
    lines = ["| profile | vs | metric | mean BD-rate % (clips) | mean BD-quality (clips) | on average curve: "
             "BD-rate %, BD-quality, bpp range, quality range |", "|---|---|---|---|---|---|"]
    for prof, by_base in data["bd"].items():
        for base, by_metric in by_base.items():
            for metric, v in by_metric.items():
                if only_defined and not _defined(v):
                    continue
                avg = v["on_average_curve_bpp"] or {}
                rr = avg.get("rate_range")  # bpp: the averaged curve's x axis
                qr = avg.get("quality_range")
                cell = (f"{_fmt(avg.get('bd_rate_pct'), 1) if 'bd_rate_pct' in avg else avg.get('bd_rate_why', '–')}, "
                        f"{_fmt(avg.get('bd_quality')) if 'bd_quality' in avg else avg.get('bd_quality_why', '–')}, "
                        f"{'%.4f–%.4f' % tuple(rr) if rr else '–'}, "
                        f"{'%s–%s' % (_fmt(qr[0]), _fmt(qr[1])) if qr else '–'}")
                lines.append(f"| {prof} | {base} | {metric} | {_fmt(v['mean_bd_rate_pct'], 1)} "
                             f"({v['clips_with_bd_rate']}) | {_fmt(v['mean_bd_quality'])} "
                             f"({v['clips_with_bd_quality']}) | {cell} |")
    return lines


def closest_lines(data: dict) -> list[str]:
    metrics = sorted({m for c in data["closest"] for m in c["profile_point"]["metrics"]})
    lines = ["| profile point | baseline point | bpp (profile / baseline) | " + " | ".join(metrics) + " |",
             "|---" * (3 + len(metrics)) + "|"]
    for c in data["closest"]:
        p, b = c["profile_point"], c["baseline_point"]
        floor = " floor" if b["floor_clips"] else ""
        lines.append(f"| {c['profile']} {p['target']} | {c['baseline']} {b['target']}{floor} | "
                     f"{_fmt(p['bpp'], 4)} / {_fmt(b['bpp'], 4)} | "
                     + " | ".join(f"{_fmt(p['metrics'].get(m))} / {_fmt(b['metrics'].get(m))}" for m in metrics) + " |")
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
           f"corpus `{meta['corpus']}` ({len(data['corpus'])} clips); took {meta['seconds']:.0f} s.", "",
           "## Method", ""] + [f"- {line}" for line in meta["method"]] + ["", "## Corpus", "",
           "| clip | size | frames | fps | source | license | colour | sha256 | note |", "|---" * 9 + "|"]
    for c in data["corpus"]:
        out.append(f"| {c['name']} | {c['width']}x{c['height']} | {c['frames']} | {c['fps']} | {c['source']} | "
                   f"{c['license']} | {c['colour']} | `{c['sha256'][:16]}…` | {c['note']} |")
    out += ["", "## Metrics", "", "Computed: " + ", ".join(meta["metrics_computed"]) + ".", "", "Not computed:", ""]
    out += [f"- **{k}**: {v}" for k, v in meta["metrics_not_computed"].items()]
    out += ["", "## Codecs", ""] + [f"- **{k}**: {v}" for k, v in meta["codecs"].items()]
    out += ["", "## Averaged rate-distortion (mean over clips: baselines per target bpp, profiles per rate point)", ""]
    out += average_table(data)
    out += ["", "## BD-rate / BD-quality of each profile against each baseline", ""]
    out += bd_table(data) if data["bd"] else ["No profile under test produced results, so there is no BD to report."]
    out += ["", "Per-clip BD values with their overlapping kbps and quality ranges are in `results.json` (`bd`).", ""]
    if data["closest"]:
        out += ["## Nearest points in rate (averaged curves; profile / baseline)", "",
                "Where the curves do not overlap, this is the measured distance between them.", ""]
        out += closest_lines(data) + [""]
    out += [
            "## Speed and memory", ""] + speed_lines(data)
    out += ["", "## Plots", ""] + [f"![{f}]({f})" for f in data["files"]["rd"]]
    out += ["", "## Crops at matched bitrate (middle frame, centre crop)", ""]
    out += [f"![{f}]({f})" for f in data["files"]["crops"]]
    failures = {f"{clip}: {k}": v for clip, c in data["clips"].items() for k, v in c["failures"].items()}
    if failures:
        out += ["", "## Failures", ""] + [f"- {k}: {v}" for k, v in failures.items()]
    return "\n".join(out) + "\n"
