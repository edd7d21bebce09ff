"""bench.rd baselines: SEI stripping keeps the decode, the CRF search hits reachable targets and flags floors."""
from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from m3cvcav.bench.rd import DEFAULT_BASELINES
from m3cvcav.bench.rd import baselines as bl
from m3cvcav.bench.rd.color import rgb_to_yuv420

FPS = Fraction(25)
X264, X265 = (next(b for b in bl.BASELINES if b.name == n) for n in ("x264", "x265"))


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    big = (cv2.GaussianBlur(rng.random((72, 200, 3)).astype(np.float32), (0, 0), 2) * 600 - 170).clip(0, 255)
    return [rgb_to_yuv420(np.ascontiguousarray(big[:, 3 * i: 3 * i + 128]).astype(np.uint8)) for i in range(10)]


def test_strip_h264_sei_on_annex_b():
    sps, sei = b"\x00\x00\x00\x01\x67\x42\xc0\x1e", b"\x00\x00\x01\x06\x05\x10\xaa"
    idr = b"\x00\x00\x01\x65\x88\x00\x84"
    assert bl.strip_h264_sei(sps + sei + idr) == sps + b"\x00\x00\x00\x01\x65\x88\x00\x84"


def test_x264_without_sei_decodes_to_the_same_frames(clip):
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base, cc.framerate = 128, 72, "yuv420p", 1 / FPS, FPS
    cc.options = {"preset": "medium", "crf": "35"}
    raw = []
    for i, planes in enumerate(clip):
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = i
        raw += [bytes(p) for p in cc.encode(frame)]
    raw += [bytes(p) for p in cc.encode(None)]
    ours = bl.encode(X264, clip, FPS, 35)
    assert ours.bytes < sum(map(len, raw)) - 200  # x264's option string is gone
    a, _ = bl.decode(X264, raw)
    b, _ = bl.decode(X264, ours.packets)
    assert len(b) == len(clip) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_crf_search_hits_reachable_targets_and_flags_the_floor(clip):
    at = {crf: bl.kbps(bl.encode(X265, clip, FPS, crf).bytes, len(clip), FPS) for crf in (28, 40, 51)}
    got = bl.crf_search(X265, clip, FPS, [at[28], at[40], at[51] / 4])
    params = [e.param for _, e, _ in got]
    assert params == ["crf=51", "crf=40", "crf=28"]  # sorted by size, distinct
    floors = {e.param: f for _, e, f in got}
    assert floors == {"crf=51": True, "crf=40": False, "crf=28": False}


def test_availability_reasons():
    assert bl.available(X264) is None
    vvc = next(b for b in bl.BASELINES if b.name == "vvc")
    why = bl.available(vvc)
    assert why is None or "libvvenc" in why


def test_svtav1_goes_below_its_crf_floor_with_vbr(clip):
    svt = next(b for b in bl.BASELINES if b.name == "svtav1")
    floor = bl.kbps(bl.encode(svt, clip, FPS, 63).bytes, len(clip), FPS)
    ((target, enc, is_floor),) = bl.crf_search(svt, clip, FPS, [floor / 2])
    assert enc.param.startswith("vbr=") and bl.kbps(enc.bytes, len(clip), FPS) < floor
    assert is_floor == (bl.kbps(enc.bytes, len(clip), FPS) > target * bl.VBR_TOLERANCE)
    again = bl.encode_param(svt, clip, FPS, enc.param)  # the worker re-runs a point from its param
    assert abs(again.bytes - enc.bytes) <= 0.02 * enc.bytes
    with pytest.raises(ValueError, match="crf=N or vbr=Xk"):
        bl.encode_param(svt, clip, FPS, "qp=3")


def test_targets_below_the_floor_share_one_floor_point(clip):
    svt = next(b for b in bl.BASELINES if b.name == "svtav1")
    floor = bl.kbps(bl.encode(svt, clip, FPS, 63).bytes, len(clip), FPS)
    got = bl.crf_search(svt, clip, FPS, [floor / 20, floor / 40, floor / 80])
    assert len(got) == 1 and got[0][2]  # one hollow point, not three near-identical ones


