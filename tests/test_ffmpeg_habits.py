"""FFmpeg's habits as a user brings them: inputs checked and named first, audio through pipes, -c copy between
containers, time syntax, image sequences, -f null, -map/-metadata/-v N/-h encoder=, -progress keys, range checks, and
errors that name the real cause (truncated or damaged files, odd sizes), through the command line and the API. Nothing here depends on the stream's exact bytes or on a profile's internal layers."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

import m3cvcav
from helpers import media_path, require_lite_weights, run_cli
from m3cvcav.__main__ import main
from m3cvcav.core.errors import UsageError

CLUSTER_ID = bytes.fromhex("1f43b675")


def fails(argv: list[str], status: int, capsys) -> str:
    """Run the CLI in-process; assert the exit status and a single error line without traceback; return the line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("m3cvcav:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def y4m_frames(path: Path) -> int:
    return path.read_bytes().count(b"FRAME")


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """1.2 s of Big Buck Bunny at 192x108 with its audio, encoded by the CLI (30 frames)."""
    require_lite_weights()
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("habits") / "s.mkv"
    assert main(["-nostats", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-t", "1.2", "-vf",
                 "scale=192:-2,select=max=10", "-c", "m3cvc", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reference(stream, tmp_path_factory) -> bytes:
    """The stream decoded to y4m: what every lossless container change must decode to."""
    out = tmp_path_factory.mktemp("ref") / "ref.y4m"
    assert main(["-nostats", "-i", str(stream), str(out)]) == 0
    return out.read_bytes()


# ---- inputs: checked first, and named --------------------------------------------------------------------------------
def test_a_missing_input_is_named_before_the_output_is_judged(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = fails(["-i", "nope.mkv", "x.mp4"], 1, capsys)
    assert "nope.mkv does not exist" in line and "written as" not in line
    line = fails(["-i", str(tmp_path), "x.mp4"], 1, capsys)  # a folder: not "add -c m3cvc"
    assert "is a directory" in line
    with pytest.raises(m3cvcav.InputError, match="nope.mkv does not exist"):  # the API checks in the same order
        m3cvcav.encode("nope.mkv", "x.mp4")
    with pytest.raises(m3cvcav.InputError, match="nope.mkv does not exist"):
        m3cvcav.decode("nope.mkv", "x.nosuchformat")
    assert not list(tmp_path.iterdir())


# ---- inputs: image sequences -----------------------------------------------------------------------------------------
def test_image_sequence_input(tmp_path, capsys):
    require_lite_weights()
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
    for i in range(1, 9):  # numbered from 1, as many exports are (FFmpeg looks for the first among 0..4)
        Image.fromarray(np.roll(base, 4 * i, axis=1)).save(folder / f"f_{i:04d}.png")
    out = tmp_path / "seq.mkv"
    assert main(["-nostats", "-framerate", "10", "-i", str(folder / "f_%04d.png"), "-c", "m3cvc", str(out)]) == 0
    with m3cvcav.open(out) as s:
        assert s.header.fps == 10 and len(list(s.decode())) == 8
    line = fails(["-i", str(folder / "g_%04d.png"), "-c", "m3cvc", str(tmp_path / "g.mkv")], 1, capsys)
    assert "no file of the image sequence" in line


# ---- pipes: audio survives one ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_audio_survives_a_pipe(stream, tmp_path):
    out = tmp_path / "piped.mp4"
    with open(stream, "rb") as stdin:
        done = run_cli("-nostats", "-i", "-", str(out), stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    with av.open(str(out)) as c:
        assert c.streams.video and c.streams.audio  # kept, as with -i s.mkv
    with open(stream, "rb") as stdin:  # FFmpeg's pipe protocol names
        done = run_cli("-nostats", "-i", "pipe:0", "-f", "yuv4mpegpipe", "pipe:1", stdin=stdin)
    assert done.returncode == 0 and done.stdout.count(b"FRAME") == 30


# ---- damaged inputs: truncated Matroska ------------------------------------------------------------------------------
def test_truncated_matroska_warns_and_header_only_says_no_video(stream, tmp_path, capsys, caplog):
    data = stream.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[:len(data) * 9 // 10])
    with caplog.at_level("WARNING", logger="m3cvcav"):
        assert main(["-nostats", "-i", str(cut), str(tmp_path / "cut.y4m")]) == 0
    assert "cut short" in caplog.text
    first_cluster = data.index(CLUSTER_ID)
    head = tmp_path / "head.mkv"
    for end in (first_cluster, first_cluster + 12):  # the headers alone; and the first cluster's head too
        head.write_bytes(data[:end])
        line = fails(["-i", str(head), str(tmp_path / "head.y4m")], 1, capsys)
        assert "holds no video data" in line and "truncated?" in line and "-ss" not in line
    assert not (tmp_path / "head.y4m").exists()


# ---- damaged inputs: damaged streams are called damaged --------------------------------------------------------------
def _mutations(data: bytes, seed: int) -> list[bytes]:
    """Bit flips in the header region and anywhere, zeroed and random runs, truncations and dropped runs."""
    rng = random.Random(seed)
    out = []
    for kind in ("flip_head", "flip", "zero", "random", "truncate", "drop") * 4:
        b = bytearray(data)
        at = rng.randrange(64 if kind == "flip_head" else len(b))
        if kind in ("flip_head", "flip"):
            b[at] ^= 1 << rng.randrange(8)
        elif kind in ("zero", "random"):
            run_ = rng.randint(1, 200)
            b[at:at + run_] = bytes(len(b[at:at + run_])) if kind == "zero" else rng.randbytes(len(b[at:at + run_]))
        elif kind == "truncate":
            del b[max(1, at):]
        else:
            del b[at:at + rng.randint(1, 300)]
        out.append(bytes(b))
    return out


def test_damaged_streams_are_called_damaged(stream, tmp_path, capsys):
    bare = tmp_path / "s.m3cv"
    assert main(["-nostats", "-i", str(stream), "-c", "copy", str(bare)]) == 0
    magic = tmp_path / "magic.mkv"
    magic.write_bytes(bytes([stream.read_bytes()[0] ^ 0x02]) + stream.read_bytes()[1:])
    capsys.readouterr()
    assert "damaged" in fails(["-i", str(magic), str(tmp_path / "m.y4m")], 1, capsys)
    for source in (stream, bare):
        for n, data in enumerate(_mutations(source.read_bytes(), seed=len(source.name))):
            path = tmp_path / f"m{n}{source.suffix}"
            path.write_bytes(data)
            status = main(["-nostats", "-y", "-loglevel", "error", "-i", str(path), str(tmp_path / "m.y4m")])
            err = capsys.readouterr().err
            assert status in (0, 1), (path.name, err)
            assert "add -c m3cvc" not in err and "Traceback" not in err, (path.name, err)
            assert "internal error" not in err, (path.name, err)
            assert status == 0 or len([x for x in err.splitlines() if x.startswith("m3cvcav:")]) == 1, err
    shutil.rmtree(tmp_path)


# ---- sizes: odd sizes stay, or one line says why not -----------------------------------------------------------------
def test_odd_size_is_kept_or_explained(tmp_path, capsys):
    require_lite_weights()
    src = tmp_path / "odd.y4m"
    with av.open(str(src), "w") as c:
        s = c.add_stream("rawvideo", rate=25)
        s.width, s.height, s.pix_fmt = 321, 181, "yuv444p"
        rng = np.random.default_rng(1)
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (181, 321, 3), dtype=np.uint8), format="rgb24")
            for packet in s.encode(frame.reformat(format="yuv444p")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    enc, back = tmp_path / "odd.mkv", tmp_path / "back.y4m"
    assert main(["-nostats", "-i", str(src), "-c", "m3cvc", str(enc)]) == 0
    assert main(["-nostats", "-i", str(enc), str(back)]) == 0
    err = capsys.readouterr().err
    header = back.read_bytes().split(b"\n", 1)[0]
    assert b" W321 H181 " in header or ("321x181" in err and "320x180" in err)  # kept, or said so
    line = fails(["-i", str(enc), "-pix_fmt", "yuv420p", str(tmp_path / "odd.mp4")], 2, capsys)
    assert "even width and height" in line and "crop=320:180" in line


# ---- containers: -c copy changes the container without re-encoding ---------------------------------------------------
def test_copy_changes_the_container_without_reencoding(stream, reference, tmp_path, capsys):
    bare, back = tmp_path / "b.m3cv", tmp_path / "c.mkv"
    assert main(["-nostats", "-i", str(stream), "-c", "copy", str(bare)]) == 0
    assert main(["-nostats", "-i", str(bare), "-c", "copy", "-metadata", "title=copied", str(back)]) == 0
    capsys.readouterr()
    for path in (bare, back):
        decoded = tmp_path / (path.name + ".y4m")
        assert main(["-nostats", "-i", str(path), str(decoded)]) == 0
        assert decoded.read_bytes() == reference  # the same frames: the packets were copied as they are
    with av.open(str(back)) as c:
        assert c.metadata.get("title") == "copied"
    line = fails(["-i", str(stream), "-c", "copy", str(tmp_path / "x.mp4")], 2, capsys)
    assert "drop -c copy" in line
    line = fails(["-i", str(stream), "-c", "copy", "-t", "1", str(tmp_path / "x.mkv")], 2, capsys)
    assert "-t with -c copy" in line
    line = fails(["-i", str(media_path("clips/vtest.avi")), "-c", "copy", str(tmp_path / "y.mkv")], 2, capsys)
    assert "not an m3cvc stream" in line and "ffmpeg -c copy" in line
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.mkv").exists()


# ---- containers: no false WebM ---------------------------------------------------------------------------------------
def test_webm_is_refused_for_m3cvc(tmp_path, capsys):
    src = str(media_path("clips/vtest.avi"))
    line = fails(["-i", src, "-c", "m3cvc", str(tmp_path / "enc.webm")], 2, capsys)
    assert "WebM carries only VP8, VP9 or AV1" in line
    line = fails(["-i", src, "-c", "m3cvc", "-f", "webm", str(tmp_path / "enc.mkv")], 2, capsys)
    assert "WebM" in line
    with pytest.raises(UsageError, match="WebM carries only"):
        m3cvcav.encode(src, tmp_path / "api.webm")
    from m3cvcav.bitstream.containers import CONTAINERS, check_container

    with pytest.raises(UsageError, match=r"written as \.mkv or \.m3cv"):  # no writer maps .webm to Matroska
        check_container(tmp_path / "low.webm", None)
    assert ".webm" not in CONTAINERS
    assert not list(tmp_path.iterdir())


# ---- outputs: -f null, FFmpeg's dry run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_null_output_counts_and_drops(stream, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = run_cli("-nostats", "-i", str(media_path("clips/vtest.avi")), "-frames:v", "5", "-vf", "scale=96:-2",
               "-c", "m3cvc", "-f", "null", "-")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"" and b"5 frames" in done.stderr and b"total" in done.stderr
    done = run_cli("-nostats", "-i", str(stream), "-f", "null", "-")
    assert done.returncode == 0 and done.stdout == b"" and b"30 frames decoded" in done.stderr
    result = m3cvcav.encode(media_path("clips/vtest.avi"), "ignored.mkv", format="null", frames=3, vf="scale=96:-2")
    assert result.frames == 3 and result.total_bytes > result.bytes > 0
    assert not list(tmp_path.iterdir())


# ---- options: FFmpeg's time syntax -----------------------------------------------------------------------------------
def test_times_take_ffmpeg_syntax(stream, tmp_path, capsys):
    out = tmp_path / "t.y4m"
    assert main(["-nostats", "-ss", "00:00:00.4", "-t", "400ms", "-i", str(stream), str(out)]) == 0
    assert y4m_frames(out) == 10  # 0.4 s at 25 fps
    assert main(["-nostats", "-y", "-ss", "200ms", "-to", "0:00.6", "-i", str(stream), str(out)]) == 0
    assert y4m_frames(out) == 10
    line = fails(["-ss", "1:99", "-i", str(stream), str(out)], 2, capsys)
    assert "[HH:]MM:SS" in line and "500ms" in line
    result = m3cvcav.decode(stream, tmp_path / "api.y4m", ss="00:00:00.4", t="0.2s")
    assert result.frames == 5


# ---- options: the FFmpeg options that make sense here ----------------------------------------------------------------
def test_help_for_encoder_and_decoder(capsys):
    assert main(["-h", "encoder=m3cvc"]) == 0
    text = capsys.readouterr().out
    assert "-q, -q:v" in text and "-crf" not in text
    assert main(["-nostats", "-h", "decoder=m3cvc"]) == 0  # -h anywhere, as in FFmpeg
    text = capsys.readouterr().out
    assert "-crf" in text and "-q, -q:v" not in text
    assert main(["-h", "encoder=libx264"]) == 0 and "ffmpeg -h encoder=libx264" in capsys.readouterr().out
    assert "no such encoder" in fails(["-h", "encoder=nosuch"], 2, capsys)


def test_map_metadata_numeric_loglevel_and_absent_options(stream, tmp_path, capsys):
    out = tmp_path / "m.mp4"
    assert main(["-nostats", "-v", "24", "-i", str(stream), "-map", "0:v", "-sn", "-nostdin", "-metadata",
                 "title=Big Buck", "-frames:v", "3", str(out)]) == 0
    with av.open(str(out)) as c:
        assert c.streams.video and not c.streams.audio and c.metadata.get("title") == "Big Buck"
    assert main(["-nostats", "-y", "-i", str(stream), "-map", "0", "-map", "-0:a", "-frames:v", "2", str(out)]) == 0
    with av.open(str(out)) as c:
        assert not c.streams.audio
    assert "-map 0:s" in fails(["-i", str(stream), "-map", "0:s", str(tmp_path / "s.mp4")], 2, capsys)
    line = fails(["-i", str(stream), "-vn", str(tmp_path / "a.m4a")], 2, capsys)
    assert "-vn is not an option of m3cvcav" in line and "ffmpeg -i IN -vn" in line
    line = fails(["-i", str(stream), "-g", "12", str(tmp_path / "a.mp4")], 2, capsys)
    assert "select" in line and "unknown option" not in line
    assert "loglevel" in fails(["-v", "loud", "-i", str(stream), str(tmp_path / "a.mp4")], 2, capsys)


def test_progress_has_ffmpegs_keys(stream, tmp_path):
    progress = tmp_path / "p.txt"
    assert main(["-nostats", "-progress", str(progress), "-i", str(stream), str(tmp_path / "p.y4m")]) == 0
    last = progress.read_text().split("progress=")[-2]
    pairs = dict(line.split("=", 1) for line in last.splitlines() if "=" in line)
    for key in ("frame", "fps", "bitrate", "total_size", "out_time_us", "out_time_ms", "out_time", "dup_frames",
                "drop_frames", "speed"):
        assert key in pairs, key
    assert pairs["out_time"].startswith("00:00:01.") and pairs["frame"] == "30"


def test_encode_progress_is_live_and_counts_what_is_coded(tmp_path):
    """Row 11: the size and rate show as each segment is written (N/A before the first, not 0), and the ETA's total
    is what -t / frames= leave of the input, down to 0 at the end."""
    require_lite_weights()
    seen = []
    result = m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), tmp_path / "p.mkv", t=0.8, vf="scale=128:-2,select=max=6",
                            audio=False, progress=lambda s: seen.append((s.frame, s.total_frames, s.size, s.pairs())))
    assert result.frames == 20 and {total for _, total, _, _ in seen} == {20}
    first = seen[0][3]
    assert first["bitrate"] == "N/A" and first["total_size"] == "0"
    live = [(frame, size, pairs) for frame, _, size, pairs in seen[:-1] if size]
    assert live and live[0][0] < 20 and live[0][2]["bitrate"] != "N/A"  # bytes before the last frame was read
    assert float(live[0][2]["video_bitrate"].removesuffix("kbits/s")) > 0
    assert seen[-1][2] == result.total_bytes and seen[-1][0] == 20
    frames = []
    m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), tmp_path / "f.mkv", frames=7, vf="scale=128:-2", audio=False,
                   progress=lambda s: frames.append((s.total_frames, s.eta)))
    assert {total for total, _ in frames} == {7} and frames[-1][1] == 0


