"""A frozen conformance stream (CompressAI's tests/expected): a small committed ``.m3cv`` using every layer of bitstream
1.1 (keyframe tokens, keyframe residual, inter keyframes, bidirectional motion, texts) and what it decodes to, as per-frame
16×9 luma thumbnails. A change that alters parsing or decoding shows here. After an intended change, regenerate with
``M3CVC_REGEN_EXPECTED=1 python -m pytest -q tests/test_conformance.py`` and say why in the commit."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import m3cvcav
from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import open_reader
from tests.conftest import media_path

EXPECTED = Path(__file__).resolve().parent / "expected"
STREAM, FRAMES = EXPECTED / "conformance.m3cv", EXPECTED / "conformance.json"
TOLERANCE = 2.0  # code values per thumbnail pixel: float reconstruction differs slightly across machines


def _thumbnails(path: Path) -> list[list[float]]:
    with m3cvcav.open(path) as stream:
        frames = [f.to_ndarray() for f in stream.decode()]
    return [np.round(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32), (16, 9),
                                interpolation=cv2.INTER_AREA), 2).tolist() for f in frames]


def _regenerate() -> None:
    photo = np.asarray(Image.open(media_path("photos/skimage_astronaut.png")).convert("RGB"))
    frames = [np.ascontiguousarray(cv2.resize(photo[60 + 2 * i:60 + 2 * i + 180, 40 + 6 * i:40 + 6 * i + 320],
                                              (128, 72), interpolation=cv2.INTER_AREA)) for i in range(16)]
    EXPECTED.mkdir(exist_ok=True)
    m3cvcav.encode(iter(frames), STREAM, fps=8, q=10, overwrite=True, vf="select=max=9")
    FRAMES.write_text(json.dumps({"thumbnails": _thumbnails(STREAM)}) + "\n")


def test_conformance_stream_parses_and_decodes_as_recorded():
    if os.environ.get("M3CVC_REGEN_EXPECTED") == "1":
        _regenerate()
    if not STREAM.exists():
        pytest.skip(f"{STREAM} is missing: regenerate it with M3CVC_REGEN_EXPECTED=1")
    with open_reader(STREAM) as reader:
        assert reader.header.version == (1, 1)
        segments = list(reader.segments())
    packets = [U.encode_segment(s) for s in segments]
    assert [U.decode_segment(p) == s for p, s in zip(packets, segments)] == [True] * len(segments)
    assert any(s.residual is not None for s in segments) and any(
        s.motion is not None and s.motion.bidirectional for s in segments)
    assert any(s.header.flags & U.INTER_KEYFRAME and s.tokens is None for s in segments)  # a refresh
    expected = json.loads(FRAMES.read_text())["thumbnails"]
    got = _thumbnails(STREAM)
    assert len(got) == len(expected)
    worst = max(float(np.abs(np.array(a) - np.array(b)).max()) for a, b in zip(got, expected))
    assert worst <= TOLERANCE, f"decoded frames moved by {worst:.2f} code values from tests/expected"
