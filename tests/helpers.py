"""Helpers the tests import (fixtures are in conftest.py): the shared media, the lite weights, the command in a
subprocess and its error line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def media_path(relative: str) -> Path:
    """Path of a file under ../shared/media, or skip the test saying what is missing."""
    path = MEDIA / relative
    if not path.exists():
        pytest.skip(f"test media {path} is absent (../shared/media is provided beside the checkout in CI)")
    return path


def require_lite_weights() -> None:
    """Skip the test, saying why, when the lite tokenizer's shipped weights are not installed."""
    from m3cvcav.engines import tokenizer

    if not tokenizer.WEIGHTS.exists():
        pytest.skip(f"the lite tokenizer weights ({tokenizer.WEIGHTS}) are not installed")


def error_line(stderr: bytes) -> str:
    """The one ``m3cvcav:`` line a failing command prints (asserting there is exactly one)."""
    lines = [line for line in stderr.decode().splitlines() if line.startswith("m3cvcav:")]
    assert len(lines) == 1, stderr.decode()
    return lines[0]


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m m3cvcav ARGS`` in a subprocess, its output captured (bytes unless ``text=True``)."""
    return subprocess.run([sys.executable, "-m", "m3cvcav", *args], capture_output=True, timeout=timeout, **kw)
