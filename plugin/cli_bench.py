"""``python -m m3cvcav bench NAME [...]``: runs the benchmark module ``m3cvcav.bench.NAME``."""
from __future__ import annotations

import importlib
import pkgutil

from m3cvcav import bench
from m3cvcav.core.errors import UsageError, missing_package


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m m3cvcav bench NAME [options]   (NAME: " + ", ".join(names) + ")")
        return 0 if argv else 2
    if argv[0] not in names:
        raise UsageError(f"unknown benchmark {argv[0]!r}: choose one of {', '.join(names)}")
    try:
        module = importlib.import_module(f"m3cvcav.bench.{argv[0]}")
        return int(module.main(argv[1:]) or 0)
    except ModuleNotFoundError as err:  # an optional package: name the extra that brings it
        if not err.name or err.name.startswith("m3cvcav"):
            raise
        raise missing_package(err.name, f"bench {argv[0]}") from None
