"""The AV1 base layer (bitstream 2.0): every frame's pixels in closed AV1 sequences, one a segment, at the coded size
the ladder or rate control picks; -b:v on target; the base written out as standard AV1; damage concealed; cuts made
by stream copy decode."""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

import m3cvcav
from helpers import run_cli
from m3cvcav.bitstream import av1
from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.framing import iter_units
from m3cvcav.core.errors import UsageError
from m3cvcav.filters.base import parse_coded_size
from m3cvcav.filters.ratecontrol import LEVELS


def pan(media, n: int, w: int = 192, h: int = 108) -> list[np.ndarray]:
    """``n`` frames of a pan over a real photo."""
    photo = cv2.cvtColor(cv2.imread(str(media("photos/skimage_astronaut.png"))), cv2.COLOR_BGR2RGB)
    return [np.ascontiguousarray(photo[100 + i: 100 + i + h, 40 + 3 * i: 40 + 3 * i + w]) for i in range(n)]


def test_av1_round_trip_is_one_closed_sequence(media):
    frames = pan(media, 6)
    units = av1.encode(frames, (96, 54), Fraction(25), crf=30)
    assert len(units) == 6 and not units[0].startswith(av1.TEMPORAL_DELIMITER)
    assert av1.sequence_header_obu(units[0])[0] >> 3 & 15 == 1  # the key frame carries the sequence header
    with pytest.raises(Exception):
        av1.sequence_header_obu(units[1])
    pictures = av1.decode(units)
    assert [p.shape for p in pictures] == [(54, 96, 3)] * 6
    reference = cv2.resize(frames[3], (96, 54), interpolation=cv2.INTER_AREA).astype(float)
    assert 10 * np.log10(255 ** 2 / np.mean((pictures[3] - reference) ** 2)) > 30  # a close, colour-true picture
    assert abs(float(np.mean(pictures[3]) - np.mean(reference))) < 2
    assert all(np.array_equal(a, b) for a, b in zip(av1.decode(units), pictures))  # the base decode is exact


def test_every_segment_decodes_alone_at_the_ladders_size(tmp_path, media):
    frames = pan(media, 20)
    m3cvcav.encode(iter(frames), tmp_path / "q.m3cv", fps=10, q=8, vf="select=max=7")
    with open_reader(tmp_path / "q.m3cv") as reader:
        segments = list(reader.segments())
    assert [s.header.frame_count for s in segments] == [7, 7, 6]
    size = av1.coded_size(192, 108, LEVELS[8].scale)
    for seg in segments:  # each a closed AV1 sequence: it decodes without the others
        assert seg.base.size == size and len(av1.decode(seg.base.units)) == seg.header.frame_count
    with m3cvcav.open(tmp_path / "q.m3cv") as stream:
        decoded = [f.to_ndarray() for f in stream.decode()]
    assert len(decoded) == 20 and decoded[0].shape == (108, 192, 3)
    assert float(np.abs(decoded[5].astype(int) - decoded[4]).mean()) > 1  # frames move: none frozen


