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
          "warp_err": "warp error (MSE, lower better)", "vmaf": "VMAF", "clip_sim": "CLIP sim"}


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def rd_figure(curves: dict[str, list[tuple[float, dict[str, float], bool]]], title: str, xlabel: str,
              path: Path) -> None:
    """One panel per metric; ``curves``: codec → [(rate, metrics, floor)]. Floor points (baseline at max CRF, still
    above the target) are drawn hollow."""
    metrics = [m for m in HIGHER_IS_BETTER if any(m in p[1] for pts in curves.values() for p in pts)]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for codec, pts in curves.items():
            pts = sorted((p for p in pts if metric in p[1]), key=lambda p: p[0])
            if not pts:
                continue
            line, = ax.plot([p[0] for p in pts], [p[1][metric] for p in pts], "-o", label=codec, markersize=4)
            hollow = [p for p in pts if p[2]]
            if hollow:
                ax.plot([p[0] for p in hollow], [p[1][metric] for p in hollow], "o", mfc="white",
                        color=line.get_color(), markersize=7)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(LABELS.get(metric, metric), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def crops(panels: list[tuple[str, np.ndarray]], path: Path, size: tuple[int, int] = (384, 216)) -> None:
    """Side by side centre crops (RGB frames of one size) with a caption strip each; written as PNG."""
    h, w = panels[0][1].shape[:2]
    cw, ch = min(size[0], w), min(size[1], h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    tiles = []
    for label, rgb in panels:
        tile = np.full((ch + 22, cw, 3), 255, np.uint8)
        tile[22:] = rgb[y0:y0 + ch, x0:x0 + cw]
        cv2.putText(tile, label, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((ch + 22, 4, 3), 255, np.uint8))
    image = np.concatenate(tiles[:-1], axis=1)
    tmp = path.with_name(path.stem + ".part.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    tmp.replace(path)
