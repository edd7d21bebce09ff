"""The lite enhancer: the decoder's learned restoration upscaler of the AV1 base (docs/models/enhancer.md).

``upscale(picture, size, variant)`` turns a decoded base picture at the coded size into the display size: variant 0 is
``av1.upscale`` (bicubic) exactly; variant k ≥ 1 adds ``STRENGTHS[k - 1]`` times the network's luma residual, upscaled
bicubically, to that bicubic picture (``enhancer_net``). ``choose`` is the encoder's decision: the variant with the
best ``core.quality.mean_ms_ssim`` against the source, 0 unless a model variant beats bicubic.

The network runs on the profile's engine backends (ONNX Runtime on CPU by default, torch as the fallback, TensorRT on
CUDA), one picture at a time at its coded size; the post-process is OpenCV and numpy.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from m3cvcav.bitstream import av1
from m3cvcav.core.errors import ModelError, UsageError
from m3cvcav.core.quality import ms_ssim

from ..backends import Backends, Engine, ExportSpec, ShapeProfile, TensorSpec, create_engine
from ..interfaces import ModelRef
from ..loaders import weights_sha256
from .enhancer_net import EnhancerNet, NetConfig

NAME = "lite-enhancer"
WEIGHTS = Path(__file__).resolve().parent / "weights" / "enhancer.safetensors"
STRENGTHS = (1.0, 0.5)  # variant k ≥ 1 scales the residual by STRENGTHS[k - 1]
VARIANTS = len(STRENGTHS)
# TensorRT shape profiles (coded sizes up to 1920×1088; ONNX Runtime and torch take any size)
BUCKETS = ((144, 256), (368, 640), (720, 1280), (1088, 1920))


def load_network(path: Path = WEIGHTS) -> EnhancerNet:
    """The network with the weights of ``path`` (safetensors; its config in the metadata), loaded strictly."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ModelError(f"the enhancer's weights are missing ({path}): reinstall m3cvcav, or train them with "
                         "`python -m m3cvcav train enhancer --export PATH`")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "m3cvcav-enhancer-1":
        raise ModelError(f"{path} is not an m3cvcav enhancer weight file")
    net = EnhancerNet(NetConfig(channels=int(meta["channels"]), layers=int(meta["layers"])))
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval()


def export_spec(net: EnhancerNet) -> ExportSpec:
    return ExportSpec(
        name=NAME, module=net,
        inputs=(TensorSpec("image", ("batch", 3, "height", "width")),),
        outputs=(TensorSpec("residual", ("batch", 1, "height2", "width2")),),
        sample={"image": torch.rand(1, 3, 72, 128)},
        profiles=tuple(ShapeProfile(name=f"{h}x{w}", min={"image": (1, 3, 16, 16)}, opt={"image": (1, 3, h, w)},
                                    max={"image": (1, 3, h, w)}) for h, w in BUCKETS))


def _check(picture: np.ndarray) -> None:
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise UsageError(f"pictures must be (h, w, 3) uint8 RGB arrays, got {picture.shape} {picture.dtype}")


def compose(base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``base`` (H, W, 3) uint8 plus the luma change ``delta`` (H, W) float32 in 0..255 units on R, G and B alike,
    rounded and saturated to uint8 (OpenCV)."""
    return cv2.add(base, cv2.merge([delta, delta, delta]), dtype=cv2.CV_8U)


def upscale_residual(residual: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The network's residual (2h, 2w) in 0..1 units at the display ``size`` (bicubic), in 0..255 units."""
    return cv2.resize(residual * np.float32(255), tuple(size), interpolation=cv2.INTER_CUBIC)


class Enhancer:
    """The restoration upscaler; ``ref`` identifies its weights in the stream header."""

    variants = VARIANTS

    def __init__(self, *, model_id: int, weights: str | Path | None = None, backend: str | Backends = "auto",
                 device: str | None = None, threads: int | None = None) -> None:
        """``backend``: an -engine name or the role's typed ``Backends``; ``threads``: ONNX Runtime's intra-op
        threads (None: the backend settings', 0: all cores)."""
        self.path = Path(weights) if weights else WEIGHTS
        self._net = load_network(self.path)
        self.ref = ModelRef(model_id=int(model_id), sha256=weights_sha256(self.path), name=NAME)
        self._backend, self._device, self._threads = backend, device, threads

    @property
    def config(self) -> NetConfig:
        return self._net.cfg

    @cached_property
    def engine(self) -> Engine:
        return create_engine(export_spec(self._net), self._backend, device=self._device, threads=self._threads)

    def export_specs(self, sizes: Sequence[tuple[int, int]] = ()) -> list[ExportSpec]:
        return [export_spec(self._net)]

    def residual(self, picture: np.ndarray) -> np.ndarray:
        """The network's luma residual (2h, 2w) float32 of a base picture (h, w, 3) uint8."""
        _check(picture)
        x = np.ascontiguousarray(picture.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= np.float32(1 / 255)
        out = self.engine({"image": x})["residual"]
        return np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out)[0, 0]

    def upscale(self, picture: np.ndarray, size: tuple[int, int], variant: int) -> np.ndarray:
        """``picture`` (h, w, 3) uint8 RGB at the coded size → (H, W, 3) uint8 at ``size`` = (width, height)."""
        _check(picture)
        if not 0 <= variant <= VARIANTS:
            raise UsageError(f"enhancement variant {variant} is not one of 0..{VARIANTS}")
        base = av1.upscale(picture, tuple(size))
        if variant == 0:
            return base
        return self._render(base, self.residual(picture), size, variant)

    @staticmethod
    def _render(base: np.ndarray, residual: np.ndarray, size: tuple[int, int], variant: int) -> np.ndarray:
        delta = upscale_residual(residual, size)
        strength = STRENGTHS[variant - 1]
        return compose(base, delta if strength == 1 else delta * np.float32(strength))

    def candidates(self, picture: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
        """The picture at ``size`` under every variant 0..VARIANTS (the network runs once)."""
        base = av1.upscale(picture, tuple(size))
        delta = upscale_residual(self.residual(picture), size)
        return [base] + [compose(base, delta if s == 1 else delta * np.float32(s)) for s in STRENGTHS]

    def choose(self, source: Sequence[np.ndarray], pictures: Sequence[np.ndarray], size: tuple[int, int]) -> int:
        """The variant whose output has the best mean MS-SSIM against ``source`` (frames at the display ``size``) for
        the decoded base ``pictures`` (coded size); 0 unless a model variant beats bicubic."""
        if len(source) != len(pictures) or not pictures:
            raise UsageError(f"choose needs as many source frames as base pictures (got {len(source)} and "
                             f"{len(pictures)}), at least one")
        scores = np.zeros(VARIANTS + 1)
        for ref, pic in zip(source, pictures):
            if ref.shape[1::-1] != tuple(size):
                raise UsageError(f"source frames must be at the display size {tuple(size)}, got {ref.shape[1::-1]}")
            scores += [ms_ssim(ref, out) for out in self.candidates(pic, size)]
        best = int(np.argmax(scores))
        return best if scores[best] > scores[0] else 0

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
            del self.__dict__["engine"]
