"""setup.py's lower bounds against the library APIs the code uses: an older library that pip would accept must not
meet code it cannot run (fp32 models fed bf16 inputs, a VLM silently in fp32, an error naming a CLI it lacks)."""
from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# (package, first version with the API, the API, where the code relies on it)
API_MINIMUMS = [
    ("diffusers", "0.40.0", "from_pretrained(dtype=...)", "engines/m3cvc"),
    ("transformers", "4.56.0", "from_pretrained(dtype=...)", "engines/m3cvc/describer.py"),
    ("huggingface_hub", "0.34.0", "the `hf` command line that the errors name", "engines/loaders.py"),
]


def _requirements() -> dict[str, list[Requirement]]:
    """Every requirement string in setup.py (install_requires and each extra), by package name."""
    found: dict[str, list[Requirement]] = {}
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    lists = [k.value for k in ast.walk(tree)
             if isinstance(k, ast.keyword) and k.arg in ("install_requires", "extras_require")]
    for node in (n for value in lists for n in ast.walk(value)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"^[A-Za-z0-9_.-]+\s*[<>=!~]",
                                                                                         node.value):
            req = Requirement(node.value)
            found.setdefault(req.name.replace("-", "_").lower(), []).append(req)
    return found


def _lower_bound(req: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


@pytest.mark.parametrize("package, minimum, api, where", API_MINIMUMS)
def test_lower_bounds_cover_the_apis_used(package, minimum, api, where):
    reqs = _requirements().get(package.lower())
    assert reqs, f"setup.py does not require {package}"
    for req in reqs:
        bound = _lower_bound(req)
        assert bound is not None and bound >= Version(minimum), \
            f"setup.py allows {req} but {where} needs {api}, which {package} has from {minimum}"


def test_the_code_uses_those_apis():
    """The table above is about real calls: the m3cvc engines pass ``dtype=`` to ``from_pretrained`` loaders and the
    errors name ``hf download``."""
    engines = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "engines" / "m3cvc").glob("*.py"))
    assert re.search(r"from_pretrained[^\n]*dtype=", engines) or "dtype=self.dtype" in engines
    assert "hf download" in (ROOT / "engines" / "loaders.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("package", ["diffusers", "transformers", "huggingface_hub"])
def test_installed_versions_meet_the_bounds(package):
    try:
        installed = Version(metadata.version(package))
    except metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed (the m3cvc extra)")
    for req in _requirements()[package.lower()]:
        assert installed in req.specifier, f"{package} {installed} does not satisfy {req}"