def test_quality_ladder_is_monotone(tmp_path, media):
    frames = pan(media, 8)
    sizes = [m3cvcav.encode(iter(frames), tmp_path / f"{q}.m3cv", fps=8, q=q).bytes for q in (0, 5, 10, 15)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert all(a.scale <= b.scale and a.crf >= b.crf and (a.scale, a.crf) != (b.scale, b.crf)
               for a, b in zip(LEVELS, LEVELS[1:]))


def test_coded_size_option():
    assert parse_coded_size("auto", 1280, 720) is None
    assert parse_coded_size("1/4", 1280, 720) == (320, 180)
    assert parse_coded_size("0.5", 1279, 719) == (640, 360)
    assert parse_coded_size("321x181", 1280, 720) == (320, 180)
    for bad in ("0", "2/1", "2000x10", "quarter"):
        with pytest.raises(UsageError, match="base=size"):
            parse_coded_size(bad, 1280, 720)


@pytest.mark.slow
@pytest.mark.parametrize("kbps", [20, 300])
def test_bitrate_lands_within_five_percent(tmp_path, media, kbps):
    """-b:v on a 5.28 s clip: every byte of the video track counted (base, texts, headers, container)."""
    result = m3cvcav.encode(media("clips/bigbuckbunny.mp4"), tmp_path / "b.mkv", bitrate=f"{kbps}k",
                            vf="scale=320:-2", audio=False)
    assert result.duration > 5 and abs(result.bitrate / (kbps * 1000) - 1) <= 0.05, result


@pytest.mark.slow
def test_a_target_below_the_floor_says_so(tmp_path, media):
    run = run_cli("-y", "-i", str(media("clips/bigbuckbunny.mp4")), "-t", "2", "-an", "-c", "m3cvc", "-b:v", "1k",
              str(tmp_path / "low.mkv"), text=True)
    assert run.returncode == 0, run.stderr
    line = [x for x in run.stderr.splitlines() if "off the -b:v target" in x]
    assert len(line) == 1 and "cannot go lower" in line[0]


def test_base_command_writes_a_standard_av1_stream(tmp_path, media):
    src = tmp_path / "s.mkv"
    m3cvcav.encode(iter(pan(media, 12)), src, fps=12, vf="select=max=5")
    with open_reader(src) as reader:
        pictures = [p for seg in reader.segments() for p in av1.decode(seg.base.units)]
    for ext in ("webm", "mp4", "ivf"):
        out = tmp_path / f"b.{ext}"
        run = run_cli("base", str(src), str(out), text=True)
        assert run.returncode == 0, run.stderr
        with av.open(str(out)) as c:  # PyAV's libdav1d, as any player would
            assert c.streams.video[0].codec_context.name in ("libdav1d", "av1")
            got = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
        assert len(got) == 12
    assert run_cli("base", str(src), str(out), text=True).returncode == 1  # exists: -y to overwrite
    assert run_cli("base", str(src), str(tmp_path / "b.avi"), text=True).returncode == 2
    if shutil.which("ffmpeg"):
        ref = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "b.webm"), "-f", "rawvideo", "-pix_fmt",
                              "rgb24", "-"], capture_output=True).stdout
        assert len(ref) == 12 * pictures[0].size


def test_damage_inside_a_base_unit_is_concealed(tmp_path, media):
    src = tmp_path / "d.m3cv"
    m3cvcav.encode(iter(pan(media, 16)), src, fps=8, vf="select=max=8")
    data = bytearray(src.read_bytes())
    with open_reader(src) as reader:
        first = next(reader.packets())
    base = [u for u in iter_units(first) if u.unit_type == U.BASE][0]
    at = data.find(first) + base.offset + base.size // 2
    data[at:at + 4] = bytes(b ^ 0xFF for b in data[at:at + 4])
    (tmp_path / "bad.m3cv").write_bytes(bytes(data))
    run = run_cli("-y", "-i", str(tmp_path / "bad.m3cv"), "-f", "yuv4mpegpipe", str(tmp_path / "out.y4m"), text=True)
    assert run.returncode == 0 and "concealed" in run.stderr, run.stderr
    with av.open(str(tmp_path / "out.y4m")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 16  # every frame present


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("mkvmerge")), reason="needs ffmpeg and mkvmerge")
def test_stream_copy_cuts_decode(tmp_path, media):
    src = tmp_path / "c.mkv"
    m3cvcav.encode(iter(pan(media, 40)), src, fps=10, vf="select=max=10")
    cuts = []
    for ss in ("0.42", "1.5", "2.05"):
        out = tmp_path / f"cut{ss}.mkv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", ss, "-i", str(src), "-c", "copy", str(out)], check=True)
        cuts.append(out)
    subprocess.run(["mkvmerge", "-q", "-o", str(tmp_path / "split.mkv"), "--split", "timestamps:1.3s,2.7s", str(src)],
                   check=True)
    cuts += sorted(tmp_path.glob("split-*.mkv"))
    assert len(cuts) == 6
    for cut in cuts:
        with m3cvcav.open(cut) as stream:
            frames = [f.to_ndarray() for f in stream.decode()]
            assert stream.corrupt == 0
        assert frames and all(float(f.std()) > 10 for f in frames), cut  # pictures, not flat grey


