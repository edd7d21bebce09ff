"""ONNX export of a network from its export descriptor (names, dynamic axes, sample inputs, shape profiles).

Graphs whose weights exceed protobuf's 2 GiB (``ONNX_LIMIT``), or any spec with ``external_data = True``, are written
with ONNX external data: the graph in ``<name>.onnx`` and every initializer in one ``<name>.onnx.data`` beside it, which
ONNX Runtime (session from the path) and TensorRT (``parse_from_file``) both read. ``ExportSpec.variant`` makes the
FP16/BF16 variants of a spec (weights and floating inputs cast before export; a separate cache key).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from m3cvcav.core.errors import EngineError

from .base import TensorSpec

Shape = tuple[int, ...]
ONNX_LIMIT = 2 ** 31 - 2 ** 26  # protobuf's 2 GiB, less room for the graph itself
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    dtype: str = "float32"  # the weights' type in the graph: float32, or a float16 / bfloat16 variant
    external_data: bool = False  # weights in a .onnx.data file even under 2 GiB (graphs over it always are)

    def variant(self, dtype: str) -> ExportSpec:
        """This network exported with ``dtype`` weights and floating inputs/outputs (``float16`` / ``bfloat16``)."""
        if dtype not in DTYPES:
            raise EngineError(f"no {dtype} variant: use one of {', '.join(DTYPES)}")
        if dtype == self.dtype:
            return self
        retype = lambda specs: tuple(dataclasses.replace(s, dtype=dtype) if s.dtype in DTYPES else s  # noqa: E731
                                     for s in specs)
        return dataclasses.replace(self, name=f"{self.name}-{dtype}", inputs=retype(self.inputs),
                                   outputs=retype(self.outputs), dtype=dtype)

    def weight_bytes(self) -> int:
        """Bytes of the weights in the exported graph."""
        size = torch.finfo(DTYPES[self.dtype]).bits // 8
        return sum(t.numel() * (size if t.is_floating_point() else t.element_size())
                   for t in self.module.state_dict().values())

    def external(self) -> bool:
        """Whether the export keeps its weights in an external data file."""
        return self.external_data or self.weight_bytes() >= ONNX_LIMIT

    def digest(self) -> str:
        """sha256 hex over the weights and everything that shapes the exported graph (the ONNX cache key)."""
        h = hashlib.sha256()
        meta = {"name": self.name, "opset": self.opset, "torch": torch.__version__.split("+")[0], "extra": self.extra,
                "inputs": [[s.name, list(s.shape), s.dtype] for s in self.inputs],
                "outputs": [[s.name, list(s.shape), s.dtype] for s in self.outputs],
                **({"dtype": self.dtype} if self.dtype != "float32" else {}),
                **({"external": True} if self.external() else {})}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for key, tensor in sorted(self.module.state_dict().items()):
            h.update(key.encode())
            tensor = tensor.detach().cpu().contiguous()
            h.update((tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor).numpy().tobytes())
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


def _module_and_args(spec: ExportSpec) -> tuple[torch.nn.Module, tuple]:
    """The module and sample inputs to trace, cast to ``spec.dtype`` (a copy; the spec's module is left as it is)."""
    module = spec.module.eval()
    args = tuple(spec.sample[s.name] for s in spec.inputs)
    if spec.dtype != "float32":
        dtype = DTYPES[spec.dtype]
        module = copy.deepcopy(module).to(dtype)
        args = tuple(a.to(dtype) if a.is_floating_point() else a for a in args)
    return module, args


def _export(spec: ExportSpec, target) -> None:
    module, args = _module_and_args(spec)
    dynamic = {s.name: s.dynamic_axes() for s in (*spec.inputs, *spec.outputs) if s.dynamic_axes()}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, target, input_names=[s.name for s in spec.inputs],
                              output_names=[s.name for s in spec.outputs], dynamic_axes=dynamic,
                              opset_version=spec.opset, dynamo=False)
    except Exception as err:  # the exporter raises many types; report which network failed
        raise EngineError(f"ONNX export of {spec.name} failed: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
                          "; use -engine torch for this network") from err


def export_onnx(spec: ExportSpec) -> bytes:
    """Export ``spec.module`` to ONNX bytes (TorchScript exporter, named inputs/outputs, dynamic axes); for graphs that
    fit in one protobuf (``export_onnx_file`` writes the others)."""
    if spec.external():
        raise EngineError(f"{spec.name}: {spec.weight_bytes() / 2 ** 30:.1f} GiB of weights need ONNX external data; "
                          "export it with export_onnx_file")
    buf = io.BytesIO()
    _export(spec, buf)
    return buf.getvalue()


def export_onnx_file(spec: ExportSpec, path: Path) -> list[Path]:
    """Export ``spec`` to ``path`` (``<stem>.onnx``), its weights in ``<path>.data`` beside it when ``spec.external()``.

    Written into a temp folder beside ``path`` and renamed into place data file first, graph last, so a graph that
    exists is complete. Returns the files written."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=path.parent) as tmp:
        raw = Path(tmp) / "export.onnx"
        _export(spec, str(raw))  # over 2 GiB the exporter itself writes external data files into tmp
        if not spec.external():
            os.replace(raw, path)
            return [path]
        model = onnx.load(str(raw), load_external_data=True)
        out = Path(tmp) / path.name
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=0)
        del model
        os.replace(Path(tmp) / data.name, data)
        os.replace(out, path)
    return [data, path]
