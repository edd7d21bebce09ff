"""Training of the lite enhancer (``python -m m3cvcav train enhancer``); decode never imports this module.

Pairs are made by the codec itself: segments of consecutive source frames at a display size, area-downscaled to a coded
size and coded by the AV1 base (``bitstream.av1.encode``/``decode``) at the scales and CRFs the encoder picks (the -q
ladder of ``filters.ratecontrol`` with CRF jitter, and the -b:v scales with CRFs 30..60), against the source frames.
The loss is what the encoder measures: 1 − MS-SSIM on BT.709 luma (``core.quality``'s definition, differentiable)
plus 0.5 · L1 on luma, computed on the full picture at the display size after the decoder's bicubic upscales.

Held out (never trained on, used by ``bench enhancer`` and the model card): the Sintel frames, vtest.avi from 60 s on,
and a synthetic pan over mate_Garden.jpg.
"""
from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from m3cvcav.bitstream import av1
from m3cvcav.core.errors import UsageError

from .enhancer_net import EnhancerNet, NetConfig

MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media"
BITRATE_SCALES = (1 / 8, 3 / 16, 1 / 4, 5 / 16, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1.0)  # filters.base.SCALES
HELD_OUT = ("sintel frames 0016-0025", "vtest.avi from 60 s", "mate_Garden.jpg pan")
HELD_OUT_PHOTOS = ("mate_Garden.jpg",)
VTEST_SPLIT = 600  # vtest frames (10 fps) before this are training data, after it held out
SEGMENT = 6  # frames a training segment


def media_root(root: Path | None = None) -> Path:
    root = Path(root) if root else MEDIA
    if not (root / "clips").is_dir():
        raise UsageError(f"no shared media at {root}: pass --media (see docs/models/enhancer.md)")
    return root


def read_clip(path: Path, start: int = 0, count: int | None = None) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i < start:
                continue
            if count is not None and len(frames) >= count:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def pan(photo: np.ndarray, size: tuple[int, int], frames: int, rng: random.Random) -> list[np.ndarray]:
    """``frames`` crops of ``size`` (width, height) moving over ``photo`` (synthetic camera motion, 1-4 px a frame)."""
    w, h = size
    ph, pw = photo.shape[:2]
    if pw < w or ph < h:
        f = max(w / pw, h / ph) * 1.01
        photo = cv2.resize(photo, (math.ceil(pw * f), math.ceil(ph * f)), interpolation=cv2.INTER_CUBIC)
        ph, pw = photo.shape[:2]
    dx, dy = rng.uniform(-4, 4), rng.uniform(-2, 2)
    x0 = rng.uniform(max(0, -dx * frames), max(0, pw - w - max(0, dx) * frames))
    y0 = rng.uniform(max(0, -dy * frames), max(0, ph - h - max(0, dy) * frames))
    out = []
    for i in range(frames):
        x = int(min(max(x0 + dx * i, 0), pw - w))
        y = int(min(max(y0 + dy * i, 0), ph - h))
        out.append(np.ascontiguousarray(photo[y:y + h, x:x + w]))
    return out


def display(frames: list[np.ndarray], rng: random.Random) -> list[np.ndarray]:
    """The segment at a display size: area-downscaled to 384-640 px wide, or a native 512×288 crop."""
    h, w = frames[0].shape[:2]
    if rng.random() < 0.35 and w >= 512 and h >= 288:
        x, y = rng.randrange(0, w - 512 + 1), rng.randrange(0, h - 288 + 1)
        return [np.ascontiguousarray(f[y:y + 288, x:x + 512]) for f in frames]
    width = rng.choice((384, 448, 512, 576, 640))
    width = min(width, w - w % 2)
    height = av1.even(h * width / w, h)
    return [av1.downscale(f, (width, height)) for f in frames]