# ---- options: range checks and clear encoder messages ----------------------------------------------------------------
def test_crf_range_and_unknown_encoder(stream, tmp_path, capsys):
    assert "give a CRF from 0 to 63" in fails(["-i", str(stream), "-crf", "99", str(tmp_path / "a.mp4")], 2, capsys)
    assert "libx264 takes a CRF from 0 to 51" in fails(["-i", str(stream), "-crf", "55", str(tmp_path / "a.mp4")],
                                                       2, capsys)
    line = fails(["-i", str(stream), "-c:v", "nosuchenc", str(tmp_path / "a.mp4")], 2, capsys)
    assert line.count("nosuchenc") == 1 and "ffmpeg -encoders" in line
    assert "audio encoder" in fails(["-i", str(stream), "-c:v", "aac", str(tmp_path / "a.mp4")], 2, capsys)
    assert not list(tmp_path.iterdir())


# ---- API: its own words; a second decode is an error -----------------------------------------------------------------
def test_api_words_and_second_decode(stream, tmp_path):
    with pytest.raises(UsageError, match=r"^q=16: give a quality level from 0 to 15"):
        m3cvcav.encode(media_path("clips/vtest.avi"), tmp_path / "x.mkv", q=16)
    with pytest.raises(UsageError, match=r"^give either q= .* or bitrate= "):
        m3cvcav.encode(media_path("clips/vtest.avi"), tmp_path / "x.mkv", q=3, bitrate="20k")
    with pytest.raises(UsageError, match=r"^ss='soon'"):
        m3cvcav.decode(stream, tmp_path / "x.mp4", ss="soon")
    with m3cvcav.open(stream) as reader:
        assert len(list(reader.decode())) == 30
        with pytest.raises(UsageError, match="already read once"):
            list(reader.decode())
    assert not list(tmp_path.iterdir())


# ---- docs: every FFmpeg option answered with "not here" is in the table ------------------------------------------
def test_coming_from_ffmpeg_table_names_every_absent_option():
    from m3cvcav.options import ABSENT, ABSENT_PREFIXES

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("## Coming from FFmpeg", 1)[1].split("\n## ", 1)[0]
    for flag in [*ABSENT, *ABSENT_PREFIXES]:
        assert f"`{flag}" in table, flag
