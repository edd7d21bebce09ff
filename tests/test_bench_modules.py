"""Every benchmark module imports (a smoke test: `bench NAME` must never fail on a stale import), and the command
blames a broken import of m3cvcav itself on the code, never on a package the user should install."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

from helpers import error_line
from m3cvcav import bench
from m3cvcav.cli_bench import available

MODULES = sorted(m.name for m in pkgutil.walk_packages(bench.__path__, "m3cvcav.bench."))


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_module_imports(name):
    module = importlib.import_module(name)
    if name.removeprefix("m3cvcav.bench.") in available():  # a `bench NAME` subcommand
        assert callable(getattr(module, "main", None)), f"{name} has no main(argv)"


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


def test_a_broken_internal_import_is_an_internal_error_not_a_missing_package():
    """What `bench engines` said when it imported a deleted module of its own: "needs the Python package m3cvcav"."""
    done = _bench_engines_without("m3cvcav.engines.lite.motion")
    line = error_line(done.stderr)
    assert done.returncode == 1 and "internal error" in line and "m3cvcav.engines.lite.motion" in line
    assert "not installed" not in line and b"Traceback" not in done.stderr
    done = _bench_engines_without("torch")  # a third-party package that is missing: that is what to install
    line = error_line(done.stderr)
    assert done.returncode == 1 and "bench engines needs" in line and "torch" in line and "internal" not in line
