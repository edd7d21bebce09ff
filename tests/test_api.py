"""The Python API: encode from files and from frame iterables, decode, open(), rate control and its warning, the
surface and its wording, failures."""
from __future__ import annotations

import errno
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import m3cvcav
from helpers import require_lite_weights
from m3cvcav.bitstream import av1
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.__main__ import main
from m3cvcav.core.errors import BitstreamError, InputError, OutputError, UsageError
from m3cvcav.filters.ratecontrol import LEVELS


@pytest.fixture(scope="module", autouse=True)
def lite_codec():
    """The lite profile end to end needs the tokenizer's shipped weights."""
    import torch

    require_lite_weights()
    torch.set_num_threads(1)


def moving_frames(media, n: int, h: int = 72, w: int = 96) -> list[np.ndarray]:
    """``n`` frames of a pan over a real photo."""
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(media("photos/skimage_astronaut.png"))), cv2.COLOR_BGR2RGB)
    photo = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(photo[i: i + h, 2 * i: 2 * i + w]) for i in range(n)]


def test_arrays_in_videoframes_out(tmp_path, media):
    frames = moving_frames(media, 12)
    result = m3cvcav.encode(iter(frames), tmp_path / "a.m3cv", fps=12)
    assert result.frames == 12 and result.segments >= 1 and result.bytes == _segment_bytes(tmp_path / "a.m3cv")
    with m3cvcav.open(tmp_path / "a.m3cv") as stream:
        assert (stream.header.width, stream.header.height, stream.header.fps) == (96, 72, 12)
        out = list(stream.decode())
    assert [f.pts for f in out] == list(range(12)) and out[0].time_base == Fraction(1, 12)
    assert all(isinstance(f, av.VideoFrame) and (f.width, f.height) == (96, 72) for f in out)
    first = out[0].to_ndarray()
    assert np.abs(first.astype(int) - frames[0]).mean() < 40  # a lossy reconstruction of the real keyframe


