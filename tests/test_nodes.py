"""source and sink nodes on generated inputs (odd sizes, 10-bit, 4:4:4, VFR, rotation, stills, colour), and the
encoder/decoder nodes on the lite profile."""
from __future__ import annotations

import errno
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.atomic import check_output
from m3cvcav.core.errors import InputError, OutputError, UsageError
from m3cvcav.filters.items import AudioPacket, Frame, VideoInfo
from m3cvcav.filters.sink import Sink
from m3cvcav.filters.source import Source


def gradient(h: int, w: int, shift: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // max(w - 1, 1) + shift) % 256, y * 255 // max(h - 1, 1),
                     np.full_like(x, 90)], -1).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], *, codec="libx264", pix_fmt="yuv420p", rate=10,
                pts: list[int] | None = None, time_base: Fraction | None = None, rotation: int = 0,
                options: dict | None = None, colorspace: int | None = None, full_range: bool = False) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        if colorspace is not None:
            stream.codec_context.colorspace = {"ITU601": 6, "ITU709": 1}[colorspace]
            stream.codec_context.color_range = 2 if full_range else 1
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if colorspace is not None:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace,
                                       dst_color_range="JPEG" if full_range else "MPEG")
            frame.pts = pts[i] if pts else i
            frame.time_base = time_base or Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def frames_of(source: Source) -> list[Frame]:
    return [item for item in source.run() if isinstance(item, Frame)]


