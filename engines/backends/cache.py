"""The on-disk engine cache: ``$M3CVC_ENGINE_CACHE`` or ``~/.cache/m3cvcav/engines``.

Layout: ``<root>/<key>.<kind>`` (kind ``onnx`` or ``plan``) with ``<key>.json`` beside it (what it is: network, backend,
profiles, precision, versions), ``<key>.lock`` while it is built, and ``timing-<trt>-<gpu>.cache`` TensorRT timing
caches.
Entries are written to a temp file then renamed, under a file lock, so concurrent builders never see half files.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from m3cvcav.errors import EngineError
from m3cvcav.log import get_logger

from .export import ShapeProfile

T = TypeVar("T")
log = get_logger("engines.cache")
KINDS = ("onnx", "plan")


def cache_root() -> Path:
    return Path(os.environ.get("M3CVC_ENGINE_CACHE") or Path.home() / ".cache" / "m3cvcav" / "engines").expanduser()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def trt_engine_key(onnx: bytes, profiles: tuple[ShapeProfile, ...], precision: str, flags: dict,
                   trt_version: str, gpu_name: str, capability: tuple[int, int]) -> str:
    """sha256 hex of everything a serialized TensorRT engine depends on."""
    meta = {"onnx": hashlib.sha256(onnx).hexdigest(), "profiles": [p.to_json() for p in profiles],
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
            atomic_write(path, data)
            atomic_write(self.root / f"{key}.json", json.dumps({**meta, "kind": kind, "key": key}, indent=1).encode())
            loaded = load(data)
            if loaded is None:
                raise EngineError(f"{meta.get('name', key)}: a freshly built {kind} does not load; "
                                  "purge the cache (`python -m m3cvcav engines purge`) and use -engine torch")
            log.info("built %s %s (%d bytes)", kind, path.name, len(data))
            return loaded

    def entries(self) -> list[CacheEntry]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            kind = path.suffix.lstrip(".")
            if kind in KINDS and not path.name.startswith("."):
                meta_path = path.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
                out.append(CacheEntry(path.stem, kind, path, path.stat().st_size, meta))
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
                entry.path.with_suffix(".json").unlink(missing_ok=True)
            (self.root / f"{entry.key}.lock").unlink(missing_ok=True)
        if not keys:
            for timing in self.root.glob("timing-*.cache"):
                freed += timing.stat().st_size
                timing.unlink()
        return freed