def test_videoframe_input_keeps_timestamps(tmp_path, media):
    def frames():
        for i, image in enumerate(moving_frames(media, 6)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = [0, 3, 5, 9, 10, 17][i], Fraction(1, 30)
            yield frame

    m3cvcav.encode(frames(), tmp_path / "v.mkv", fps=10)
    with m3cvcav.open(tmp_path / "v.mkv") as stream:
        assert [f.pts for f in stream.decode()] == [0, 3, 5, 9, 10, 17]


def test_videoframes_keep_their_colour_description(tmp_path):
    """Frames pushed through the API are read as a file's frames are: their tags (here BT.601, limited range, as an
    SD source's) are what the stream records, and their colours come back."""
    from m3cvcav.bitstream.units import ColorDescription
    from m3cvcav.filters import color

    bt601 = ColorDescription(6, 6, 6, False)
    image = np.zeros((72, 96, 3), np.uint8)
    image[:, :48] = (40, 190, 60)  # a green where BT.601 and BT.709 give different Y'CbCr
    image[:, 48:] = (200, 50, 120)
    frames = [color.from_rgb(image, "yuv420p", bt601) for _ in range(6)]
    m3cvcav.encode(iter(frames), tmp_path / "c.mkv", fps=12)
    with m3cvcav.open(tmp_path / "c.mkv") as stream:
        assert stream.header.color == bt601
        back = [f.to_ndarray(format="rgb24") for f in stream.decode()]
    assert np.abs(back[0][:, 8:40].astype(int) - (40, 190, 60)).mean() < 8
    assert np.abs(back[0][:, 56:88].astype(int) - (200, 50, 120)).mean() < 8


def _segment_bytes(path: Path) -> int:
    with open_reader(path) as reader:
        return sum(len(p) for p in reader.packets())


def test_fixed_quality_and_decode_options(tmp_path, media):
    m3cvcav.encode(iter(moving_frames(media, 8)), tmp_path / "q.mkv", fps=8, q=0)
    with open_reader(tmp_path / "q.mkv") as reader:
        sizes = {s.base.size for s in reader.segments()}
        width, height = reader.header.width, reader.header.height
    assert sizes == {av1.coded_size(width, height, LEVELS[0].scale)}  # -q 0: the ladder's smallest picture
    result = m3cvcav.decode(tmp_path / "q.mkv", tmp_path / "q.mkv.mp4", crf=35, preset="ultrafast", size="48x36")
    assert result.frames == 8
    with av.open(str(tmp_path / "q.mkv.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.frames) == (48, 36, 8)


def test_bitrate_target_is_met(tmp_path, media):
    src = media("clips/bigbuckbunny.mp4")
    target = 20000
    result = m3cvcav.encode(src, tmp_path / "b.m3cv", bitrate="20k", vf="scale=256:-2", t=3, audio=False)
    assert abs(result.bitrate - target) <= 0.1 * target, result
    assert result.bytes == _segment_bytes(tmp_path / "b.m3cv")


def test_corrupt_segment_is_concealed(tmp_path, media):
    frames = moving_frames(media, 16)
    m3cvcav.encode(iter(frames), tmp_path / "c.m3cv", fps=8, vf="select=max=4")
    data = bytearray((tmp_path / "c.m3cv").read_bytes())
    with open_reader(tmp_path / "c.m3cv") as reader:
        packets = list(reader.packets())
    assert len(packets) == 4
    where = data.find(bytes(packets[2]))
    data[where + len(packets[2]) // 2] ^= 0xFF  # damage the third segment's payload
    (tmp_path / "d.m3cv").write_bytes(bytes(data))
    result = m3cvcav.decode(tmp_path / "d.m3cv", tmp_path / "d.mkv")
    assert result.corrupt == 1 and result.frames == 16
    with m3cvcav.open(tmp_path / "d.m3cv") as stream:
        out = [f.to_ndarray() for f in stream.decode()]
    assert len(out) == 16  # every frame of the damaged segment is there: a cross-fade from the last good frame
    diffs = [np.abs(out[i].astype(int) - out[i - 1]).mean() for i in range(9, 13)]
    assert all(d > 0 for d in diffs)  # ... to the next keyframe, not a freeze
    assert np.abs(out[8].astype(int) - out[7]).mean() < np.abs(out[12].astype(int) - out[7]).mean()


def test_failures_are_one_line_errors_and_leave_nothing(tmp_path, media):
    with pytest.raises(InputError, match="does not exist"):
        m3cvcav.encode(tmp_path / "nope.mp4", tmp_path / "o.mkv")
    with pytest.raises(UsageError, match="unknown option"):
        m3cvcav.encode(iter(moving_frames(media, 2)), tmp_path / "o.mkv", vf="select=bogus=1")
    with pytest.raises(UsageError, match="either q="):
        m3cvcav.encode(iter(moving_frames(media, 2)), tmp_path / "o.mkv", q=1, bitrate="10k")
    (tmp_path / "keep.mkv").write_bytes(b"x")
    with pytest.raises(OutputError, match="overwrite=True"):
        m3cvcav.encode(iter(moving_frames(media, 2)), tmp_path / "keep.mkv")

    def interrupt(stats):
        if stats.frame == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m3cvcav.encode(iter(moving_frames(media, 10)), tmp_path / "int.mkv", progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mkv"]  # no partial or temp file


def test_full_disk_is_an_output_error(tmp_path, media, monkeypatch):
    from m3cvcav.bitstream.containers import base

    class FullDisk:
        """The output file of a full disk: every write fails with ENOSPC."""

        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    real_init = base.AtomicOutput.__init__

    def init(self, dst):
        real_init(self, dst)
        self.file = FullDisk(self.file)

    monkeypatch.setattr(base.AtomicOutput, "__init__", init)
    with pytest.raises(OutputError, match="No space left"):
        m3cvcav.encode(iter(moving_frames(media, 4)), tmp_path / "full.m3cv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", [1, 3])
def test_odd_size_and_single_frame_videos_keep_their_size(tmp_path, count):
    frames = [np.random.default_rng(i).integers(0, 256, (241, 321, 3), dtype=np.uint8) for i in range(count)]
    m3cvcav.encode(iter(frames), tmp_path / "odd.m3cv", q=1)
    assert m3cvcav.decode(tmp_path / "odd.m3cv", tmp_path / "odd.mp4").frames == count
    with av.open(str(tmp_path / "odd.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.frames) == (321, 241, count)


# ---- one pipeline: writer push API, tokenizer compress/decompress, one serialisation ---------------------------------
def test_a_pushed_writer_writes_what_encode_writes(tmp_path, media):
    frames = moving_frames(media, 20)
    pulled = m3cvcav.encode(iter(frames), tmp_path / "pulled.m3cv", fps=12, bitrate="20k")
    with m3cvcav.open(tmp_path / "pushed.m3cv", "w", fps=12, bitrate="20k") as out:
        for frame in frames:
            out.write(frame)
    assert (tmp_path / "pushed.m3cv").read_bytes() == (tmp_path / "pulled.m3cv").read_bytes()
    assert pulled.frames == 20
    with pytest.raises(UsageError, match="unknown option"):
        m3cvcav.open(tmp_path / "x.m3cv", "w", crf=3)
    with pytest.raises(UsageError, match="'r' .* or 'w'"):
        m3cvcav.open(tmp_path / "x.m3cv", "a")
    with pytest.raises(ValueError):  # an exception inside the block removes the output
        with m3cvcav.open(tmp_path / "failed.m3cv", "w", fps=12) as out:
            out.write(frames[0])
            raise ValueError("the caller failed")
    assert not (tmp_path / "failed.m3cv").exists()


def test_tokenizer_compresses_to_the_bitstream_tokens_and_back(media):
    import cv2

    from m3cvcav.engines.registry import Engines

    tokenizer = Engines("m3cvc").engine("tokenizer")  # K*: the shipped lite tokenizer, no download
    image = cv2.cvtColor(cv2.imread(str(media("photos/skimage_astronaut.png"))), cv2.COLOR_BGR2RGB)[:144, :256]
    tokens = tokenizer.compress(np.ascontiguousarray(image), 1)
    assert tokens.rate_point == 1 and tokens.image_size == (144, 256) and len(tokens.payload) > 0
    assert np.array_equal(tokenizer.decompress(tokens), tokenizer.decode(tokenizer.encode(image, 1)))


def test_each_segment_is_serialised_once_and_its_text_compressed_once(tmp_path, media, monkeypatch):
    from m3cvcav.bitstream import units
    from m3cvcav.filters import base

    calls = {"serialised": 0, "texts": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(base, "encode_segment", counted("serialised", units.encode_segment))
    monkeypatch.setattr(units, "text_payload", counted("texts", units.text_payload))
    result = m3cvcav.encode(iter(moving_frames(media, 24)), tmp_path / "once.mkv", fps=12, bitrate="8k",
                            vf="select=max=12")
    with open_reader(tmp_path / "once.mkv") as reader:
        texts = sum(1 for seg in reader.segments() if seg.frame_text or seg.clip_text)
    assert result.segments >= 2 and calls["serialised"] == result.segments
    assert calls["texts"] == texts > 0


def test_the_describer_labels_with_the_profiles_embedder():
    from m3cvcav.engines.registry import Engines

    engines = Engines("lite")
    assert engines.engine("describer").embedder is engines.engine("embedder")  # one EfficientNet, one session


def test_open_keeps_the_decoding_mode_apart_from_the_open_mode(tmp_path, media):
    frames = moving_frames(media, 6)
    with m3cvcav.open(tmp_path / "s.m3cv", "w", fps=12, mode="it2v") as out:
        for frame in frames:
            out.write(frame)
        first = out.close()  # an explicit close, then the with block's: one Result, one warning at most
    assert out.close() is first and first.duration == pytest.approx(0.5)
    with m3cvcav.open(tmp_path / "s.m3cv", mode="it2v") as stream:
        assert sum(1 for _ in stream.decode()) == 6
    with pytest.raises(UsageError, match="^mode='i2v'"):
        m3cvcav.open(tmp_path / "s.m3cv", mode="i2v")
    with pytest.raises(UsageError, match="unknown option"):
        m3cvcav.open(tmp_path / "s.m3cv", "r", bitrate="5k")
    with pytest.raises(UsageError, match="^engine='xx'"):
        m3cvcav.open(tmp_path / "s.m3cv", engine="xx")


def test_rate_targets(bbb_stream, caplog, capsys, tmp_path):
    path, _ = bbb_stream
    for bad in ("0", "-5k"):
        assert main(["-i", str(path), "-c", "m3cvc", "-b:v", bad, str(tmp_path / "x.mkv")]) == 2
        assert "positive number of bits" in capsys.readouterr().err
    assert main(["-i", str(path), "-c", "m3cvc", "-t", "0", str(tmp_path / "x.mkv")]) == 2
    assert "positive duration" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    fine = m3cvcav.Result(10, 1, 1000, 1.0, target_bitrate=8200)
    far = m3cvcav.Result(10, 1, 1000, 1.0, target_bitrate=100)
    from m3cvcav.filters.result import warn_rate

    with caplog.at_level(logging.WARNING, logger="m3cvcav"):
        warn_rate(fine)
        assert not caplog.records
        warn_rate(far)
    assert len(caplog.records) == 1 and "off the -b:v target" in caplog.text and "+7900%" in caplog.text


def test_api_surface_and_wording(bbb_stream, tmp_path):
    assert {"encode", "decode", "open", "Result"} <= set(dir(m3cvcav)) and "encode" in m3cvcav.__all__
    path, _ = bbb_stream
    (tmp_path / "x.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="overwrite=True"):
        m3cvcav.decode(path, tmp_path / "x.mp4")
    with pytest.raises(UsageError, match="positive"):
        m3cvcav.encode(path, tmp_path / "y.mkv", bitrate=0)
    with pytest.raises(BitstreamError):
        m3cvcav.decode(tmp_path / "x.mp4", tmp_path / "z.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]
