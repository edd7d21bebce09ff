"""bench.rd color conversion (on ``ColorDescription``): known BT.709 code values, a Y4M round trip through the reader, and the 601/709 check."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from m3cvcav.bench.rd.color import color_name, color_of_stream, parse_color, rgb_to_yuv420, yuv420_to_rgb
from m3cvcav.bench.rd.video import read_video, write_y4m
from m3cvcav.bitstream.units import ColorDescription


def _blocky(seed: int = 0) -> np.ndarray:
    """Random colors constant over 2×2 blocks, so 4:2:0 subsampling loses nothing."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)


def test_bt709_limited_code_values_of_primaries():
    for rgb, yuv in (((255, 0, 0), (63, 102, 240)), ((0, 255, 0), (173, 42, 26)), ((0, 0, 255), (32, 240, 118)),
                     ((255, 255, 255), (235, 128, 128)), ((0, 0, 0), (16, 128, 128))):
        planes = rgb_to_yuv420(np.full((4, 4, 3), rgb, np.uint8))
        assert (planes[0, 0], planes[4, 0], planes[5, 0]) == yuv, rgb


def test_round_trip_through_y4m_reader_matches_within_two_code_values(tmp_path):
    img = _blocky()
    path = tmp_path / "c.y4m"
    write_y4m(path, [rgb_to_yuv420(img)] * 2, Fraction(25))
    video = read_video(path)
    assert video.color == ColorDescription()  # Y4M says nothing: the stated default, BT.709 limited
    back = yuv420_to_rgb(video.frames[1], video.color)
    assert np.abs(back.astype(int) - img).max() <= 2  # 8-bit rounding each way


def test_matches_swscale_bt709_and_detects_a_bt601_mismatch():
    img = _blocky(1)
    planes = rgb_to_yuv420(img)
    ours = yuv420_to_rgb(planes, parse_color("bt709 limited"))
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    sws = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray()
    assert np.abs(sws.astype(int) - ours).max() <= 4  # swscale's fixed-point and chroma filter
    wrong = yuv420_to_rgb(planes, parse_color("bt601 limited"))
    assert np.abs(wrong.astype(int) - img).max() > 20


def test_full_range_differs_from_limited_and_round_trips():
    img = _blocky(2)
    full = parse_color("bt709 full")
    planes = rgb_to_yuv420(img, full)
    assert planes[:48].max() > 235 or planes[:48].min() < 16
    assert np.abs(yuv420_to_rgb(planes, full).astype(int) - img).max() <= 2


@pytest.mark.parametrize("codes,expected", [((1, 1), "bt709 limited"), ((5, 2), "bt601 full"), ((6, 1), "bt601 limited"),
                                            ((2, 0), "bt709 limited")])
def test_color_of_stream_codes(codes, expected):
    assert color_name(color_of_stream(*codes)) == expected
    assert color_of_stream(*codes).full_range == parse_color(expected).full_range
