"""Helpers the tests import (fixtures are in conftest.py): the shared media, the lite weights, the command in a
subprocess and its error line, an encoder held mid-write."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def encoder_mid_write(folder: Path, name: str, *options: str,
                      ready: Callable[[subprocess.Popen], bool] = lambda proc: True) -> subprocess.Popen:
    """An encoder (``options`` added to its command line) reading raw video from a pipe the test holds open, returned
    once its output's temporary file exists and ``ready(proc)``: it stays mid-encode, waiting for frames, whatever the
    machine's speed (an encode of a file could finish before the test looks)."""
    require_lite_weights()
    width, height = 128, 96
    proc = subprocess.Popen([sys.executable, "-m", "m3cvcav", "-i", "-", "-c", "m3cvc", "-q", "0", "-vf",
                             "select=max=5", *options, str(folder / name)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode())
    ramp = (np.arange(width * height) % 251).astype(np.uint8).reshape(height, width)

    def writing() -> bool:
        return bool(list(folder.glob(".*.part*"))) and ready(proc)

    deadline = time.monotonic() + 120
    shift = 0
    while not writing() and time.monotonic() < deadline and proc.poll() is None:
        for _ in range(10):  # a pan, so that segments keep coming
            proc.stdin.write(b"FRAME\n" + np.roll(ramp, shift, axis=1).tobytes() + bytes(width * height // 2))
            shift += 2
        proc.stdin.flush()
        time.sleep(0.1)
    if not writing():
        proc.kill()
        raise AssertionError(f"the encoder never started writing (exit {proc.wait()}): {proc.stderr.read().decode()}")
    return proc
