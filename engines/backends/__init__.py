"""Engine backends: one ``Engine`` interface over torch (eager / compiled), ONNX Runtime and TensorRT.

``create_engine(spec, backends)`` runs a network described by an ``ExportSpec`` on the backend ``select_backend``
picks: ``auto`` prefers TensorRT on CUDA, then ONNX Runtime, then torch, logging each fallback with its reason. Each
backend's own settings are a frozen dataclass (``config.TorchBackend``, ``OrtBackend``, ``TrtBackend``) filled from the
profile's ``[backends.*]`` tables; every artefact built from them (ONNX exports, TensorRT plans) goes through the one
identity-keyed ``EngineCache``. Each ``Engine`` says which backend runs it (``.backend``): what the container's
M3CV_BACKEND tag reports, through ``engines.registry.backend_of``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from m3cvcav.core.errors import EngineError, UsageError
from m3cvcav.core.log import get_logger
from ..interfaces import BACKENDS

from .config import Backends, OrtBackend, TorchBackend, TrtBackend, backends_of, parse_backends

if TYPE_CHECKING:
    from .base import Engine, TensorSpec
    from .cache import EngineCache, OnnxModel, cache_root, trt_engine_key
    from .export import ExportSpec, ShapeProfile, bucket_profiles, export_onnx, pick_profile

# What needs torch is imported on first use, so that reading a profile (every command line does) costs no torch import:
# an error about an input or an output name comes back in a fraction of a second, not after 1.3 s of loading torch.
_LAZY = {"Engine": ".base", "TensorSpec": ".base", "EngineCache": ".cache", "OnnxModel": ".cache",
         "cache_root": ".cache", "trt_engine_key": ".cache", "ExportSpec": ".export", "ShapeProfile": ".export",
         "bucket_profiles": ".export", "export_onnx": ".export", "pick_profile": ".export"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value

__all__ = ["BACKENDS", "Backends", "Engine", "EngineCache", "ExportSpec", "OnnxModel", "OrtBackend", "ShapeProfile",
           "TensorSpec", "TorchBackend", "TrtBackend", "backends_of", "bucket_profiles", "cache_root",
           "create_engine", "default_device", "export_onnx", "onnx_for", "parse_backends", "pick_profile",
           "select_backend", "trt_engine_key"]

log = get_logger(__name__)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here, or None when it can."""
    if backend == "torch":
        import torch

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
            log.log(15, "%s: not using %s: %s", name, candidate, reason)  # a choice: -loglevel verbose
    raise EngineError(f"no backend can run {name} on {device}: use -engine torch on the CPU")


def onnx_for(spec: ExportSpec, cache: EngineCache | None = None) -> OnnxModel:
    """The ONNX export of ``spec``, made once and cached under ``spec.digest()`` (a graph over 2 GiB, or one with
    ``spec.external_data``, keeps its weights in a ``.onnx.data`` file beside it)."""
    from .cache import EngineCache

    return (cache or EngineCache()).onnx(spec)


def create_engine(spec: ExportSpec, backend: str | Backends = "auto", *, device: str | None = None,
                  precision: str | None = None, compile: bool | None = None, threads: int | None = None,
                  cache: EngineCache | None = None) -> Engine:
    """Run ``spec`` on ``backend`` — a ``Backends`` (the profile's typed settings and the requested name) or just a
    name with defaults; ``precision`` (TensorRT), ``compile`` (torch) and ``threads`` (ONNX Runtime) override the
    settings. The choice is logged; the engine's ``backend`` names it."""
    backends = backend if isinstance(backend, Backends) else Backends(backend)
    device = device or default_device()
    chosen = select_backend(backends.requested, device=device, name=spec.name)
    if chosen == "torch":
        from .torch_backend import TorchEngine

        use_compile = backends.torch.compile if compile is None else compile
        engine: Engine = TorchEngine(spec, device=device, compile=use_compile)
    elif chosen == "onnxruntime":
        from .ort_backend import OrtEngine

        ort = backends.onnxruntime
        variant = spec.variant("float16") if ort.precision == "fp16" and device.startswith("cuda") else spec
        engine = OrtEngine(spec.name, onnx_for(variant, cache), spec.inputs, spec.outputs, device=device,
                           threads=ort.threads if threads is None else threads)
    else:
        from .trt_backend import load_trt

        trt = backends.tensorrt if precision is None else TrtBackend(precision, backends.tensorrt.workspace_gib,
                                                                     backends.tensorrt.tf32)
        engine = load_trt(spec.name, onnx_for(spec, cache), spec.inputs, spec.outputs, spec.profiles, device=device,
                          config=trt, cache=cache)
    log.log(15, "%s runs on %s (%s)", spec.name, engine.backend, device)
    return engine
