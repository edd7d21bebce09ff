"""RD curves (matplotlib, PNG) and side-by-side crops at matched bitrate."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import HIGHER_IS_BETTER  # noqa: E402

LABELS = {"psnr_y": "PSNR-Y (dB)", "psnr_rgb": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM", "semantic": "lite semantic sim",
          "warp_err": "warp error (MSE, lower better)", "vmaf": "VMAF v0.6.1", "vmaf_neg": "VMAF NEG",
          "clip_sim": "CLIP sim"}
# One color and marker per codec in every figure (profiles in warm colors, baselines in cool ones).
STYLES = {"lite": ("#d62728", "o"), "m3cvc": ("#ff7f0e", "P"), "x264": ("#1f77b4", "s"), "x265": ("#2ca02c", "^"),
          "svtav1": ("#9467bd", "D"), "vvc": ("#8c564b", "v"), "jpeg": ("#1f77b4", "s"), "webp": ("#17becf", "v"),
          "av1": ("#9467bd", "D"), "tokenizer": ("#d62728", "o")}
_SPARE = (("#e377c2", "X"), ("#7f7f7f", "h"), ("#bcbd22", "*"), ("#17becf", "p"))


LINES = {"": "-", "@1/2": "--", "@1/4": ":"}  # line style by picture size (NAME, NAME@1/2, NAME@1/4)


def style(codec: str) -> tuple[str, str]:
    """The codec's (color, marker), the same in every figure of every run; ``NAME@1/k`` (a reduced-size baseline)
    takes NAME's (its line style tells them apart: :func:`line_style`)."""
    base = codec.partition("@")[0]
    return STYLES.get(base) or _SPARE[sum(map(ord, base)) % len(_SPARE)]


def line_style(codec: str) -> str:
    """Solid at full size; dashed at 1/2, dotted at 1/4, dash-dot at other reduced sizes."""
    at, scale = codec.partition("@")[1:]
    return LINES.get(at + scale, "-.")


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


PANEL_ORDER = tuple(dict.fromkeys(("ms_ssim", "vmaf", "vmaf_neg", "psnr_y", "psnr_rgb", "semantic", "clip_sim",
                                   "warp_err", *HIGHER_IS_BETTER)))


def _log_rate_axis(ax) -> None:
    """Log rate axis with plain-number ticks at 1-2-5 steps (2, 5, 10, 20 ... not 2×10¹)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


ENVELOPE_STYLE = {"color": "black", "lw": 5, "alpha": 0.15, "solid_capstyle": "round"}


def rd_figure(curves: dict[str, list[tuple[float, dict[str, float], bool]]], title: str, xlabel: str,
              path: Path, source: dict[str, float] | None = None,
              envelope: dict[str, list[tuple[float, float]]] | None = None) -> None:
    """One panel per metric on a log-rate axis; ``curves``: codec → [(rate, metrics, floor)]. Floor points (a
    baseline still above its target at its lowest setting) are drawn hollow; ``source``: metric → the source's own
    value, drawn as a dashed line (for metrics like warp_err that an output can beat by blurring or freezing);
    ``envelope``: metric → the baselines' envelope [(rate, quality)], drawn as a broad grey band under the curves."""
    from matplotlib.lines import Line2D

    metrics = [m for m in PANEL_ORDER if any(m in p[1] for pts in curves.values() for p in pts)]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows + 0.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        if envelope and envelope.get(metric):
            ax.plot(*zip(*envelope[metric]), "-", **ENVELOPE_STYLE)
        for codec, pts in curves.items():
            pts = sorted((p for p in pts if metric in p[1]), key=lambda p: p[0])
            if not pts:
                continue
            color, marker = style(codec)
            ax.plot([p[0] for p in pts], [p[1][metric] for p in pts], line_style(codec), color=color, lw=1.3)
            for rate, vals, floor in pts:
                ax.plot([rate], [vals[metric]], marker, color=color, mfc="white" if floor else color,
                        markersize=7 if floor else 5, mew=1.3)
        if source and metric in source:
            ax.axhline(source[metric], color="black", ls="--", lw=1)
        _log_rate_axis(ax)
        ax.set_xlabel(xlabel)
        ax.set_title(LABELS.get(metric, metric), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles = [Line2D([], [], color=style(c)[0], marker=style(c)[1], ls=line_style(c), label=c) for c in curves]
    if envelope:
        handles.append(Line2D([], [], **ENVELOPE_STYLE, label="envelope (best baseline)"))
    handles.append(Line2D([], [], color="grey", marker="o", mfc="white", ls="", label="floor (cannot go lower)"))
    if source and any(m in source for m in metrics):
        handles.append(Line2D([], [], color="black", ls="--", label="source's own value"))
    ncol = min(len(handles), 6)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    legend_in = 0.3 + 0.3 * math.ceil(len(handles) / ncol)  # inches under the panels for the legend
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    _save(fig, path)


def crops(panels: list[tuple[str, np.ndarray]], path: Path, size: tuple[int, int] = (384, 216)) -> None:
    """Side by side centre crops (RGB frames of one size) with a caption strip each (labels may hold one line break);
    written as PNG."""
    h, w = panels[0][1].shape[:2]
    cw, ch = min(size[0], w), min(size[1], h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    strip = 36
    tiles = []
    for label, rgb in panels:
        tile = np.full((ch + strip, cw, 3), 255, np.uint8)
        tile[strip:] = rgb[y0:y0 + ch, x0:x0 + cw]
        for k, line in enumerate(label.split("\n")[:2]):
            cv2.putText(tile, line, (4, 14 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((ch + strip, 4, 3), 255, np.uint8))
    image = np.concatenate(tiles[:-1], axis=1)
    tmp = path.with_name(path.stem + ".part.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    tmp.replace(path)
