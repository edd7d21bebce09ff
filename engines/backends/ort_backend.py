"""The ONNX Runtime backend (CPU, or CUDA where onnxruntime-gpu and a GPU are present)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from m3cvcav.core.errors import EngineError

from .base import Engine, TensorSpec, to_numpy


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device`` ("cpu" or "cuda[:N]"); ``EngineError`` when CUDA is missing."""
    import onnxruntime as ort

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError("onnxruntime has no CUDA provider here: install onnxruntime-gpu or use -engine torch")
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, name: str, onnx, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], *,
                 device: str = "cpu", threads: int = 0) -> None:
        """``onnx``: the graph's bytes, or a cached ``OnnxModel`` (loaded from its path, so external data is found)."""
        import onnxruntime as ort

        super().__init__(name, inputs, outputs, device, "float32")
        source = onnx if isinstance(onnx, bytes) else str(onnx.path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(source, sess_options=opts, providers=providers_for(device))
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime cannot load {name}: {' '.join(str(err).split())[:200]}; "
                              "use -engine torch") from err
        self._types = {i.name: i.type for i in self._session.get_inputs()}

    def _run(self, feeds: Mapping) -> dict[str, np.ndarray]:
        arrays = {}
        for name, value in feeds.items():
            arr = to_numpy(value)
            cast = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(self._types[name])
            arrays[name] = arr.astype(cast, copy=False) if cast is not None and arr.dtype.kind == "f" else arr
        names = [spec.name for spec in self.outputs]
        return dict(zip(names, self._session.run(names, arrays)))

    def close(self) -> None:
        self._session = None
