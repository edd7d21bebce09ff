"""The torch backend: eager, or ``torch.compile``d when asked."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .base import Engine, to_torch
from .export import ExportSpec

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, spec: ExportSpec, *, device: str = "cpu", dtype: str = "float32", compile: bool = False) -> None:
        super().__init__(spec.name, spec.inputs, spec.outputs, device, dtype)
        self._module = spec.module.eval().to(device=device, dtype=DTYPES[dtype])
        self._fn = torch.compile(self._module) if compile else self._module
        if compile:
            self.backend = "torch-compile"

    def _run(self, feeds: Mapping) -> dict[str, torch.Tensor]:
        args = []
        for spec in self.inputs:
            t = to_torch(feeds[spec.name], self.device)
            args.append(t.to(DTYPES[self.dtype]) if t.is_floating_point() else t)
        with torch.inference_mode():
            out = self._fn(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {spec.name: (o.float() if o.is_floating_point() else o) for spec, o in zip(self.outputs, out)}

    def close(self) -> None:
        self._module = self._fn = None
