"""The engine interface every backend implements: named, typed inputs/outputs and ``__call__(dict) -> dict``."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from m3cvcav.core.errors import EngineError

Array = "np.ndarray | torch.Tensor"


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: ``shape`` entries are ints (fixed) or names (dynamic axes, e.g. "batch", "height")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"  # numpy dtype name

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise ``EngineError`` when ``shape`` does not fit this spec's rank and fixed dimensions."""
        if len(shape) != len(self.shape) or any(isinstance(d, int) and d != s for d, s in zip(self.shape, shape)):
            raise EngineError(f"input {self.name!r} has shape {tuple(shape)} but the network takes {self.shape}: "
                              "pass an array of that shape")


def to_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def to_torch(value, device: str | torch.device = "cpu") -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return tensor.to(device)


class Engine(ABC):
    """A runnable network. Outputs come back as the kind of the inputs: numpy in → numpy out, torch in → torch out
    (on the engine's device)."""

    backend: str = ""

    def __init__(self, name: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], device: str,
                 dtype: str) -> None:
        self.name, self.inputs, self.outputs, self.device, self.dtype = name, inputs, outputs, device, dtype

    def __call__(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, np.ndarray | torch.Tensor]:
        names = [spec.name for spec in self.inputs]
        if set(feeds) != set(names):
            raise EngineError(f"{self.name}: inputs {sorted(feeds)} given, the network takes {names}")
        for spec in self.inputs:
            spec.check(tuple(feeds[spec.name].shape))
        as_torch = isinstance(feeds[names[0]], torch.Tensor)
        out = self._run(feeds)
        return {k: (to_torch(v, self.device) if as_torch else to_numpy(v)) for k, v in out.items()}

    @abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, np.ndarray | torch.Tensor]:
        """Run on validated feeds; return outputs by name (any array kind)."""

    def close(self) -> None:
        """Release backend resources (sessions, CUDA buffers); the engine is unusable afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} backend={self.backend} device={self.device} dtype={self.dtype}>"
