"""Engine backends: one ``Engine`` interface over torch (eager / compiled), ONNX Runtime and TensorRT.

``create_engine(spec, backend)`` runs a network described by an ``ExportSpec`` on the backend ``select_backend`` picks:
``auto`` prefers TensorRT on CUDA, then ONNX Runtime, then torch, logging each fallback with its reason;
``backends_used()`` records which backend ran each network (for logs and container tags).
"""
from __future__ import annotations

import torch

from m3cvcav.errors import EngineError, UsageError
from m3cvcav.log import get_logger

from .base import Engine, TensorSpec
from .cache import EngineCache, cache_root, trt_engine_key
from .export import ExportSpec, ShapeProfile, bucket_profiles, export_onnx, pick_profile

__all__ = ["BACKENDS", "Engine", "EngineCache", "ExportSpec", "ShapeProfile", "TensorSpec", "backends_used",
           "bucket_profiles", "cache_root", "create_engine", "default_device", "export_onnx", "onnx_for",
           "pick_profile", "select_backend", "trt_engine_key"]

log = get_logger("engines.backends")
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
_USED: dict[str, str] = {}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here, or None when it can."""
    if backend == "torch":
        return None if device == "cpu" or torch.cuda.is_available() else "torch sees no CUDA GPU"
    if backend == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        return None
    from .trt_backend import unavailable_reason as trt_reason

    return trt_reason(device)


_REPORTED: set[tuple[str, str, str]] = set()


def select_backend(requested: str = "auto", *, device: str | None = None, exportable: bool = True,
                   name: str = "network") -> str:
    """The backend to run ``name`` on. An explicit choice that cannot run raises ``EngineError``; ``auto`` falls back
    TensorRT → ONNX Runtime → torch and logs why each skipped one was skipped."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown -engine {requested!r}: use one of {', '.join(BACKENDS)}")
    device = device or default_device()
    if requested != "auto":
        reason = unavailable_reason(requested, device)
        if reason is None and requested != "torch" and not exportable:
            reason = "this network has no ONNX export"
        if reason:
            raise EngineError(f"-engine {requested} cannot run {name}: {reason}; use -engine auto")
        return requested
    for candidate in ("tensorrt", "onnxruntime", "torch"):
        reason = "this network has no ONNX export" if candidate != "torch" and not exportable else None
        reason = reason or unavailable_reason(candidate, device)
        if reason is None:
            return candidate
        if (name, candidate, reason) not in _REPORTED:  # once per process, not once per engine instance
            _REPORTED.add((name, candidate, reason))
            log.info("%s: not using %s: %s", name, candidate, reason)
    raise EngineError(f"no backend can run {name} on {device}: use -engine torch on the CPU")


def _valid_onnx(data: bytes) -> bytes | None:
    import onnx

    try:
        onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends: a corrupt file is rebuilt
        return None
    return data


def onnx_for(spec: ExportSpec, cache: EngineCache | None = None) -> bytes:
    """The ONNX bytes of ``spec``, exported once and cached under ``spec.digest()``."""
    cache = cache or EngineCache()
    meta = {"name": spec.name, "backend": "onnx", "opset": spec.opset,
            "inputs": [[s.name, list(s.shape), s.dtype] for s in spec.inputs]}
    return cache.get_or_build(spec.digest(), "onnx", lambda: export_onnx(spec), _valid_onnx, meta)


def create_engine(spec: ExportSpec, backend: str = "auto", *, device: str | None = None, precision: str = "fp16",
                  compile: bool = False, threads: int = 0, cache: EngineCache | None = None) -> Engine:
    """Run ``spec`` on ``backend`` (see ``select_backend``); the choice is logged and recorded in ``backends_used``."""
    device = device or default_device()
    chosen = select_backend(backend, device=device, name=spec.name)
    if chosen == "torch":
        from .torch_backend import TorchEngine

        engine: Engine = TorchEngine(spec, device=device, compile=compile)
    elif chosen == "onnxruntime":
        from .ort_backend import OrtEngine

        engine = OrtEngine(spec.name, onnx_for(spec, cache), spec.inputs, spec.outputs, device=device, threads=threads)
    else:
        from .trt_backend import load_trt

        engine = load_trt(spec.name, onnx_for(spec, cache), spec.inputs, spec.outputs, spec.profiles, device=device,
                          precision=precision, cache=cache)
    _USED[spec.name] = engine.backend
    log.log(15, "%s runs on %s (%s)", spec.name, engine.backend, device)
    return engine


def backends_used() -> dict[str, str]:
    """Network name → backend that ran it, in this process."""
    return dict(_USED)
