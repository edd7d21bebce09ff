"""The shipped lite tokenizer: loads the safetensors weight file and implements ``KeyframeTokenizer``.

``ref.sha256`` follows the project rule of ``engines.loaders.weights_sha256``: sha256 over the weight file's sha256.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open

from m3cvcav.bitstream.entropy import TokenModel
from m3cvcav.core.errors import ModelError, UsageError

from ..interfaces import Image, ModelRef, RatePoint, TokenGrid
from ..loaders import weights_sha256

from .codec import TokenCodec
from .model import NetConfig, TokenizerNet, pad_to_stride
from .rates import RATE_SPECS, RateSpec, coded_size, grid_shape

ENTROPY_PREFIX = "entropy."


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to (height, width): area filter when shrinking, bicubic when enlarging."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


class LiteTokenizer(TokenCodec):
    """VQ keyframe tokenizer: ``encode(image, rate_point) -> TokenGrid``, ``decode(grid) -> image``; ``compress`` /
    ``decompress`` to and from the bitstream's tokens."""

    def __init__(self, weights: Path, model_id: int, codebook_id: int, working_width: int = 512):
        if working_width < 64:
            raise UsageError(f"tokenizer working_width {working_width} is too small: use at least 64")
        if not weights.exists():
            raise ModelError(f"tokenizer weights {weights} are missing: reinstall m3cvcav")
        tensors, meta = {}, {}
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
        try:
            self.cfg = NetConfig.from_dict(json.loads(meta["config"]))
            nominal = json.loads(meta.get("nominal_bpp", "[]"))
        except (KeyError, ValueError) as err:
            raise ModelError(f"tokenizer weights {weights} lack their configuration ({err}): reinstall m3cvcav"
                             ) from err
        self.net = TokenizerNet(self.cfg).eval()
        state = {k: v for k, v in tensors.items() if not k.startswith(ENTROPY_PREFIX)}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith(("cluster_size", "embed_avg", "initted")) for k in missing):
            raise ModelError(f"tokenizer weights {weights} do not match the network: reinstall m3cvcav")
        self.entropy_arrays = {k[len(ENTROPY_PREFIX):]: v.numpy() for k, v in tensors.items()
                               if k.startswith(ENTROPY_PREFIX)}
        self.working_width = int(working_width)
        self.ref = ModelRef(model_id, weights_sha256([weights]), name="m3cvcav-tokenizer-lite")
        self.codebook_id = codebook_id
        self.vocab = self.cfg.vocab
        self.specs: tuple[RateSpec, ...] = RATE_SPECS
        self.rate_points = tuple(RatePoint(i, s.name, float(nominal[i]) if i < len(nominal) else 0.0)
                                 for i, s in enumerate(self.specs))
        self._models: dict[int, object] = {}

    def _spec(self, rate_point: int) -> RateSpec:
        if not 0 <= rate_point < len(self.specs):
            raise UsageError(f"tokenizer rate point {rate_point} does not exist: choose 0..{len(self.specs) - 1}")
        return self.specs[rate_point]

    def encode(self, image: Image, rate_point: int) -> TokenGrid:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"tokenizer input must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        spec = self._spec(rate_point)
        size = image.shape[:2]
        small = resize(image, coded_size(size, self.working_width, spec))
        x = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1))).float().div_(255.0)[None]
        idx = self.net.encode_indices(pad_to_stride(x), spec.levels)[0].numpy().astype(np.int32)
        return TokenGrid(idx, self.codebook_id, rate_point, self.vocab, (int(size[0]), int(size[1])))

    def decode(self, grid: TokenGrid) -> Image:
        spec = self._spec(grid.rate_point)
        expected = grid_shape(grid.image_size, self.working_width, spec)
        if grid.codebook_id != self.codebook_id or grid.vocab != self.vocab:
            raise ModelError(f"token grid uses codebook {grid.codebook_id} (vocab {grid.vocab}), this tokenizer has "
                             f"{self.codebook_id} (vocab {self.vocab}): decode with the model the stream names")
        if tuple(grid.indices.shape) != expected:
            raise UsageError(f"token grid shape {tuple(grid.indices.shape)} does not match {expected} for "
                             f"{grid.image_size} at rate point {grid.rate_point} (working width {self.working_width})")
        if grid.indices.min() < 0 or grid.indices.max() >= self.vocab:
            raise UsageError(f"token indices outside [0, {self.vocab}): the token stream is corrupt")
        idx = torch.from_numpy(np.ascontiguousarray(grid.indices, dtype=np.int64))[None]
        y = self.net.decode_indices(idx)[0]
        ch, cw = coded_size(grid.image_size, self.working_width, spec)
        img = (y[:, :ch, :cw] * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return resize(np.ascontiguousarray(img), grid.image_size)

    def token_model(self, rate_point: int):
        self._spec(rate_point)
        if rate_point not in self._models:
            prefix = f"rp{rate_point}."
            arrays = {k[len(prefix):]: v for k, v in self.entropy_arrays.items() if k.startswith(prefix)}
            if not arrays:
                raise ModelError(f"tokenizer weights carry no entropy model for rate point {rate_point}: "
                                 "reinstall m3cvcav")
            self._models[rate_point] = TokenModel.from_arrays(arrays)
        return self._models[rate_point]
