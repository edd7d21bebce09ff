"""Training and held-out images: license-clean real media from ``../shared/media``, decoded once into a cached pool.

Held out (never trained on): three photos, the last frames of each clip and of the Sintel sequence (``HELD_OUT``).
The training pool stores every image at most ``POOL_WIDTH`` wide as uint8 in one ``.npz`` cache; ``CropSampler`` draws
random crops with scale jitter and horizontal flips from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from m3cvcav.core.errors import InputError

POOL_WIDTH = 1024
HELD_OUT_PHOTOS = ("skimage_astronaut.png", "skimage_coffee.png", "mate_Garden.jpg")
# clip name -> (first held-out frame, training frame step, held-out frames used by the bench)
CLIPS = {"bigbuckbunny.mp4": (110, 3, (115, 130)), "vtest.avi": (700, 20, (760,))}
SINTEL_HELD_OUT = ("frame_0024.png", "frame_0025.png")
SINTEL_BENCH = ("frame_0025.png",)


def media_root() -> Path:
    """``$M3CVC_MEDIA`` or ``../shared/media`` beside the checkout."""
    env = os.environ.get("M3CVC_MEDIA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "media"
    if not (root / "photos").is_dir():
        raise InputError(f"training media not found at {root}: set M3CVC_MEDIA to the shared media folder")
    return root


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"cannot read image {path}: check the file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _clip_frames(path: Path, wanted) -> dict[int, np.ndarray]:
    """Frames of a clip by index (decoded in order, keeping only ``wanted(index)``)."""
    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if wanted(i):
                out[i] = frame.to_ndarray(format="rgb24")
    return out


def _limit_width(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w <= width:
        return img
    return cv2.resize(img, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Named:
    name: str
    image: np.ndarray


def training_images(root: Path | None = None) -> list[Named]:
    """Every training image (held-out ones excluded), at most ``POOL_WIDTH`` wide."""
    root = root or media_root()
    out = [Named(p.name, _read_rgb(p)) for p in sorted((root / "photos").glob("*.*"))
           if p.suffix.lower() in (".png", ".jpg") and p.name not in HELD_OUT_PHOTOS]
    for clip, (first_held, step, _) in CLIPS.items():
        frames = _clip_frames(root / "clips" / clip, lambda i, f=first_held, s=step: i < f and i % s == 0)
        out += [Named(f"{clip}#{i}", img) for i, img in frames.items()]
    out += [Named(p.name, _read_rgb(p)) for p in sorted((root / "frames" / "sintel").glob("*.png"))
            if p.name not in SINTEL_HELD_OUT]
    return [Named(n.name, _limit_width(n.image, POOL_WIDTH)) for n in out]


def held_out_images(root: Path | None = None) -> list[Named]:
    """The bench's held-out images at source resolution (three photos, clip frames, a Sintel frame)."""
    root = root or media_root()
    out = [Named(name, _read_rgb(root / "photos" / name)) for name in HELD_OUT_PHOTOS]
    for clip, (_, _, bench) in CLIPS.items():
        frames = _clip_frames(root / "clips" / clip, lambda i, b=bench: i in b)
        out += [Named(f"{clip}#{i}", frames[i]) for i in bench]
    out += [Named(name, _read_rgb(root / "frames" / "sintel" / name)) for name in SINTEL_BENCH]
    return out


def load_pool(cache: Path) -> list[np.ndarray]:
    """The training pool, decoded once and cached in ``cache`` (an .npz written atomically)."""
    if cache.exists():
        with np.load(cache) as data:
            return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]
    images = [n.image for n in training_images()]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **{f"img_{i}": img for i, img in enumerate(images)})
    tmp.replace(cache)
    return images


class CropSampler:
    """Random ``size``×``size`` crops from the pool: scale jitter (log-uniform in ``scales``), horizontal flips."""

    def __init__(self, pool: list[np.ndarray], size: int, seed: int, scales: tuple[float, float] = (0.25, 1.0)):
        self.pool, self.size, self.scales = pool, size, scales
        self.rng = np.random.default_rng(seed)
        # weight images by area so large photos contribute proportionally more crops, capped to keep variety
        areas = np.array([min(im.shape[0] * im.shape[1], 600_000) for im in pool], dtype=np.float64)
        self.p = areas / areas.sum()

    def crop(self) -> np.ndarray:
        img = self.pool[self.rng.choice(len(self.pool), p=self.p)]
        h, w = img.shape[:2]
        lo = max(np.log(self.scales[0]), np.log(self.size / min(h, w)))
        hi = max(lo, np.log(self.scales[1]))
        s = float(np.exp(self.rng.uniform(lo, hi)))
        size_src = min(min(h, w), max(1, round(self.size / s)))
        y = int(self.rng.integers(0, h - size_src + 1))
        x = int(self.rng.integers(0, w - size_src + 1))
        patch = img[y:y + size_src, x:x + size_src]
        if size_src != self.size:
            interp = cv2.INTER_AREA if size_src > self.size else cv2.INTER_CUBIC
            patch = cv2.resize(patch, (self.size, self.size), interpolation=interp)
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return patch

    def batch(self, n: int) -> np.ndarray:
        """(n, 3, size, size) float32 in [0, 1]."""
        arr = np.stack([self.crop() for _ in range(n)]).astype(np.float32) / 255.0
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
