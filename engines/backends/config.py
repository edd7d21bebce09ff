"""Typed backend settings: one frozen dataclass per backend with its own fields, filled from a profile's TOML.

A profile sets them in ``[backends.<name>]`` tables (every role) and ``[roles.<role>.backends.<name>]`` (one role,
field by field over the profile's)::

    [backends.tensorrt]
    precision = "bf16"        # fp32 | fp16 | bf16
    workspace_gib = 4

    [backends.onnxruntime]
    threads = 2
    precision = "fp16"        # export an FP16 variant of each graph (CUDA); fp32 on the CPU

``-engine`` (``backend`` in a role's settings) picks which of them runs, ``auto`` trying TensorRT → ONNX Runtime →
torch (``select_backend``). Unknown names, fields or values are one-line ``UsageError`` s when the profile loads.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from m3cvcav.core.errors import UsageError

PRECISIONS = ("fp32", "fp16", "bf16")


def _check(cls, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``table``'s fields for dataclass ``cls``, each checked against its annotated type (ints pass as floats)."""
    if not isinstance(table, Mapping):
        raise UsageError(f"{where} must be a table of {', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(unknown)}; {cls.name} takes {', '.join(fields)}")
    out = {}
    for key, value in table.items():
        kind = {"str": str, "int": int, "float": float, "bool": bool}[str(fields[key].type)]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UsageError(f"{where}.{key} = {value!r} must be a {kind.__name__}: fix the profile")
        out[key] = value
    return out


@dataclass(frozen=True)
class TorchBackend:
    """torch eager, or ``torch.compile`` d (``compile = true``)."""

    name: ClassVar[str] = "torch"
    compile: bool = False


@dataclass(frozen=True)
class OrtBackend:
    """ONNX Runtime: ``threads`` intra-op threads (0: its default); ``precision`` of the exported graph (``fp16``
    exports an FP16 variant, for the CUDA provider; the CPU provider runs fp32)."""

    name: ClassVar[str] = "onnxruntime"
    threads: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.threads < 0 or self.precision not in ("fp32", "fp16"):
            raise UsageError(f"backends.onnxruntime: threads ≥ 0 and precision fp32 or fp16 (got {self.threads}, "
                             f"{self.precision!r})")


@dataclass(frozen=True)
class TrtBackend:
    """TensorRT: builder ``precision`` (fp32, fp16 or bf16 kernels allowed besides fp32), ``workspace_gib`` of builder
    scratch memory, ``tf32`` kernels for fp32 layers. Every field is part of the plan's cache key."""

    name: ClassVar[str] = "tensorrt"
    precision: str = "fp16"
    workspace_gib: float = 2.0
    tf32: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS or not 0 < self.workspace_gib <= 1024:
            raise UsageError(f"backends.tensorrt: precision one of {', '.join(PRECISIONS)} and workspace_gib in "
                             f"(0, 1024] (got {self.precision!r}, {self.workspace_gib})")

    @property
    def workspace(self) -> int:
        return int(self.workspace_gib * (1 << 30))


TYPES = {cls.name: cls for cls in (TorchBackend, OrtBackend, TrtBackend)}
Config = TorchBackend | OrtBackend | TrtBackend


@dataclass(frozen=True)
class Backends:
    """Which backend was asked for (``-engine``: auto, tensorrt, onnxruntime, torch) and each backend's settings."""

    requested: str = "auto"
    torch: TorchBackend = field(default_factory=TorchBackend)
    onnxruntime: OrtBackend = field(default_factory=OrtBackend)
    tensorrt: TrtBackend = field(default_factory=TrtBackend)

    def __post_init__(self) -> None:
        if self.requested not in ("auto", *TYPES):
            raise UsageError(f"unknown -engine {self.requested!r}: use one of auto, {', '.join(TYPES)}")

    def config(self, name: str) -> Config:
        """The settings of backend ``name``."""
        if name not in TYPES:
            raise UsageError(f"unknown backend {name!r}: one of {', '.join(TYPES)}")
        return getattr(self, name)

    def key(self) -> tuple:
        """A hashable identity (what an engine built with these settings depends on)."""
        return (self.requested, self.torch, self.onnxruntime, self.tensorrt)


def parse_backends(tables: Mapping[str, Any] | None, requested: str = "auto", where: str = "backends") -> Backends:
    """``Backends`` from ``{"tensorrt": {...}, ...}`` tables (a profile's ``[backends.*]``) and the requested name."""
    tables = tables or {}
    if not isinstance(tables, Mapping):
        raise UsageError(f"{where} must be a table of backend tables ({', '.join(TYPES)})")
    unknown = sorted(set(tables) - set(TYPES))
    if unknown:
        raise UsageError(f"{where}: unknown backend(s) {', '.join(unknown)}; use {', '.join(TYPES)}")
    configs = {name: cls(**_check(cls, tables.get(name, {}), f"{where}.{name}")) for name, cls in TYPES.items()}
    return Backends(requested, **configs)


def backends_of(settings: Mapping[str, Any]) -> Backends:
    """A role's ``Backends``: its ``backend`` (the -engine choice, a name or already a ``Backends``) and ``backends``
    tables (the profile's merged with the role's, by the registry)."""
    chosen = settings.get("backend", "auto")
    if isinstance(chosen, Backends):
        return chosen
    return parse_backends(settings.get("backends"), str(chosen), f"{settings.get('role', 'role')}.backends")
