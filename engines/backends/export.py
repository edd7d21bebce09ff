"""ONNX export of a network from its export descriptor (names, dynamic axes, sample inputs, shape profiles)."""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from m3cvcav.errors import EngineError

from .base import TensorSpec

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile: min/opt/max shape per input name. ``name`` is the resolution bucket."""

    name: str
    min: Mapping[str, Shape]
    opt: Mapping[str, Shape]
    max: Mapping[str, Shape]

    def covers(self, shapes: Mapping[str, Shape]) -> bool:
        return all(all(lo <= s <= hi for lo, s, hi in zip(self.min[n], shape, self.max[n])) and
                   len(shape) == len(self.max[n]) for n, shape in shapes.items())

    def volume(self) -> int:
        total = 0
        for shape in self.max.values():
            vol = 1
            for d in shape:
                vol *= d
            total += vol
        return total

    def to_json(self) -> dict:
        return {"name": self.name, **{k: {n: list(s) for n, s in sorted(getattr(self, k).items())}
                                      for k in ("min", "opt", "max")}}


@dataclass
class ExportSpec:
    """How to export one network: ``module(*inputs in order) -> output tensor or tuple in order``."""

    name: str
    module: torch.nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sample: Mapping[str, torch.Tensor]
    profiles: tuple[ShapeProfile, ...] = ()
    opset: int = 17
    extra: dict = field(default_factory=dict)  # anything else that changes the graph (goes into the key)

    def digest(self) -> str:
        """sha256 hex over the weights and everything that shapes the exported graph (the ONNX cache key)."""
        h = hashlib.sha256()
        meta = {"name": self.name, "opset": self.opset, "torch": torch.__version__.split("+")[0], "extra": self.extra,
                "inputs": [[s.name, list(s.shape), s.dtype] for s in self.inputs],
                "outputs": [[s.name, list(s.shape), s.dtype] for s in self.outputs]}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for key, tensor in sorted(self.module.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def bucket_profiles(input_name: str, buckets: list[tuple[int, int]], *, channels: int = 3, max_batch: int = 8,
                    opt_batch: int = 1, min_side: int = 32) -> tuple[ShapeProfile, ...]:
    """One profile per resolution bucket (H, W) for an NCHW image input, each from ``min_side`` up to its own size and
    tuned (opt) at it; ``pick_profile`` runs a shape in the smallest bucket that holds it."""
    return tuple(ShapeProfile(name=f"{h}x{w}", min={input_name: (1, channels, min_side, min_side)},
                              opt={input_name: (opt_batch, channels, h, w)},
                              max={input_name: (max_batch, channels, h, w)})
                 for h, w in sorted(buckets, key=lambda b: b[0] * b[1]))


def pick_profile(profiles: tuple[ShapeProfile, ...], shapes: Mapping[str, Shape]) -> int:
    """Index of the smallest profile (by max volume) that covers ``shapes``; ``EngineError`` when none does."""
    fitting = [i for i, p in enumerate(profiles) if p.covers(shapes)]
    if not fitting:
        raise EngineError(f"shapes {dict(shapes)} fit no optimisation profile ({', '.join(p.name for p in profiles)}): "
                          "rebuild with a larger resolution bucket (`python -m m3cvcav engines build -s WxH`)")
    return min(fitting, key=lambda i: profiles[i].volume())


def export_onnx(spec: ExportSpec) -> bytes:
    """Export ``spec.module`` to ONNX bytes (TorchScript exporter, named inputs/outputs, dynamic axes)."""
    args = tuple(spec.sample[s.name] for s in spec.inputs)
    dynamic = {s.name: s.dynamic_axes() for s in (*spec.inputs, *spec.outputs) if s.dynamic_axes()}
    buf = io.BytesIO()
    module = spec.module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, input_names=[s.name for s in spec.inputs],
                              output_names=[s.name for s in spec.outputs], dynamic_axes=dynamic,
                              opset_version=spec.opset, dynamo=False)
    except Exception as err:  # the exporter raises many types; report which network failed
        raise EngineError(f"ONNX export of {spec.name} failed: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
                          "; use -engine torch for this network") from err
    return buf.getvalue()
