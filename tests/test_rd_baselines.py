"""bench.rd baselines: SEI stripping keeps the decode, the CRF search hits reachable targets and flags floors."""
from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from m3cvcav.bench.rd import baselines as bl
from m3cvcav.bench.rd.colour import rgb_to_yuv420

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
