"""The TensorRT backend: engines built from ONNX with the TensorRT Python API, cached on disk.

Build: ONNX parser, one optimisation profile per resolution bucket, fp16/bf16 builder flags, a persistent timing cache,
a bounded workspace. The serialized plan is cached under a key over (ONNX bytes, profiles, precision, builder flags,
TensorRT version, GPU name, compute capability) — see ``cache.trt_engine_key``. Needs TensorRT >= 8.6 and a CUDA GPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from m3cvcav.core.atomic import write_bytes
from m3cvcav.core.errors import EngineError
from m3cvcav.core.log import get_logger

from .base import Engine, TensorSpec, to_torch
from .cache import EngineCache, OnnxModel, trt_engine_key
from .config import TrtBackend
from .export import ShapeProfile, pick_profile

log = get_logger(__name__)
PRECISIONS = ("fp32", "fp16", "bf16")


def unavailable_reason(device: str) -> str | None:
    """Why TensorRT cannot run on ``device`` here, or None when it can."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU and none is in use"  # no install hint where it could not run anyway
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install tensorrt)"
    return None


def gpu_identity(device: str) -> tuple[str, tuple[int, int]]:
    dev = torch.device(device)
    return torch.cuda.get_device_name(dev), tuple(torch.cuda.get_device_capability(dev))


def builder_flags(precision: str, workspace: int, tf32: bool = True) -> dict:
    if precision not in PRECISIONS:
        raise EngineError(f"unknown TensorRT precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return {"fp16": precision == "fp16", "bf16": precision == "bf16", "workspace": int(workspace), "tf32": bool(tf32)}


def _timing_cache_path(cache: EngineCache, trt_version: str, gpu: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in gpu)
    return cache.root / f"timing-{trt_version}-{safe}.cache"


def build_plan(onnx: bytes | OnnxModel, profiles: tuple[ShapeProfile, ...], flags: dict, timing_cache: Path) -> bytes:
    """Parse ``onnx`` (bytes, or a cached model read from its path so external data is found) and build a serialized
    TensorRT engine with ``profiles``; updates the timing cache file."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse(onnx) if isinstance(onnx, bytes) else parser.parse_from_file(str(onnx.path))
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse the ONNX graph ({' '.join(errors.split())[:200]}); "
                          "use -engine onnxruntime")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, flags["workspace"])
    if flags["fp16"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if flags["bf16"]:
        config.set_flag(trt.BuilderFlag.BF16)
    if not flags["tf32"]:
        config.clear_flag(trt.BuilderFlag.TF32)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    for profile in profiles:
        opt_profile = builder.create_optimization_profile()
        for name in profile.min:
            opt_profile.set_shape(name, profile.min[name], profile.opt[name], profile.max[name])
        config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError("TensorRT failed to build the engine (see the TensorRT log above); use -engine onnxruntime")
    write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def deserialize(plan: bytes):
    """The ``ICudaEngine`` of a serialized plan, or None when it does not deserialize (stale or corrupt)."""
    import tensorrt as trt

    try:
        return trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
    except Exception as err:  # noqa: BLE001 - some TensorRT versions raise instead of returning None
        log.warning("TensorRT plan does not deserialize: %s", err)
        return None


def _torch_dtype(trt_dtype) -> torch.dtype:
    import tensorrt as trt

    return torch.from_numpy(np.empty(0, dtype=trt.nptype(trt_dtype))).dtype


class TrtEngine(Engine):
    backend = "tensorrt"

    def __init__(self, name: str, cuda_engine, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                 profiles: tuple[ShapeProfile, ...], *, device: str, precision: str) -> None:
        super().__init__(name, inputs, outputs, device, precision)
        self._engine = cuda_engine
        self._ctx = cuda_engine.create_execution_context()
        self._profiles = profiles
        self._active = -1
        self._dtypes = {s.name: _torch_dtype(cuda_engine.get_tensor_dtype(s.name)) for s in (*inputs, *outputs)}

    def _run(self, feeds: Mapping) -> dict[str, torch.Tensor]:
        shapes = {name: tuple(value.shape) for name, value in feeds.items()}
        index = pick_profile(self._profiles, shapes) if self._profiles else 0
        stream = torch.cuda.current_stream(torch.device(self.device))
        if index != self._active:
            self._ctx.set_optimization_profile_async(index, stream.cuda_stream)
            self._active = index
        held = []
        for spec in self.inputs:
            tensor = to_torch(feeds[spec.name], self.device).to(self._dtypes[spec.name]).contiguous()
            held.append(tensor)
            self._ctx.set_input_shape(spec.name, tuple(tensor.shape))
            self._ctx.set_tensor_address(spec.name, tensor.data_ptr())
        out = {}
        for spec in self.outputs:
            shape = tuple(self._ctx.get_tensor_shape(spec.name))
            out[spec.name] = torch.empty(shape, dtype=self._dtypes[spec.name], device=self.device)
            self._ctx.set_tensor_address(spec.name, out[spec.name].data_ptr())
        if not self._ctx.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to run {self.name}; use -engine onnxruntime")
        stream.synchronize()
        return out

    def close(self) -> None:
        self._ctx = self._engine = None


def load_trt(name: str, onnx: bytes | OnnxModel, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
             profiles: tuple[ShapeProfile, ...], *, device: str = "cuda", config: TrtBackend | None = None,
             precision: str | None = None, cache: EngineCache | None = None) -> TrtEngine:
    """Build (or load from the cache) the TensorRT engine of ``onnx`` with ``config``'s builder settings
    (``precision`` overrides its precision) and wrap it as an ``Engine``."""
    reason = unavailable_reason(device)
    if reason:
        raise EngineError(f"-engine tensorrt cannot run {name}: {reason}; use -engine auto")
    import tensorrt as trt

    config = config or TrtBackend()
    precision = precision or config.precision
    cache = cache or EngineCache()
    flags = builder_flags(precision, config.workspace, config.tf32)
    gpu, capability = gpu_identity(device)
    ident = onnx if isinstance(onnx, bytes) else onnx.key
    key = trt_engine_key(ident, profiles, precision, flags, trt.__version__, gpu, capability)
    meta = {"name": name, "backend": "tensorrt", "precision": precision, "flags": flags, "tensorrt": trt.__version__,
            "gpu": gpu, "capability": list(capability), "profiles": [p.name for p in profiles]}
    timing = _timing_cache_path(cache, trt.__version__, gpu)
    with torch.cuda.device(torch.device(device)):
        cuda_engine = cache.get_or_build(key, "plan", lambda: build_plan(onnx, profiles, flags, timing), deserialize,
                                         meta)
        return TrtEngine(name, cuda_engine, inputs, outputs, profiles, device=device, precision=precision)
