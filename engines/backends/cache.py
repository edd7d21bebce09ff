"""The on-disk engine cache: ``$M3CVC_ENGINE_CACHE`` or ``~/.cache/m3cvcav/engines``.

Layout: ``<root>/<key>.<kind>`` (kind ``onnx`` or ``plan``) with ``<key>.json`` beside it (what it is: network, backend,
profiles, precision, versions), ``<key>.onnx.data`` for an ONNX graph kept with external data (over 2 GiB),
``<key>.lock`` while it is built, and ``timing-<trt>-<gpu>.cache`` TensorRT timing caches. This is the one cache of
built artefacts: ONNX exports are keyed by ``ExportSpec.digest()`` (weights + graph settings), TensorRT plans by
``trt_engine_key`` over that ONNX identity, the shape profiles, the builder settings and the GPU.
Entries are written to a temp file then renamed, under a file lock, so concurrent builders never see half files.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from m3cvcav.core.atomic import write_bytes
from m3cvcav.core.errors import EngineError
from m3cvcav.core.log import get_logger

from .export import ExportSpec, ShapeProfile, export_onnx_file

T = TypeVar("T")
log = get_logger(__name__)
KINDS = ("onnx", "plan")


def cache_root() -> Path:
    return Path(os.environ.get("M3CVC_ENGINE_CACHE") or Path.home() / ".cache" / "m3cvcav" / "engines").expanduser()


@dataclass(frozen=True)
class OnnxModel:
    """A cached ONNX export: the graph file, and its weights file when kept as external data."""

    key: str  # ExportSpec.digest(): the identity of weights + graph settings
    path: Path
    data: Path | None = None

    def __len__(self) -> int:
        return self.path.stat().st_size + (self.data.stat().st_size if self.data else 0)

    def bytes(self) -> bytes:
        """The graph as one protobuf (only for graphs without external data)."""
        if self.data:
            raise EngineError(f"{self.path.name} keeps its weights in {self.data.name}: load it from its path")
        return self.path.read_bytes()


def trt_engine_key(onnx: bytes | str, profiles: tuple[ShapeProfile, ...], precision: str, flags: dict,
                   trt_version: str, gpu_name: str, capability: tuple[int, int]) -> str:
    """sha256 hex of everything a serialized TensorRT engine depends on; ``onnx`` is the graph's bytes or its
    identity (an ``OnnxModel.key``)."""
    ident = hashlib.sha256(onnx).hexdigest() if isinstance(onnx, bytes) else onnx
    meta = {"onnx": ident, "profiles": [p.to_json() for p in profiles],
            "precision": precision, "flags": {k: flags[k] for k in sorted(flags)}, "tensorrt": trt_version,
            "gpu": gpu_name, "capability": list(capability)}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    kind: str
    path: Path
    size: int
    meta: dict


class EngineCache:
    """Built artefacts by key; ``get_or_build`` is the only way entries are made."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else cache_root()

    def path(self, key: str, kind: str) -> Path:
        if kind not in KINDS:
            raise EngineError(f"unknown cache entry kind {kind!r}: one of {KINDS}")
        return self.root / f"{key}.{kind}"

    def get_or_build(self, key: str, kind: str, build: Callable[[], bytes], load: Callable[[bytes], T | None],
                     meta: dict) -> T:
        """Load the cached entry, or build, store and load it; an entry that ``load`` rejects (returns None) is rebuilt.

        Runs under ``<key>.lock`` so two processes build a key once."""
        path = self.path(key, kind)
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            if path.exists():
                loaded = load(path.read_bytes())
                if loaded is not None:
                    return loaded
                log.warning("cached %s %s failed to load; rebuilding it", kind, path.name)
                path.unlink()
            data = build()
            write_bytes(path, data)
            write_bytes(self.root / f"{key}.json", json.dumps({**meta, "kind": kind, "key": key}, indent=1).encode())
            loaded = load(data)
            if loaded is None:
                raise EngineError(f"{meta.get('name', key)}: a freshly built {kind} does not load; "
                                  "purge the cache (`python -m m3cvcav engines purge`) and use -engine torch")
            log.info("built %s %s (%d bytes)", kind, path.name, len(data))
            return loaded

    def onnx(self, spec: ExportSpec) -> OnnxModel:
        """The ONNX export of ``spec`` under ``spec.digest()``, exported once (with external data when ``spec``
        needs it); an entry whose graph does not parse or whose data file is missing is exported again."""
        import onnx

        key = spec.digest()
        path = self.path(key, "onnx")
        data = path.with_name(path.name + ".data")
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            if path.exists():
                try:
                    onnx.load(str(path), load_external_data=False)
                    if not spec.external() or data.exists():
                        return OnnxModel(key, path, data if spec.external() else None)
                except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends: a corrupt file is rebuilt
                    pass
                log.warning("cached onnx %s failed to load; rebuilding it", path.name)
                path.unlink()
            export_onnx_file(spec, path)
            meta = {"name": spec.name, "backend": "onnx", "opset": spec.opset, "dtype": spec.dtype,
                    "external_data": spec.external(), "inputs": [[s.name, list(s.shape), s.dtype] for s in spec.inputs]}
            write_bytes(self.root / f"{key}.json", json.dumps({**meta, "kind": "onnx", "key": key}, indent=1).encode())
            model = OnnxModel(key, path, data if spec.external() else None)
            log.info("exported onnx %s (%d bytes%s)", path.name, len(model), ", external data" if model.data else "")
            return model

    def entries(self) -> list[CacheEntry]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            kind = path.suffix.lstrip(".")
            if kind in KINDS and not path.name.startswith("."):
                meta_path = path.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
                data = path.with_name(path.name + ".data")
                size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
                out.append(CacheEntry(path.stem, kind, path, size, meta))
        return out

    def purge(self, keys: list[str] | None = None) -> int:
        """Delete entries (all, or those whose key starts with one of ``keys``) and their metadata; returns bytes
        freed."""
        freed = 0
        for entry in self.entries():
            if keys and not any(entry.key.startswith(k) for k in keys):
                continue
            with FileLock(str(self.root / f"{entry.key}.lock")):
                freed += entry.size
                entry.path.unlink(missing_ok=True)
                entry.path.with_name(entry.path.name + ".data").unlink(missing_ok=True)
                entry.path.with_suffix(".json").unlink(missing_ok=True)
            (self.root / f"{entry.key}.lock").unlink(missing_ok=True)
        if not keys:
            for timing in self.root.glob("timing-*.cache"):
                freed += timing.stat().st_size
                timing.unlink()
        return freed
