"""Every benchmark module imports (a smoke test: `bench NAME` must never fail on a stale import), every import of
m3cvcav in the tree names a module that exists (function-local ones too: `bench tokenizer` once failed on one), and
the command blames a broken import of m3cvcav itself on the code, never on a package the user should install."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path
import subprocess
import sys

import pytest

from helpers import error_line, media_path
from m3cvcav import bench
from m3cvcav.cli_bench import available

MODULES = sorted(m.name for m in pkgutil.walk_packages(bench.__path__, "m3cvcav.bench."))


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_module_imports(name):
    module = importlib.import_module(name)
    if name.removeprefix("m3cvcav.bench.") in available():  # a `bench NAME` subcommand
        assert callable(getattr(module, "main", None)), f"{name} has no main(argv)"


def _imports(path: Path, package: str) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every import of an m3cvcav module in ``path`` (a module of ``package``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "m3cvcav"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "m3cvcav":
                out += [(node.lineno, base, a.name) for a in node.names]
    return out


def test_every_import_of_m3cvcav_in_the_tree_names_a_module_that_exists():
    roots = {name: Path(importlib.import_module(name).__path__[0])
             for name in ("m3cvcav", *(f"m3cvcav.{part}" for part in ("core", "bitstream", "engines", "filters",
                                                                       "bench")))}
    missing = []
    for root_name, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join((root_name, *parts[:-1], *([] if parts[-1] == "__init__" else [parts[-1]])))
            package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
            for line, target, name in _imports(path, package):
                if importlib.util.find_spec(target) is None:
                    missing.append(f"{module}:{line} {target}")
                elif name and name != "*" and not hasattr(importlib.import_module(target), name) \
                        and importlib.util.find_spec(f"{target}.{name}") is None:
                    missing.append(f"{module}:{line} {target}.{name}")
    assert not missing, missing


@pytest.mark.slow
def test_bench_engines_runs_and_lists_only_engines_that_exist():
    done = subprocess.run([sys.executable, "-m", "m3cvcav", "bench", "engines", "--json", "--budget", "0.01"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "interpolator" not in done.stdout and '"motion DIS dense flow (pair)"' in done.stdout


def _bench_engines_without(module: str) -> subprocess.CompletedProcess:
    """``bench engines`` in a process where importing ``module`` fails as if it had been deleted."""
    code = (f"import sys; sys.modules[{module!r}] = None; from m3cvcav.__main__ import main; "
            "sys.exit(main(['bench', 'engines']))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)


@pytest.mark.slow  # two processes that load the engines
def test_a_broken_internal_import_is_an_internal_error_not_a_missing_package():
    """What `bench engines` said when it imported a deleted module of its own: "needs the Python package m3cvcav"."""
    done = _bench_engines_without("m3cvcav.engines.lite.motion")
    line = error_line(done.stderr)
    assert done.returncode == 1 and "internal error" in line and "m3cvcav.engines.lite.motion" in line
    assert "not installed" not in line and b"Traceback" not in done.stderr
    done = _bench_engines_without("torch")  # a third-party package that is missing: that is what to install
    line = error_line(done.stderr)
    assert done.returncode == 1 and "bench engines needs" in line and "torch" in line and "internal" not in line


TRAINING = ("train", "tokenizer.data", "tokenizer.export", "codebook")  # what a module of training code is named


@pytest.mark.slow
def test_an_encode_and_a_decode_import_no_training_code(tmp_path):
    """Training (tokenizer, enhancer, codebooks) lives apart from the codec: neither side imports it."""
    code = f"""
import sys
import numpy as np
import m3cvcav
frames = [np.full((96, 160, 3), 40 + 8 * i, np.uint8) for i in range(6)]
m3cvcav.encode(iter(frames), {str(tmp_path / "a.mkv")!r}, fps=25, overwrite=True)
m3cvcav.decode({str(tmp_path / "a.mkv")!r}, {str(tmp_path / "b.y4m")!r}, overwrite=True)
print("\\n".join(m for m in sys.modules if m.startswith("m3cvcav")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    assert "m3cvcav.filters.generate" in modules and "m3cvcav.engines.lite.enhancer" in modules
    assert not [m for m in modules if any(word in m for word in TRAINING)]


def test_a_refused_command_line_loads_no_model_library(tmp_path):
    """Checking the inputs and the output name, reading the profile and printing the one line need no torch (1.3 s
    to import): a mistyped command answers at once."""
    code = f"""
import sys
from m3cvcav.__main__ import main
status = main(["-i", {str(media_path("clips/vtest.avi"))!r}, {str(tmp_path / "none" / "out.mkv")!r}])
print(status, *(m for m in ("torch", "transformers", "diffusers", "onnxruntime") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["1"], done.stdout + done.stderr
    assert "does not exist" in done.stderr
