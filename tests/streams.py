"""Synthetic streams for the container, probe and fuzz tests (test data; the benchmarks model their own workloads).

``sequence_header(models)``: a 512x288 header that names ``models`` model hashes. ``synthetic_segments``: a clip cut into
segments, each with a real rANS-coded (1, 18, 32) keyframe token grid, a frame text and a clip text, every segment after
the first flagged as a scene cut (a pipe-like output is ``bitstream.containers.PipeSink``). Imported as
``from streams import ...`` (pytest puts tests/ on sys.path, as for tiny_models).
"""
from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from m3cvcav.bitstream.entropy import TokenModel, encode_tokens
from m3cvcav.bitstream.units import (SCENE_CUT, KeyframeTokens, ModelRef, Segment, SegmentHeader,
                                     SequenceHeader)

WIDTH, HEIGHT = 512, 288
GRID = (1, 18, 32)
VOCAB = 1024


def sequence_header(models: int, fps: int = 24) -> SequenceHeader:
    refs = [ModelRef(i + 1, hashlib.sha256(b"model %d" % i).digest()) for i in range(models)]
    return SequenceHeader(WIDTH, HEIGHT, Fraction(fps), Fraction(1, fps), profile_id=1, models=refs)


def synthetic_segments(seconds: float, segment_frames: int, fps: int = 24, seed: int = 0) -> list[Segment]:
    """``seconds`` at ``fps`` in segments of ``segment_frames`` (the last one shorter when it does not divide)."""
    rng = np.random.default_rng(seed)
    model = TokenModel.fit([rng.integers(0, VOCAB, GRID) for _ in range(2)], VOCAB, classes=0)
    total = round(seconds * fps)
    return [Segment(SegmentHeader(i, start, min(segment_frames, total - start), 0, SCENE_CUT if i else 0),
                    KeyframeTokens(1, 1, GRID, (HEIGHT, WIDTH), encode_tokens(rng.integers(0, VOCAB, GRID), model)),
                    f"frame {i}: a rabbit in a meadow", f"clip {i}: the camera pans right")
            for i, start in enumerate(range(0, total, segment_frames))]