def test_odd_size_4k4_roundtrip_keeps_every_pixel(tmp_path):
    images = [gradient(241, 321, 7 * i) for i in range(3)]
    src = write_video(tmp_path / "odd.mkv", images, pix_fmt="yuv444p", options={"crf": "0"})
    source = Source(src)
    assert (source.info.width, source.info.height, source.info.frame_count) == (321, 241, 3)
    got = frames_of(source)
    assert [f.image.shape for f in got] == [(241, 321, 3)] * 3
    assert np.abs(got[1].image.astype(int) - images[1]).mean() < 2.5
    sink = Sink(tmp_path / "back.mp4", source.info)
    for frame in got:
        sink.write(frame)
    sink.close()
    with av.open(str(tmp_path / "back.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.codec_context.pix_fmt) == (321, 241, "yuv444p")
        assert s.frames == 3
    assert not list(tmp_path.glob(".*part*"))


def test_10bit_input_is_converted_with_its_matrix(tmp_path):
    image = np.full((32, 48, 3), (200, 60, 30), np.uint8)
    src = write_video(tmp_path / "ten.mkv", [image] * 2, codec="ffv1", pix_fmt="yuv420p10le", colorspace="ITU709")
    got = frames_of(Source(src))
    assert np.abs(got[0].image.astype(int) - image).max() <= 3


@pytest.mark.parametrize("space,code,full", [("ITU601", 6, False), ("ITU709", 1, True)])
def test_colour_metadata_is_read_and_honoured(tmp_path, space, code, full):
    image = np.full((32, 32, 3), (40, 180, 220), np.uint8)
    src = write_video(tmp_path / "c.mkv", [image] * 2, codec="ffv1", pix_fmt="yuv444p", colorspace=space,
                      full_range=full)
    source = Source(src)
    assert source.info.color.matrix in ((code, 5) if code == 6 else (code,)) and source.info.color.full_range == full
    assert np.abs(frames_of(source)[0].image.astype(int) - image).max() <= 3


def test_vfr_timestamps_are_kept(tmp_path):
    pts = [0, 40, 120, 130, 400]
    src = write_video(tmp_path / "vfr.mkv", [gradient(16, 16, i) for i in range(5)], pts=pts,
                      time_base=Fraction(1, 1000), rate=25)
    got = frames_of(Source(src))
    assert [round(f.time * 1000) for f in got] == pts


def test_rotation_is_applied_like_ffmpeg(tmp_path):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :8] = 255  # white left band
    src = write_video(tmp_path / "rot.mp4", [image] * 2, rotation=90)
    source = Source(src)
    assert (source.info.width, source.info.height) == (16, 32)
    out = frames_of(source)[0].image
    assert out.shape == (32, 16, 3)
    assert out[28:, :, 0].mean() > 200 and out[:20, :, 0].mean() < 30  # left band → bottom, as ffmpeg autorotates


def test_still_image_is_a_one_frame_video(media):
    source = Source(media("photos/skimage_chelsea.png"))
    assert source.info.frame_count == 1
    (frame,) = frames_of(source)
    assert frame.image.shape == (300, 451, 3) and frame.pts == 0


def test_seek_duration_and_audio_passthrough(media):
    source = Source(media("clips/bigbuckbunny.mp4"), ss=2, t=1)
    items = list(source.run())
    frames = [f for f in items if isinstance(f, Frame)]
    audio = [a.packet for a in items if isinstance(a, AudioPacket)]
    assert len(frames) == 25 and frames[0].pts == 0
    assert audio and all(0 <= float(p.pts * p.time_base) < 1.0 for p in audio)


def test_bad_inputs_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Source(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="cannot read"):
        Source(tmp_path / "junk.mp4")
    with av.open(str(tmp_path / "a.wav"), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        Source(tmp_path / "a.wav")


INFO = VideoInfo(64, 48, Fraction(10), Fraction(1, 10), ColorDescription(1, 1, 1, False))


def _write(sink: Sink, n: int = 3) -> None:
    for i in range(n):
        sink.write(Frame(gradient(48, 64, 20 * i), i, Fraction(1, 10), i))


def test_sink_images_patterns_and_y4m(tmp_path):
    sink = Sink(tmp_path / "f%03d.png", INFO)
    _write(sink)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f001.png", "f002.png", "f003.png"]
    sink = Sink(tmp_path / "one.jpg", INFO)
    _write(sink, 1)
    sink.close()
    assert av.open(str(tmp_path / "one.jpg")).streams.video[0].width == 64
    with open(tmp_path / "pipe.y4m", "wb") as f:
        sink = Sink(f, INFO, format="yuv4mpegpipe")
        _write(sink)
        sink.close()
    data = (tmp_path / "pipe.y4m").read_bytes()
    assert data.startswith(b"YUV4MPEG2 W64 H48 F10:1") and data.count(b"FRAME") == 3


def test_sink_encoder_options_go_to_pyav(tmp_path):
    sink = Sink(tmp_path / "o.mkv", INFO, codec="libx265", crf=30, preset="ultrafast", pix_fmt="yuv444p")
    _write(sink)
    sink.close()
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"
    with pytest.raises(UsageError, match="does not take -pix_fmt"):
        Sink(tmp_path / "p.mp4", INFO, codec="mpeg4", pix_fmt="yuv444p")
    assert not list(tmp_path.glob(".*part*"))


def test_sink_refuses_overwrite_and_cleans_up_on_full_disk(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="-y"):
        check_output(str(tmp_path / "x.mp4"), None)
    check_output(str(tmp_path / "x.mp4"), True)
    sink = Sink(tmp_path / "x.mp4", INFO)
    sink.container = _Full(sink.container)  # the disk fills up while muxing
    with pytest.raises(OutputError, match="No space left"):
        _write(sink, 40)
        sink.close()
    sink.abort()
    assert (tmp_path / "x.mp4").read_bytes() == b"keep"
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]


class _Full:
    """A container whose disk is full: every mux raises ENOSPC; the rest goes to the real one."""

    def __init__(self, container):
        self._container = container

    def __getattr__(self, name):
        return getattr(self._container, name)

    def mux(self, packets):
        raise OSError(errno.ENOSPC, "No space left on device")


# ---- encoder/decoder nodes on the lite profile (real EfficientNet-Lite0 weights; the tokenizer's shipped weights)

def _pan(photo: np.ndarray, n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    """``n`` frames of a slow pan over a real photo."""
    return [np.ascontiguousarray(photo[10 + i: 10 + i + h, 10 + 2 * i: 10 + 2 * i + w]) for i in range(n)]


def _photo(media, name: str) -> np.ndarray:
    import cv2

    image = cv2.cvtColor(cv2.imread(str(media(f"photos/{name}"))), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (200, 160), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def lite():
    import torch

    from m3cvcav.engines.registry import Engines

    torch.set_num_threads(1)
    return Engines("lite")


def _segments(lite, frames: list[np.ndarray], **opts):
    from m3cvcav.filters.node import Chain
    from m3cvcav.filters.select import Select

    node = Select(engines=lite, **opts)
    node.configure(VideoInfo(frames[0].shape[1], frames[0].shape[0], Fraction(24), Fraction(1, 24)))
    items = (Frame(image, i, Fraction(1, 24), i) for i, image in enumerate(frames))
    return list(Chain([node]).run(items))


def test_select_finds_the_exact_scene_cut(lite, media):
    frames = _pan(_photo(media, "skimage_astronaut.png"), 14) + _pan(_photo(media, "skimage_coffee.png"), 10)
    segments = _segments(lite, frames)
    starts = [s.pts[0] for s in segments]
    assert 14 in starts  # the cut lies between two analysed frames (step 3) and is still found exactly
    cut = segments[starts.index(14)]
    assert cut.scene_cut and np.array_equal(cut.keyframe, frames[14])
    assert [p for s in segments for p in s.pts] == list(range(24))  # every frame, once, in order
    assert all(len(s.samples) <= 8 for s in segments)


def test_select_lengths_and_thresholds(lite, media):
    frames = _pan(_photo(media, "skimage_chelsea.png"), 20)
    assert [len(s.pts) for s in _segments(lite, frames, max=6)] == [6, 6, 6, 2]
    assert len(_segments(lite, frames, threshold=100)) == 1  # nothing passes a huge D_th
    many = _segments(lite, frames, threshold=0, min=2, step=1)
    assert all(len(s.pts) >= 2 for s in many[:-1]) and len(many) >= 9  # D_th 0: every frame past min cuts


def test_describe_adds_both_texts(lite, media):
    from m3cvcav.filters.describe import Describe

    seg = _segments(lite, _pan(_photo(media, "skimage_chelsea.png"), 6))[0]
    node = Describe(engines=lite)
    node.configure(VideoInfo(64, 64, Fraction(24), Fraction(1, 24)))
    (out,) = node.process(seg)
    assert out.frame_text and out.clip_text and "cat" in (out.frame_text + out.clip_text).lower()


def test_describe_gives_the_clip_with_its_frame_rate(lite, media):
    """A VLM sees a clip as a timed video only with the real rate of the frames it is given: select keeps samples
    every ``sample_step`` frames of a long segment, and describe passes fps / sample_step (it passed none, so D^C
    always came from untimed images)."""
    from m3cvcav.filters.describe import Describe

    frames = _pan(_photo(media, "skimage_chelsea.png"), 20)
    (seg,) = _segments(lite, frames, max=20, threshold=100, samples=2)
    step = seg.sample_step
    assert step > 1 and all(np.array_equal(seg.samples[i], frames[i * step]) for i in range(len(seg.samples)))
    calls = []

    class Recorder:
        kind = "vlm"

        def describe_frame(self, keyframe):
            return "a cat"

        def describe_clip(self, keyframe, clip, fps=None):
            calls.append((len(clip), fps))
            return "it moves"

    class OneDescriber:
        def engine(self, role):
            return Recorder()

    node = Describe(engines=OneDescriber())
    node.configure(VideoInfo(64, 64, Fraction(24), Fraction(1, 24)))
    node.process(seg)
    assert calls == [(len(seg.samples), 24 / step)]
