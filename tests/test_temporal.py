"""Temporal coding: the motion and residual layers (integer-exact parsing, bounds, golden bytes), the decoder's
motion-compensated prediction, the encoder's motion search, and the codec end to end on camera motion over a real
photo — frames follow the source, nothing freezes, rate buys quality, -b:v lands on its target."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import m3cvcav
from m3cvcav.bitstream import symbols
from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.framing import pack_unit
from m3cvcav.bitstream.motion import (CORNERS, NONE, TRANSLATION, FrameMotion, RefMotion, SegmentMotion,
                                      decode_motion, encode_motion)
from m3cvcav.bitstream.residual import decode_residual, encode_residual
from m3cvcav.core.errors import BitstreamError
from m3cvcav.filters.motion_search import MotionSearch
from m3cvcav.filters.prediction import Warper
from m3cvcav.filters.residual import ResidualCoder, apply

from tests.conftest import media_path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-9)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(media_path("photos/skimage_astronaut.png")).convert("RGB"))


def pan(photo: np.ndarray, count: int, step: int = 3, size=(256, 144)) -> list[np.ndarray]:
    """A camera pan over the photo: ``step`` px to the right and 1 px down per frame (exact integer crops)."""
    w, h = size
    return [np.ascontiguousarray(photo[40 + i:40 + i + h, 60 + step * i:60 + step * i + w]) for i in range(count)]


# -- layers -----------------------------------------------------------------------------------------------------------

def test_symbol_streams_roundtrip_with_escapes_and_reject_trailing_bytes():
    rng = np.random.default_rng(3)
    streams = [rng.geometric(0.6, 500) - 1, np.array([0, 31, 32, 10_000, 2 ** 32]), np.zeros(0, np.int64)]
    data = symbols.pack(streams)
    r = U._Reader(data, "test")
    back = symbols.unpack(r, [500, 5, 0])
    assert all(np.array_equal(a, b) for a, b in zip(streams, back))
    with pytest.raises(BitstreamError, match="after the escape values"):
        symbols.unpack(U._Reader(data + b"\x00", "test"), [500, 5, 0])
    with pytest.raises(BitstreamError):
        symbols.unpack(U._Reader(data, "test"), [499, 5, 0])  # more symbols than the unit allows
    for decay in (1, 128, 255):
        t = symbols.table(decay)
        assert t.sum() == 4096 and t.min() >= 1 and (np.diff(t.astype(int)) <= 0).all()
    assert np.array_equal(symbols.unsigned(symbols.signed(np.arange(-5, 6))), np.arange(-5, 6))


def test_motion_layer_roundtrip_golden_bytes_and_bounds():
    frames = [FrameMotion(RefMotion(TRANSLATION, (8 * i, -i) * 4), RefMotion(NONE), weight=4 * i) for i in range(1, 4)]
    motion = SegmentMotion(frames, bidirectional=True)
    data = encode_motion(motion)
    # kind 2 | 3 frames | bidirectional | no grid | 3 streams (modes, corners, grid) | their escapes
    assert data[:5] == bytes([2, 3, 1, 0, 0])
    assert decode_motion(data, 4) == motion
    assert encode_motion(decode_motion(data, 4)) == data  # the same bytes on every machine: integer-only coding
    rng = np.random.default_rng(5)
    gridded = SegmentMotion([FrameMotion(RefMotion(CORNERS, tuple(int(v) for v in rng.integers(-999, 999, 8)),
                                                   rng.integers(-40, 40, (3, 5, 2)).astype(np.int32)))
                             for _ in range(6)], grid_shape=(3, 5))
    assert decode_motion(encode_motion(gridded), 7) == gridded
    with pytest.raises(BitstreamError, match="segment of 8 frames"):
        decode_motion(encode_motion(gridded), 8)
    with pytest.raises(BitstreamError):
        decode_motion(encode_motion(gridded)[:-3], 7)  # truncated
    with pytest.raises(BitstreamError, match="translation"):
        encode_motion(SegmentMotion([FrameMotion(RefMotion(TRANSLATION, (1, 2, 3, 4, 5, 6, 7, 8)))]))


def test_residual_layer_roundtrip_and_quality_rises_as_the_step_falls(photo):
    source = photo[:144, :200]
    blurred = np.asarray(Image.fromarray(source).resize((50, 36)).resize((200, 144)))  # a poor "keyframe"
    coder = ResidualCoder(source, blurred)
    sizes, quality = [], []
    for step in (400, 100, 24):
        residual = coder.code(step)
        data = encode_residual(residual)
        assert decode_residual(data) == residual
        sizes.append(len(data))
        quality.append(psnr(apply(blurred, residual), source))
    assert sizes[0] < sizes[1] < sizes[2] and psnr(blurred, source) < quality[0] < quality[1] < quality[2]
    assert quality[2] > psnr(blurred, source) + 6
    with pytest.raises(BitstreamError):
        decode_residual(data[:-5])


def test_new_units_parse_inside_a_segment():
    seg = U.Segment(U.SegmentHeader(0, 0, 2), motion=SegmentMotion([FrameMotion(RefMotion(TRANSLATION, (3, 4) * 4))]))
    assert U.decode_segment(U.encode_segment(seg)).motion == seg.motion
    head = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 2, 0, 0]))
    with pytest.raises(BitstreamError, match="twice"):
        unit = pack_unit(U.MOTION, encode_motion(seg.motion))
        U.decode_segment(head + unit + unit)


# -- prediction and motion search -----------------------------------------------------------------------------------

def test_prediction_follows_a_translation_and_blends_by_visibility(photo):
    frames = pan(photo, 6)
    h, w = frames[0].shape[:2]
    warper = Warper(w, h)
    # frame 5 is frame 0 moved by (15, 5) px: each pixel of frame 5 sits 15 px right, 5 down in frame 0
    motion = RefMotion(TRANSLATION, (15 * 8, 5 * 8) * 4)
    predicted = warper.predict(FrameMotion(motion), frames[0], None)
    assert np.array_equal(predicted[:h - 5, :w - 15], frames[5][:h - 5, :w - 15])
    # with the next keyframe (frame 5 itself, no motion) weighted fully, the border comes from it
    both = warper.predict(FrameMotion(motion, RefMotion(NONE), weight=8), frames[0], frames[5])
    assert psnr(both, frames[5]) > psnr(predicted, frames[5]) + 3


def test_motion_search_finds_the_pan_and_keeps_pictures_moving(photo):
    frames = pan(photo, 4)
    h, w = frames[0].shape[:2]
    search = MotionSearch(w, h, lam=1e-4, grid_cell=32)
    ref = search.analyse(frames[0])
    ref["decoded"] = ref["rgb"]
    choice = search.choose(search.analyse(frames[3]), ref, [])
    assert choice.motion.model in (TRANSLATION, CORNERS)
    dx = np.mean(choice.motion.corners[0::2]) / 8
    dy = np.mean(choice.motion.corners[1::2]) / 8
    assert abs(dx - 9) < 0.5 and abs(dy - 3) < 0.5
    assert choice.distortion < 0.05


# -- the codec end to end ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coded(photo, tmp_path_factory):
    """A 2.4 s pan at 256x144, 10 fps, encoded at three quality levels and decoded."""
    frames = pan(photo, 24)
    folder = tmp_path_factory.mktemp("temporal")
    out = {}
    for q in (2, 6, 10):
        path = folder / f"q{q}.m3cv"
        m3cvcav.encode(iter(frames), path, fps=10, q=q)
        with m3cvcav.open(path) as stream:
            out[q] = (path, [f.to_ndarray() for f in stream.decode()])
    return frames, out


def test_decoded_frames_follow_the_source_to_the_last_frame(coded):
    frames, out = coded
    path, decoded = out[6]
    assert len(decoded) == len(frames)
    with open_reader(path) as reader:
        segments = list(reader.segments())
    assert all(s.motion is not None for s in segments if s.header.frame_count > 1)
    # no frozen frame: every decoded frame differs from the one before, the tail included
    assert all(np.abs(decoded[i].astype(int) - decoded[i - 1]).mean() > 0.3 for i in range(1, len(decoded)))
    # the motion is the source's: each frame is closer to its own source frame than to the keyframe's
    for i in range(4, len(frames), 5):
        assert psnr(decoded[i], frames[i]) > psnr(decoded[i], frames[0]) + 2
    assert "camera pans right" in segments[0].clip_text  # D^C from the transmitted motion


def test_rate_buys_quality(coded):
    frames, out = coded
    sizes = [out[q][0].stat().st_size for q in (2, 6, 10)]
    quality = [np.mean([psnr(d, s) for d, s in zip(out[q][1], frames)]) for q in (2, 6, 10)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert quality[0] < quality[1] < quality[2]


def test_bitrate_target_lands_within_five_percent(photo, tmp_path):
    frames = pan(photo, 30)
    for target in (12_000, 40_000):
        result = m3cvcav.encode(iter(frames), tmp_path / "b.m3cv", fps=10, bitrate=target, overwrite=True)
        assert abs(result.bitrate - target) <= 0.05 * target, (target, result)


def test_refresh_inserts_a_keyframe_where_prediction_fails(photo, tmp_path, media):
    frames = pan(photo, 12)
    other = np.asarray(Image.open(media("photos/skimage_coffee.png")).convert("RGB"))[100:244, 100:356]
    # the lower half of the picture changes to other content at frame 6: no motion predicts it
    changed = [f if i < 6 else np.concatenate([f[:72], other[72:]]) for i, f in enumerate(frames)]
    counts = {}
    for refresh in (1, 0):
        m3cvcav.encode(iter(changed), tmp_path / "r.m3cv", fps=10, q=6, overwrite=True,
                       vf=f"select=cut=2:threshold=100,tokenize=refresh={refresh}")
        with open_reader(tmp_path / "r.m3cv") as reader:
            counts[refresh] = [s.header.first_pts for s in reader.segments()]
    assert counts[0] == [0] and 6 in counts[1]


def test_local_motion_is_refreshed_not_frozen(photo, tmp_path):
    """A static shot with one object moving across it: no global motion carries it, so inter keyframes (the previous
    keyframe plus a residual) must, and the decoded object follows its source instead of freezing."""
    background = np.ascontiguousarray(photo[200:344, 100:356])
    patch = photo[20:68, 180:228]
    frames = []
    for i in range(16):
        f = background.copy()
        f[50:98, 20 + 8 * i:68 + 8 * i] = patch
        frames.append(f)
    m3cvcav.encode(iter(frames), tmp_path / "l.m3cv", fps=8, q=6)
    with m3cvcav.open(tmp_path / "l.m3cv") as stream:
        decoded = [f.to_ndarray() for f in stream.decode()]
    with open_reader(tmp_path / "l.m3cv") as reader:
        segments = list(reader.segments())
    assert any(s.header.flags & U.INTER_KEYFRAME for s in segments)
    assert all(np.abs(decoded[i].astype(int) - decoded[i - 1]).mean() > 0.3 for i in range(1, len(decoded)))
    for i in (8, 15):  # where the object is now looks like the object, not like the background it covered at first
        box = (slice(50, 98), slice(20 + 8 * i, 68 + 8 * i))
        assert psnr(decoded[i][box], frames[i][box]) > psnr(decoded[i][box], frames[0][box]) + 3
