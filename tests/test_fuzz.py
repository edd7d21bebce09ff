"""Fuzzing of every reader, seeded with valid streams (mutations, insertions, truncations, garbage): each input ends in a
decision (segments, CorruptSegment reports, or a BitstreamError), never another exception, a hang or a large allocation.

CI runs a few examples per target; a longer local run: ``M3CVC_FUZZ_EXAMPLES=3000 python -m pytest -q tests/test_fuzz.py``.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import open_reader, open_writer
from m3cvcav.engines.interfaces import GenerationParams
from m3cvcav.core.errors import BitstreamError
from streams import sequence_header, synthetic_segments

EXAMPLES = int(os.environ.get("M3CVC_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seed_streams() -> dict[str, bytes]:
    header = sequence_header(2)
    segments = synthetic_segments(seconds=2, segment_frames=16)
    segments[0].base = U.BaseLayer((64, 36), [bytes(range(i, i + 20)) for i in range(16)])
    segments[1].frame_pts = list(range(16, 32))
    segments[2].params = GenerationParams(seed=5, steps=3, scheduler_id=2, mode="tt2v")
    out = {"segment": U.encode_segment(segments[0]),
           "sequence": U.encode_sequence_header_payload(header)}
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("m3cv", "mkv"):
            path = Path(tmp) / f"seed.{ext}"
            with open_writer(path, header) as w:
                for s in segments:
                    w.write_segment(s)
            out[ext] = path.read_bytes()
    return out


SEEDS = _seed_streams()


@st.composite
def mutated(draw, name: str) -> bytes:
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def read_all(data: bytes, suffix: str) -> list:
    """Open and drain a reader on ``data``; only BitstreamError may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f.{suffix}"
        path.write_bytes(data)
        try:
            with open_reader(path) as r:
                return list(r.segments())
        except BitstreamError:
            return []


@FUZZ
@given(mutated("segment"))
def test_fuzz_segment_parser(data):
    try:
        seg = U.decode_segment(data)
    except BitstreamError:
        return
    if seg.base is not None and not seg.base.complete:  # a damaged base: the frames before the damage, said so
        assert len(seg.base.units) < seg.header.frame_count
        return
    assert U.decode_segment(U.encode_segment(seg)) == seg  # whatever parses re-encodes to the same meaning


@FUZZ
@given(mutated("sequence"))
def test_fuzz_sequence_header(data):
    try:
        h = U.decode_sequence_header_payload(data)
    except BitstreamError:
        return
    assert 1 <= h.width <= U.MAX_DIMENSION and len(h.models) <= U.MAX_MODELS


@FUZZ
@given(mutated("m3cv"))
def test_fuzz_m3cv_reader(data):
    for item in read_all(data, "m3cv"):
        assert isinstance(item, (U.Segment, U.CorruptSegment))


@FUZZ
@given(mutated("mkv"))
def test_fuzz_mkv_reader(data):
    for item in read_all(data, "mkv"):
        assert isinstance(item, (U.Segment, U.CorruptSegment))


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([b"M3CV", b"\x1a\x45\xdf\xa3", b""]))
def test_fuzz_garbage(body, magic):
    assert read_all(magic + body, "bin") == [] or magic


def test_m3cv_pipe_reader_on_mutations():
    """The streaming path (no file, no seeking) decides the same way as the file path."""
    rng = np.random.default_rng(7)
    seed = SEEDS["m3cv"]
    for _ in range(20):
        data = bytearray(seed)
        for pos in rng.integers(0, len(data), 3):
            data[pos] ^= 0xFF
        try:
            with open_reader(io.BufferedReader(io.BytesIO(bytes(data)))) as r:
                streamed = list(r.segments())
        except BitstreamError:
            streamed = []
        assert streamed == read_all(bytes(data), "m3cv")


@pytest.mark.parametrize("name", ["m3cv", "mkv"])
def test_seeds_are_valid(name):
    got = read_all(SEEDS[name], name)
    assert len(got) == 3 and all(isinstance(s, U.Segment) for s in got)