@pytest.fixture(scope="module")
def tiny() -> list[np.ndarray]:
    """Four frames of a smooth moving pattern, 64x36."""
    rng = np.random.default_rng(1)
    big = (cv2.GaussianBlur(rng.random((36, 80, 3)).astype(np.float32), (0, 0), 3) * 900 - 320).clip(0, 255)
    return [rgb_to_yuv420(np.ascontiguousarray(big[:, 2 * i: 2 * i + 64]).astype(np.uint8)) for i in range(4)]


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the luma of two 64x36 I420 frames."""
    mse = float(np.mean((a[:36].astype(float) - b[:36]) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-9))


def test_lookup_names_reduced_size_baselines():
    b = bl.lookup("svtav1@1/4")
    assert (b.name, b.encoder, b.divisor, b.vbr_below_floor) == ("svtav1@1/4", "libsvtav1", 4, True)
    assert bl.lookup("x265") is X265
    assert [bl.lookup(n).divisor for n in DEFAULT_BASELINES.split(",")] == [1, 1, 1, 1, 2, 4, 2, 4]
    for bad in ("x266", "x265@2", "x265@1/1", "x265@1/x", "x265@"):
        with pytest.raises(ValueError, match="NAME@1/k"):
            bl.lookup(bad)


def test_coded_size_is_a_fraction_of_the_picture_rounded_to_even():
    assert bl.coded_size(bl.lookup("x265@1/2"), 64, 36) == (32, 18)
    assert bl.coded_size(bl.lookup("x265@1/4"), 64, 36) == (16, 8)  # 9 rounds to an even 8
    assert bl.coded_size(bl.lookup("x265@1/4"), 1280, 720) == (320, 180)
    assert bl.coded_size(X265, 64, 36) == (64, 36)


def test_resize_keeps_flat_planes_flat():
    planes = np.full((54, 64), 90, np.uint8)
    planes[36:] = 160
    small = bl.resize([planes], 32, 18)[0]
    assert small.shape == (27, 32) and set(np.unique(small[:18])) == {90} and set(np.unique(small[18:])) == {160}
    back = bl.resize([small], 64, 36)[0]
    assert np.array_equal(back, planes)


@pytest.mark.parametrize("name", ["x265@1/2", "svtav1@1/4"])
def test_reduced_baseline_codes_the_small_picture_and_decodes_at_source_size(tiny, name):
    b = bl.lookup(name)
    w, h = bl.coded_size(b, 64, 36)
    got = bl.crf_search(b, tiny, FPS, [30.0, 300.0])
    assert len(got) >= 1
    for _, enc, _ in got:
        coded, _ = bl.decode(b, enc.packets)
        assert [p.shape for p in coded] == [(h * 3 // 2, w)] * len(tiny)  # the stream holds the small picture
        full, _ = bl.decode(b, enc.packets, (64, 36))
        assert [p.shape for p in full] == [(54, 64)] * len(tiny)
        assert all(np.array_equal(f, u) for f, u in zip(full, bl.resize(coded, 64, 36)))
        assert all(psnr_y(f, s) > 20 for f, s in zip(full, tiny))  # a blurred copy of the source, not noise
    best = max(got, key=lambda t: t[1].bytes)[1]
    assert bl.encode_param(b, tiny, FPS, best.param).bytes == pytest.approx(best.bytes, rel=0.02)  # worker re-run


def test_reduced_baseline_spends_less_than_full_size_at_the_same_crf(tiny):
    full = bl.encode(X265, tiny, FPS, 30)
    half = bl.encode(X265, bl.shrink(bl.lookup("x265@1/2"), tiny), FPS, 30)
    assert half.bytes < full.bytes


def test_svtav1_keeps_its_crf_floor_on_pictures_too_small_for_vbr(tiny):
    svt = bl.lookup("svtav1")  # 64x36: SVT-AV1 refuses rate control under 64 px a side
    floor = bl.kbps(bl.encode(svt, tiny, FPS, 63).bytes, len(tiny), FPS)
    ((_, enc, is_floor),) = bl.crf_search(svt, tiny, FPS, [floor / 4])
    assert (enc.param, is_floor) == ("crf=63", True)
