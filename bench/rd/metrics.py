"""Per-frame and per-clip quality metrics of a decoded clip against its source.

Computed: PSNR-Y (on the Y' plane), PSNR-RGB and MS-SSIM (pytorch-msssim, RGB, data range 255) after the clip's stated
Y'CbCr→RGB conversion, the lite semantic similarity (cosine of the lite profile's EfficientNet-Lite0 embeddings),
temporal consistency (flow-warping error: decoded frame t warped to t+1 with OpenCV DIS flow measured on the source,
MSE on [0,1] RGB over pixels that pass a forward-backward check), VMAF v0.6.1 and VMAF NEG on the luma plane
(vmaf-torch, in process: ``vmaf.py``), the frozen-frame count, and CLIP-sim when its weights are at hand.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from pytorch_msssim import ms_ssim

from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.quality import psnr
from m3cvcav.engines.lite import motion

from . import vmaf
from .color import yuv420_to_rgb

HIGHER_IS_BETTER = {"psnr_y": True, "psnr_rgb": True, "ms_ssim": True, "vmaf": True, "vmaf_neg": True,
                    "semantic": True, "warp_err": False, "clip_sim": True}
# Metrics read against the source's own value (a still or blurred output can beat the source): drawn with it, never
# headlined as a BD figure.
REFERENCE_RELATIVE = ("warp_err",)
# Frozen frame: the decoded frame equals its predecessor (mean |Δluma| < FROZEN_DECODED) while the source moves
# (mean |Δluma| > SOURCE_MOVES), both on 8-bit luma.
FROZEN_DECODED, SOURCE_MOVES = 0.3, 1.5
CLIP_MODEL = "openai/clip-vit-base-patch32"


def msssim_window(height: int, width: int) -> int:
    """Largest odd Gaussian window ≤ 11 that MS-SSIM's five scales allow at this size."""
    win = min(11, (min(height, width) - 1) // 16)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"MS-SSIM needs frames of at least 49 px per side, got {width}x{height}")
    return win


def msssim_frames(ref: list[np.ndarray], dist: list[np.ndarray], batch: int = 8) -> list[float]:
    win = msssim_window(*ref[0].shape[:2])
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(ref), batch):
            x = torch.from_numpy(np.stack(ref[i:i + batch])).permute(0, 3, 1, 2).float()
            y = torch.from_numpy(np.stack(dist[i:i + batch])).permute(0, 3, 1, 2).float()
            out += ms_ssim(x, y, data_range=255, size_average=False, win_size=win).tolist()
    return out


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 (x, y) of every pixel, built once per frame size (read-only)."""
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    grid.flags.writeable = False
    return grid


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at (x + flow_x, y + flow_y), bilinear."""
    grid = flow + _pixel_grid(*flow.shape[:2])
    return cv2.remap(img, grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def source_flows(lumas: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per consecutive pair (t, t+1): backward flow from t+1 to t and the mask of pixels it is reliable at."""
    dis = motion.dis("fast")
    out = []
    for a, b in zip(lumas, lumas[1:]):
        back = dis.calc(b, a, None)
        fwd = dis.calc(a, b, None)
        fwd_at = _warp(fwd, back)
        err = np.sum((back + fwd_at) ** 2, axis=-1)
        mask = err < 0.01 * (np.sum(back ** 2, -1) + np.sum(fwd_at ** 2, -1)) + 0.5
        out.append((back, mask))
    return out


def warp_errors(rgb: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Flow-warping error per frame pair (t, t+1) of ``rgb`` under the source's flow."""
    out = []
    for t, (back, mask) in enumerate(flows):
        warped = _warp(rgb[t].astype(np.float32) / 255.0, back)
        diff = np.sum((rgb[t + 1].astype(np.float32) / 255.0 - warped) ** 2, axis=-1) / 3.0
        out.append(float(diff[mask].mean()) if mask.any() else 0.0)
    return out


@dataclass
class Availability:
    """Which optional metrics can be computed here, and why not where they cannot."""

    not_computed: dict[str, str] = field(default_factory=dict)
    embed: Callable[[list[np.ndarray]], np.ndarray] | None = None
    clip_embed: Callable[[list[np.ndarray]], np.ndarray] | None = None
    vmaf: bool = False


def _lite_embedder():
    from m3cvcav.engines.registry import load_profile

    return load_profile("lite").engine("embedder").embed


def _clip_embedder():
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(CLIP_MODEL, "config.json"), str):
        raise LookupError(f"{CLIP_MODEL} is not in the local Hugging Face cache (no model downloads at run time)")
    from transformers import CLIPModel, CLIPProcessor
    model = CLIPModel.from_pretrained(CLIP_MODEL, local_files_only=True).eval()
    proc = CLIPProcessor.from_pretrained(CLIP_MODEL, local_files_only=True)

    def embed(frames: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            feats = model.get_image_features(**proc(images=list(frames), return_tensors="pt"))
        return torch.nn.functional.normalize(feats, dim=-1).numpy()

    return embed


def probe(semantic: bool = True) -> Availability:
    """Find what is at hand: the lite embedder, CLIP weights, vmaf-torch; LPIPS/DISTS are not shipped."""
    av_ = Availability()
    if semantic:
        try:
            av_.embed = _lite_embedder()
        except Exception as exc:  # any failure to build the engine means: not computed, say why
            av_.not_computed["semantic"] = f"lite embedder unavailable: {type(exc).__name__}: {exc}"
    else:
        av_.not_computed["semantic"] = "disabled with --no-semantic"
    try:
        av_.clip_embed = _clip_embedder()
    except Exception as exc:
        av_.not_computed["clip_sim"] = f"{type(exc).__name__}: {exc}"
    why = vmaf.missing()
    av_.vmaf = why is None
    if why:
        av_.not_computed["vmaf"] = av_.not_computed["vmaf_neg"] = why
    av_.not_computed["lpips"] = ("needs the lpips package and its AlexNet/VGG ImageNet weights, which are not "
                                 "installed (the project depends on neither lpips nor torchvision; no model downloads "
                                 "at run time)")
    av_.not_computed["dists"] = ("needs the DISTS VGG16 weights (DISTS_pytorch / piq), which are not present locally")
    return av_


def cosine_rows(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [float(x) for x in np.sum(a * b, axis=1)]


def sample_indices(n: int, k: int | None) -> list[int]:
    """``k`` frame indices spread evenly over ``n`` frames (first and last included); all when ``k`` is None."""
    if k is None or k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n // 2]


@dataclass
class Reference:
    """A source clip prepared once for all comparisons: RGB frames, flows, embeddings of the sampled frames (the
    costly metrics — MS-SSIM, VMAF, semantic, CLIP — run on ``sample``; PSNR, warp error and frozen frames on every
    frame; VMAF's motion feature comes from every source frame)."""

    planes: list[np.ndarray]
    color: ColorDescription
    path: str = ""
    sample: list[int] = field(default_factory=list)
    rgb: list[np.ndarray] = field(init=False)
    flows: list[tuple[np.ndarray, np.ndarray]] = field(init=False)
    emb: np.ndarray | None = None
    clip_emb: np.ndarray | None = None
    motion: np.ndarray | None = None  # VMAF motion2 of the sampled frames, from the whole clip
    warp_err: float = 0.0

    def __post_init__(self):
        h = self.planes[0].shape[0] * 2 // 3
        self.rgb = [yuv420_to_rgb(p, self.color) for p in self.planes]
        self.flows = source_flows([p[:h] for p in self.planes])
        self.warp_err = float(np.mean(warp_errors(self.rgb, self.flows))) if self.flows else 0.0

    def lumas(self) -> list[np.ndarray]:
        h = self.planes[0].shape[0] * 2 // 3
        return [p[:h] for p in self.planes]


def prepare(planes: list[np.ndarray], color: ColorDescription, avail: Availability, path: str = "",
            sample: int | None = None) -> Reference:
    ref = Reference(planes, color, path, sample_indices(len(planes), sample))
    picked = [ref.rgb[i] for i in ref.sample]
    if avail.embed is not None:
        ref.emb = np.asarray(avail.embed(picked), dtype=np.float32)
    if avail.clip_embed is not None:
        ref.clip_emb = avail.clip_embed(picked)
    if avail.vmaf:
        ref.motion = vmaf.motion2(ref.lumas())[ref.sample]
    return ref


def frozen_frames(src: list[np.ndarray], dec: list[np.ndarray]) -> dict[str, int]:
    """Frames t ≥ 1 where the source moves (mean |Δluma| > SOURCE_MOVES) and how many of them the decoded clip
    freezes (its mean |Δluma| < FROZEN_DECODED): ``{"moving": m, "frozen": f}`` over H×W luma planes."""
    moving = frozen = 0
    for t in range(1, min(len(src), len(dec))):
        if float(np.abs(src[t].astype(np.float32) - src[t - 1]).mean()) > SOURCE_MOVES:
            moving += 1
            frozen += float(np.abs(dec[t].astype(np.float32) - dec[t - 1]).mean()) < FROZEN_DECODED
    return {"moving": moving, "frozen": frozen}


def compare(ref: Reference, planes: list[np.ndarray], avail: Availability) -> dict[str, list[float]]:
    """Per-frame metrics of decoded ``planes`` against ``ref``: psnr_* per frame, warp_err per frame pair, ms_ssim /
    vmaf / vmaf_neg / semantic / clip_sim per frame of ``ref.sample``."""
    if len(planes) != len(ref.planes) or planes[0].shape != ref.planes[0].shape:
        raise ValueError(f"decoded clip is {len(planes)} frames of {planes[0].shape}, "
                         f"source {len(ref.planes)} of {ref.planes[0].shape}")
    h = ref.planes[0].shape[0] * 2 // 3
    rgb = [yuv420_to_rgb(p, ref.color) for p in planes]
    picked = [rgb[i] for i in ref.sample]
    out = {
        "psnr_y": [psnr(a[:h], b[:h]) for a, b in zip(ref.planes, planes)],
        "psnr_rgb": [psnr(a, b) for a, b in zip(ref.rgb, rgb)],
        "ms_ssim": msssim_frames([ref.rgb[i] for i in ref.sample], picked),
    }
    if ref.flows:
        out["warp_err"] = warp_errors(rgb, ref.flows)
    if avail.embed is not None and ref.emb is not None:
        out["semantic"] = cosine_rows(ref.emb, np.asarray(avail.embed(picked), dtype=np.float32))
    if avail.clip_embed is not None and ref.clip_emb is not None:
        out["clip_sim"] = cosine_rows(ref.clip_emb, avail.clip_embed(picked))
    if avail.vmaf and ref.motion is not None:
        out.update(vmaf.scores([ref.planes[i][:h] for i in ref.sample], [planes[i][:h] for i in ref.sample],
                               ref.motion))
    return out