def test_a_damaged_base_unit_shows_the_frames_before_it(tmp_path, caplog):
    """A segment's base in several BASE units, the third damaged: the frames before it decode, the rest hold the
    last picture (no frame missing), and the damage is said."""
    from m3cvcav.bitstream.containers import open_writer
    from streams import sequence_header

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (144, 256, 3), dtype=np.uint8) for _ in range(12)]
    header = sequence_header(0)
    header.width, header.height = 256, 144
    seg = U.Segment(U.SegmentHeader(0, 0, 12), base=U.BaseLayer((256, 144), av1.encode(frames, (256, 144), 24, 4)))
    for ext in ("m3cv", "mkv"):
        path = tmp_path / f"n.{ext}"
        with open_writer(path, header) as w:
            w.write_segment(seg)
        data = bytearray(path.read_bytes())
        packet = U.encode_segment(seg)
        bases = [u for u in iter_units(packet) if u.unit_type == U.BASE]
        assert len(bases) >= 3
        start = data.find(packet)
        data[start + bases[2].offset + 20] ^= 0xFF
        (tmp_path / f"bad.{ext}").write_bytes(bytes(data))
        with m3cvcav.open(tmp_path / f"n.{ext}") as good, m3cvcav.open(tmp_path / f"bad.{ext}") as bad:
            clean = [f.to_ndarray() for f in good.decode()]
            got = [f.to_ndarray() for f in bad.decode()]
        with open_reader(tmp_path / f"bad.{ext}") as reader:
            kept = len(next(reader.segments()).base.units)
        assert len(got) == 12 and 0 < kept < 12
        assert all(np.array_equal(a, b) for a, b in zip(got[:kept], clean[:kept]))
        assert all(np.array_equal(f, got[kept - 1]) for f in got[kept:])
    assert "damaged from frame" in caplog.text


def test_the_encoder_signals_the_enhancement_and_the_decoder_applies_it(tmp_path, media):
    frames = pan(media, 10, 384, 216)
    m3cvcav.encode(iter(frames), tmp_path / "e.m3cv", fps=10, q=4)
    with open_reader(tmp_path / "e.m3cv") as reader:
        segments = list(reader.segments())
    variants = {s.base.enhancement for s in segments}
    assert variants - {0}, "the learned upscaler should beat bicubic on a real picture at a reduced size"
    bicubic = [av1.upscale(p, (384, 216)) for s in segments for p in av1.decode(s.base.units)]
    with m3cvcav.open(tmp_path / "e.m3cv", enhance=False) as plain, m3cvcav.open(tmp_path / "e.m3cv") as enhanced:
        off = [f.to_ndarray() for f in plain.decode()]
        on = [f.to_ndarray() for f in enhanced.decode()]
    assert all(np.array_equal(a, b) for a, b in zip(off, bicubic))  # -enhance none: exactly the bicubic base
    assert not np.array_equal(on[0], off[0])
    def err(x):
        return float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(x, frames)]))
    assert err(on) < err(off)  # closer to the source than bicubic


def test_probe_reports_the_base_layer(tmp_path, media):
    src = tmp_path / "p.mkv"
    m3cvcav.encode(iter(pan(media, 12)), src, fps=12, vf="select=max=6,base=size=96x54")
    run = run_cli("probe", str(src), "--json", text=True)
    assert run.returncode == 0, run.stderr
    import json

    report = json.loads(run.stdout)
    assert report["version"] == "2.0" and report["unit_bytes"] == sum(report["layers"].values())
    assert report["layers"]["base"] > 0 and report["unit_bytes"] < report["file_size"]
    segments = [(s["mode"], s["base_size"], s["base_complete"]) for s in report["segments"]]
    assert segments == [("it2v", "96x54", True)] * 2