def pick_level(rng: random.Random, ladder: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(scale, crf) as the encoder picks them: 60 % a rung of ``ladder`` (the -q ladder's (scale, CRF) rungs, CRF
    ± 2), 40 % a -b:v coded size (``filters.base.SCALES``) with a CRF in 45..63."""
    if rng.random() < 0.6:
        scale, crf = ladder[rng.randrange(0, len(ladder))]
        return scale, min(av1.CRF_RANGE[1], crf + rng.uniform(-2, 2))
    return rng.choice(BITRATE_SCALES), rng.uniform(45, 63)


def code(frames: list[np.ndarray], scale: float, crf: float) -> list[np.ndarray]:
    """The decoded base pictures of ``frames`` coded at ``scale`` of their size and ``crf``."""
    h, w = frames[0].shape[:2]
    size = av1.coded_size(w, h, scale)
    return av1.decode(av1.encode(frames, size, 25, crf))


@dataclass
class Segment:
    name: str
    coded: np.ndarray  # (n, h, w, 3) uint8, the base pictures
    source: np.ndarray  # (n, H, W, 3) uint8, at the display size
    scale: float
    crf: float


def training_sources(root: Path, rng: random.Random) -> list[tuple[str, list[np.ndarray]]]:
    """Raw training segments (SEGMENT frames each at the source size): BBB, vtest before 60 s, photo pans."""
    out = []
    bbb = read_clip(root / "clips" / "bigbuckbunny.mp4")
    for start in range(0, len(bbb) - SEGMENT + 1, SEGMENT):
        out.append((f"bbb@{start}", bbb[start:start + SEGMENT]))
    vtest = read_clip(root / "clips" / "vtest.avi", 0, VTEST_SPLIT)
    for start in range(0, len(vtest) - SEGMENT + 1, 2 * SEGMENT):
        out.append((f"vtest@{start}", vtest[start:start + SEGMENT]))
    photos = sorted(p for p in (root / "photos").iterdir()
                    if p.suffix in (".png", ".jpg") and p.name not in HELD_OUT_PHOTOS)
    for p in photos:
        image = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ph, pw = image.shape[:2]
        for k in range(4):
            f = rng.uniform(0.35, 1.0) * min(1.0, 1280 / pw)  # photos at several sizes, none over 1280 wide
            small = av1.downscale(image, (max(64, int(pw * f)), max(64, int(ph * f))))
            out.append((f"{p.stem}#{k}", pan(small, (min(640, small.shape[1]), min(360, small.shape[0])), SEGMENT,
                                               rng)))
    return out


def held_out_sources(root: Path) -> list[tuple[str, list[np.ndarray]]]:
    """The held-out clips at their display sizes: Sintel (1024×436), vtest from 60 s (768×576 → 512×384), a pan over
    mate_Garden.jpg (640×360)."""
    sintel = sorted((root / "frames" / "sintel").glob("frame_*.png"))
    out = [("sintel", [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in sintel])]
    vtest = read_clip(root / "clips" / "vtest.avi", VTEST_SPLIT + 50, 10)
    out.append(("vtest-tail", [av1.downscale(f, (512, 384)) for f in vtest]))
    garden = cv2.cvtColor(cv2.imread(str(root / "photos" / "mate_Garden.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    garden = av1.downscale(garden, (1280, garden.shape[0] * 1280 // garden.shape[1]))
    out.append(("garden-pan", pan(garden, (640, 360), 10, random.Random(7))))
    return out


def build_pool(root: Path, seed: int, ladder: Sequence[tuple[float, float]], log=print) -> list[Segment]:
    rng = random.Random(seed)
    pool = []
    t0 = time.perf_counter()
    for name, frames in training_sources(root, rng):
        for _ in range(3 if name.startswith("bbb") else 1):
            shown = display(frames, rng)
            scale, crf = pick_level(rng, ladder)
            coded = code(shown, scale, crf)
            pool.append(Segment(name, np.stack(coded), np.stack(shown), scale, crf))
    log(f"pool: {len(pool)} segments of {SEGMENT} frames coded in {time.perf_counter() - t0:.0f} s")
    return pool


def save_pool(pool: list[Segment], path: Path) -> None:
    arrays = {}
    meta = []
    for i, s in enumerate(pool):
        arrays[f"c{i}"], arrays[f"s{i}"] = s.coded, s.source
        meta.append([s.name, s.scale, s.crf])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def load_pool(path: Path) -> list[Segment]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return [Segment(name, z[f"c{i}"], z[f"s{i}"], scale, crf) for i, (name, scale, crf) in enumerate(meta)]


# ---------------------------------------------------------------- loss: core.quality's MS-SSIM, differentiable

_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_LUMA = (0.2126, 0.7152, 0.0722)


def _gauss(device) -> torch.Tensor:
    x = torch.arange(11, dtype=torch.float32, device=device) - 5
    g = torch.exp(-x * x / (2 * 1.5 ** 2))
    return g / g.sum()


@functools.lru_cache(maxsize=256)
def _axis_matrix(kind: str, n: int) -> torch.Tensor:
    """One axis of the Gaussian blur ("blur", (n, n)) or of cv2.pyrDown ("down", (ceil(n/2), n)) with reflected
    borders, as a matrix: filters as matrix products are far faster than 1-channel convolutions on the CPU."""
    k = _gauss("cpu") if kind == "blur" else torch.tensor([1, 4, 6, 4, 1], dtype=torch.float32) / 16
    eye = torch.eye(n).view(n, 1, n)
    pad = k.numel() // 2
    cols = F.conv1d(F.pad(eye, (pad, pad), mode="reflect"), k.view(1, 1, -1))[:, 0]  # (n in, n out)
    out = cols.T.contiguous()
    return out if kind == "blur" else out[::2].contiguous()


def _apply(kind: str, x: torch.Tensor) -> torch.Tensor:
    rows = _axis_matrix(kind, x.shape[-2]).to(x.device, x.dtype)
    cols = _axis_matrix(kind, x.shape[-1]).to(x.device, x.dtype)
    return rows @ x @ cols.T


def _blur(x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
    return _apply("blur", x)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _apply("down", x)


def luma(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-picture MS-SSIM (N,) of two luma batches (N, 1, H, W) in 0..255, as ``core.quality.ms_ssim``."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gauss(a.device)
    n = a.shape[0]
    scales = max(1, min(5, int(math.log2(max(min(a.shape[-2:]) / 11, 1))) + 1))
    weights = torch.tensor(_WEIGHTS[:scales], dtype=a.dtype, device=a.device)
    weights = weights / weights.sum()
    value = torch.ones(n, dtype=a.dtype, device=a.device)
    for i in range(scales):
        mu_a, mu_b, aa, bb, ab = _blur(torch.cat([a, b, a * a, b * b, a * b]), g).split(n)  # one filter call
        var_a, var_b, cov = aa - mu_a * mu_a, bb - mu_b * mu_b, ab - mu_a * mu_b
        cs = (2 * cov + c2) / (var_a + var_b + c2)
        if i == scales - 1:
            term = ((2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1) * cs).mean((1, 2, 3))
        else:
            term = cs.mean((1, 2, 3))
        value = value * term.clamp_min(1e-6) ** weights[i]
        if i < scales - 1:
            a, b = _pyr_down(torch.cat([a, b])).split(n)
    return value


def loss_fn(out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean MS-SSIM) of luma pictures against luma targets, both (N, 1, H, W) in 0..255."""
    score = ms_ssim(target, out)
    return (1 - score).mean() + 0.5 * (out - target).abs().mean() / 255, score.mean()


# ---------------------------------------------------------------- training

@dataclass
class TrainOptions:
    out: Path = Path("runs/enhancer")
    steps: int = 8000
    batch: int = 3  # frames of one segment a step
    lr: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    resume: bool = False
    ckpt_every: float = 120.0
    media: Path | None = None
    cfg: NetConfig = field(default_factory=NetConfig)
    pool: list[Segment] | None = None  # given pairs (tests); else built from the media and cached in OUT/pool.npz
    # The (scale, CRF) rungs the pool's pairs are coded at, 60 % of them: the encoder's -q ladder, given by the caller
    # (the train command: filters.ratecontrol.LEVELS 0..12), as training code does not import the encoder.
    ladder: tuple[tuple[float, float], ...] = ()
    export: Path | None = None  # write the shipped weight file here at every checkpoint and at the end


@functools.lru_cache(maxsize=512)
def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in): torch's (= OpenCV's) bicubic resize along one axis as a matrix (fast backward on the CPU)."""
    eye = torch.eye(n_in).view(n_in, 1, n_in, 1)
    return F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=False)[:, 0, :, 0].T.contiguous()


def upscale_crop(r: torch.Tensor, size: tuple[int, int], crop: tuple[int, int, int, int]) -> torch.Tensor:
    """The window ``crop`` (x, y, w, h) of ``r`` (N, C, h, w) bicubically resized to ``size`` (width, height)."""
    cx, cy, cw, ch = crop
    rows = _resize_matrix(r.shape[-2], size[1])[cy:cy + ch].to(r.device)
    cols = _resize_matrix(r.shape[-1], size[0])[cx:cx + cw].to(r.device)
    return rows @ r @ cols.T


CROP = 256  # the loss is taken on a random CROP × CROP window of the display picture (the whole when smaller)


def _batch(seg: Segment, idx: list[int], device: str, rng: random.Random
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """(coded pictures (N, 3, h, w) in [0, 1], bicubic luma (N, 1, ch, cw) and source luma of the crop, both in
    0..255, the crop (x, y, cw, ch))."""
    x = torch.from_numpy(seg.coded[idx]).permute(0, 3, 1, 2).float().div(255).to(device)
    H, W = seg.source.shape[1:3]
    cw, ch = min(W, CROP), min(H, CROP)
    cx, cy = rng.randrange(W - cw + 1), rng.randrange(H - ch + 1)
    y = torch.from_numpy(seg.source[idx, cy:cy + ch, cx:cx + cw]).permute(0, 3, 1, 2).float().to(device)
    with torch.no_grad():
        base = F.interpolate(luma(x) * 255, size=(H, W), mode="bicubic", align_corners=False)
    return x, base[..., cy:cy + ch, cx:cx + cw], luma(y), (cx, cy, cw, ch)


def _lr(opts: TrainOptions, step: int) -> float:
    warm = min(200, opts.steps // 10 + 1)
    if step < warm:
        return opts.lr * (step + 1) / warm
    t = (step - warm) / max(1, opts.steps - warm)
    return opts.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(opts: TrainOptions, log=print) -> Path:
    """Train (or resume) and return the checkpoint path (OUT/ckpt.pt)."""
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    if opts.device == "cpu" and opts.threads:
        torch.set_num_threads(opts.threads)
    opts.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = opts.out / "ckpt.pt"
    pool = opts.pool
    if pool is None:
        cached = opts.out / "pool.npz"
        if cached.exists():
            pool = load_pool(cached)
        else:
            if not opts.ladder:
                raise UsageError("train enhancer: building the training pairs needs the quality ladder "
                                 "(TrainOptions.ladder)")
            pool = build_pool(media_root(opts.media), opts.seed, opts.ladder, log)
            save_pool(pool, cached)
    net = EnhancerNet(opts.cfg).to(opts.device)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
    step, rng_state = 0, None
    if opts.resume and not ckpt_path.exists():
        raise UsageError(f"--resume: no checkpoint at {ckpt_path}; train without --resume first")
    if opts.resume:
        state = torch.load(ckpt_path, map_location=opts.device, weights_only=False)
        if NetConfig(**state["cfg"]) != opts.cfg:
            raise UsageError(f"{ckpt_path} holds a {state['cfg']} network, not {opts.cfg.to_dict()}")
        net.load_state_dict(state["net"])
        optim.load_state_dict(state["optim"])
        step, rng_state = state["step"], state["rng"]
        log(f"resumed at step {step}")
    rng = random.Random(opts.seed)
    if rng_state is not None:
        rng.setstate(rng_state)

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"net": net.state_dict(), "optim": optim.state_dict(), "step": step, "rng": rng.getstate(),
                    "cfg": opts.cfg.to_dict()}, tmp)
        tmp.replace(ckpt_path)
        if opts.export:
            export_weights(net, opts.export)

    last_save, t0, run_loss, run_score, run_base = time.perf_counter(), time.perf_counter(), 0.0, 0.0, 0.0
    logged = 0
    net.train()
    while step < opts.steps:
        seg = pool[rng.randrange(len(pool))]
        idx = sorted(rng.sample(range(len(seg.coded)), min(opts.batch, len(seg.coded))))
        x, base, y, (cx, cy, cw, ch) = _batch(seg, idx, opts.device, rng)
        H, W = seg.source.shape[1:3]
        for group in optim.param_groups:
            group["lr"] = _lr(opts, step)
        up = upscale_crop(net(x), (W, H), (cx, cy, cw, ch))
        loss, score = loss_fn(base + 255 * up, y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        with torch.no_grad():
            base = loss_fn(base, y)[1] if step % 10 == 0 else None
        run_loss, run_score, logged = run_loss + loss.item(), run_score + score.item(), logged + 1
        if base is not None:
            run_base += score.item() - float(base)
        if step % 200 == 0 or step == opts.steps:
            log(f"step {step}/{opts.steps} loss {run_loss / logged:.4f} ms-ssim {run_score / logged:.4f} "
                f"gain over bicubic {run_base / max(1, logged // 10):+.4f} lr {_lr(opts, step):.2e} "
                f"{time.perf_counter() - t0:.0f} s")
            run_loss = run_score = run_base = 0.0
            logged = 0
        if time.perf_counter() - last_save > opts.ckpt_every:
            save()
            last_save = time.perf_counter()
    save()
    return ckpt_path


def export_weights(net_or_ckpt: EnhancerNet | Path, path: Path) -> Path:
    """Write the shipped weight file (safetensors; the network's config in its metadata)."""
    from safetensors.torch import save_file

    if isinstance(net_or_ckpt, EnhancerNet):
        cfg, state = net_or_ckpt.cfg, net_or_ckpt.state_dict()
    else:
        raw = torch.load(net_or_ckpt, map_location="cpu", weights_only=False)
        cfg, state = NetConfig(**raw["cfg"]), raw["net"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().float().contiguous() for k, v in state.items()}, str(tmp),
              metadata={"format": "m3cvcav-enhancer-1", **{k: str(v) for k, v in cfg.to_dict().items()}})
    tmp.chmod(0o644)
    tmp.replace(path)
    return path
