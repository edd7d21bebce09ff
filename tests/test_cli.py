"""The FFmpeg-like CLI: argument handling, exit codes and one-line errors, signals (SIGTERM 143, SIGHUP 129), pipes,
output names and permissions, one-image outputs, damaged streams, progress, edit, play, -h pages, logger names."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import av
import numpy as np
import pytest

import m3cvcav
from helpers import encoder_mid_write, error_line, media_path, require_lite_weights, run_cli
from m3cvcav.__main__ import main
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.probe import probe
from m3cvcav.cli_transcode import parse_args
from m3cvcav.core.errors import UsageError


def test_parse_ffmpeg_style_arguments():
    args = parse_args(["-y", "-i", "in.mp4", "-c:v", "m3cvc", "-b:v", "20k", "-vf", "scale=320:-2", "-ss", "1",
                       "-frames:v", "10", "-nostats", "out.mkv"])
    assert args.inputs == ["in.mp4"] and args.output == "out.mkv"
    # values by the API's keyword, converted by the one option table (-y: overwrite=True, -nostats: stats=False)
    assert args.values == {"codec": "m3cvc", "bitrate": 20000.0, "vf": "scale=320:-2", "ss": 1.0, "frames": 10,
                           "overwrite": True, "stats": False}
    with pytest.raises(UsageError, match=r"-q '99': give a quality level from 0 to 15"):
        parse_args(["-q", "99"])
    with pytest.raises(UsageError, match="-y and -n contradict"):
        parse_args(["-y", "-n"])
    with pytest.raises(UsageError, match="-mode 'i2v': give it2v"):
        parse_args(["-mode", "i2v"])


def test_one_option_table_drives_cli_api_and_docs(tmp_path):
    import inspect
    import os
    from pathlib import Path

    import m3cvcav
    from m3cvcav import options
    from m3cvcav.cli_transcode import usage

    text = " ".join(usage().split())  # -h wraps the help to the terminal
    keywords = set(inspect.signature(m3cvcav.encode).parameters) | set(inspect.signature(m3cvcav.decode).parameters)
    for option in options.OPTIONS:
        assert all(flag in text for flag in option.flags) and option.help in text
        assert not option.api or option.name in keywords, option.name  # each API option is a keyword of the API
    with pytest.raises(UsageError, match=r"^q=99: give a quality level from 0 to 15"):  # the API's own words
        m3cvcav.encode(tmp_path / "x.mp4", tmp_path / "y.mkv", q=99)
    with pytest.raises(UsageError, match="^engine='cuda': must be one of auto, tensorrt, onnxruntime, torch"):
        m3cvcav.decode(tmp_path / "x.mkv", tmp_path / "y.mp4", engine="cuda")
    docs = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    begin, end = "<!-- options:begin (generated from m3cvcav.options; tests/test_cli.py checks it) -->\n", \
        "<!-- options:end -->"
    text = docs.read_text(encoding="utf-8")
    if os.environ.get("M3CVC_REGEN_EXPECTED") == "1":
        head, _, rest = text.partition(begin)
        text = head + begin + options.markdown() + end + rest.partition(end)[2]
        docs.write_text(text, encoding="utf-8")
    assert begin + options.markdown() + end in text, "docs/cli.md's options are stale: rerun with M3CVC_REGEN_EXPECTED=1"


@pytest.mark.parametrize("argv,status,message", [
    (["-i", "a.mp4", "-bogus", "o.mkv"], 2, "unknown option -bogus; valid options: -i"),
    (["-i", "a.mp4"], 2, "no output file"),
    (["o.mkv"], 2, "exactly one input"),
    (["-i", "a.mp4", "-b:v"], 2, "needs a value"),
    (["-i", "/no/such/file.mp4", "-c", "m3cvc", "o.mkv"], 1, "does not exist"),
    (["-loglevel", "loud", "-i", "a.mp4", "o.mkv"], 2, "unknown -loglevel"),
])
def test_errors_exit_codes(argv, status, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == status
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_graph_and_non_video_inputs(tmp_path, media):
    src = str(media("photos/skimage_chelsea.png"))
    r = run_cli("-i", src, "-c", "m3cvc", "-vf", "select=nope=1", str(tmp_path / "o.mkv"))
    assert r.returncode == 2 and "valid options: threshold" in error_line(r.stderr)
    r = run_cli("-i", src, "-c", "m3cvc", "-vf", "scalee=2:2", str(tmp_path / "o.mkv"))
    assert r.returncode == 2 and "unknown filter 'scalee'" in error_line(r.stderr)
    (tmp_path / "notes.txt").write_text("hello")
    r = run_cli("-i", str(tmp_path / "notes.txt"), "-c", "m3cvc", str(tmp_path / "o.mkv"))
    assert r.returncode == 1 and "cannot read" in error_line(r.stderr)
    r = run_cli("-i", src, str(tmp_path / "o.mp4"))
    assert r.returncode == 2 and "add -c m3cvc" in error_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_help_and_version():
    assert run_cli("-h").stdout.startswith(b"usage: python -m m3cvcav")
    assert run_cli("-version").stdout.startswith(b"m3cvcav ")


def test_play_says_what_to_install(stream, monkeypatch, capsys):
    import m3cvcav.cli_play as play

    monkeypatch.setattr(play.shutil, "which", lambda name: None)
    assert main(["play", str(stream)]) == 1
    assert "install ffplay (apt install ffmpeg) or mpv" in capsys.readouterr().err
    monkeypatch.setattr(play.shutil, "which", lambda name: "/usr/bin/ffplay")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["play", str(stream)]) == 1  # checked before the decode starts, not after ffplay's own error
    assert "needs a display" in capsys.readouterr().err


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """A small real stream made by the CLI (needs the tokenizer's shipped weights)."""
    require_lite_weights()
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "s.mkv"
    assert main(["-nostats", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-t", "1.2", "-vf",
                 "scale=192:-2,select=max=10", "-c", "m3cvc", str(out)]) == 0
    return out


def test_overwrite_rules(stream, tmp_path, capsys):
    target = tmp_path / "back.mp4"
    target.write_bytes(b"old")
    assert main(["-i", str(stream), str(target)]) == 1
    assert "already exists: pass -y" in capsys.readouterr().err and target.read_bytes() == b"old"
    assert main(["-n", "-i", str(stream), str(target)]) == 1
    assert main(["-y", "-nostats", "-i", str(stream), "-frames:v", "7", str(target)]) == 0
    import av

    with av.open(str(target)) as c:
        assert c.streams.video[0].frames == 7 and c.streams.audio  # the audio came along from the .mkv


def test_y4m_to_stdout(stream):
    r = run_cli("-i", str(stream), "-f", "yuv4mpegpipe", "-")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"YUV4MPEG2 W192 H108 F25:1") and r.stdout.count(b"FRAME") == 30


def test_edit_rewrites_only_the_texts(stream, tmp_path):
    from m3cvcav.bitstream.containers import open_reader

    out = tmp_path / "edited.mkv"
    assert main(["edit", str(stream), "--segment", "1", "--frame-text", "a red kite", "--clip-text",
                 "the kite drifts left", "-o", str(out)]) == 0
    with open_reader(stream) as a, open_reader(out) as b:
        assert a.header == b.header
        old, new = list(a.segments()), list(b.segments())
        packets_old, packets_new = list(open_reader(stream).packets()), list(open_reader(out).packets())
    assert len(old) == len(new) >= 3
    assert (new[1].frame_text, new[1].clip_text) == ("a red kite", "the kite drifts left")
    assert new[1].tokens == old[1].tokens and new[1].header == old[1].header
    assert [p for i, p in enumerate(packets_new) if i != 1] == [p for i, p in enumerate(packets_old) if i != 1]
    assert main(["edit", str(stream), "--segment", "99", "--frame-text", "x", "-o", str(tmp_path / "e.mkv")]) == 2
    assert not (tmp_path / "e.mkv").exists()


def test_progress_file(stream, tmp_path):
    progress = tmp_path / "p.txt"
    assert main(["-y", "-progress", str(progress), "-i", str(stream), str(tmp_path / "x.y4m")]) == 0
    text = progress.read_text()
    assert "frame=30" in text and text.rstrip().endswith("progress=end")
    assert np.isfinite(float(text.split("fps=")[1].split()[0]))


def test_ctrl_c_leaves_no_output(tmp_path):
    """SIGINT in the middle of an encode: exit 130, one line, and neither the output nor its temp file remain."""
    proc = encoder_mid_write(tmp_path, "out.m3cv")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stderr = proc.stderr.read()
    assert "interrupted" in error_line(stderr) and b"Traceback" not in stderr  # PyAV's pipe reader was cut too
    assert list(tmp_path.iterdir()) == []


def test_size_and_rate_options_and_pipes(tmp_path):
    require_lite_weights()
    out = tmp_path / "sr.m3cv"
    assert main(["-nostats", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-t", "1", "-s", "64x48", "-r", "5",
                 "-q", "0", str(out)]) == 0
    import m3cvcav

    with m3cvcav.open(out) as stream:
        assert (stream.header.width, stream.header.height, stream.header.fps) == (64, 48, 5)
        assert len(list(stream.decode())) == 5
    with open(out, "rb") as stdin:  # .m3cv streams decode from a pipe too
        r = run_cli("-i", "-", "-f", "yuv4mpegpipe", "-", stdin=stdin)
    assert r.returncode == 0 and r.stdout.startswith(b"YUV4MPEG2 W64 H48 F5:1") and r.stdout.count(b"FRAME") == 5


def test_decode_progress_and_result_show_what_is_written(bbb_stream, tmp_path):
    path, _ = bbb_stream
    progress = tmp_path / "p.txt"
    out = tmp_path / "back.y4m"
    assert main(["-nostats", "-progress", str(progress), "-i", str(path), str(out)]) == 0
    sizes = [int(line.split("=")[1]) for line in progress.read_text().splitlines() if line.startswith("total_size=")]
    assert sizes[-1] > 0 and sizes == sorted(sizes)
    result = m3cvcav.decode(path, tmp_path / "r.mp4")
    assert result.segments == len(probe(path)["segments"]) > 0 and 0 < result.bytes <= result.total_bytes


@pytest.mark.parametrize("sig, status, words", [(signal.SIGTERM, 143, "received SIGTERM"),
                                                pytest.param(signal.SIGHUP, 129, "received SIGHUP",
                                                             marks=pytest.mark.slow)])  # the same path
def test_termination_signals_leave_nothing(tmp_path, sig, status, words):
    proc = encoder_mid_write(tmp_path, "out.mkv")
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == status
    stderr = proc.stderr.read()
    assert words in error_line(stderr) and b"Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_one_signal_path_nests_and_restores_every_handler():
    """A chunked job inside the command line keeps the command line's handler (so SIGTERM is Terminated, exit 143,
    not a plain KeyboardInterrupt, 130); after the outer block every handler is what it was."""
    import signal
    import time

    from m3cvcav import workers

    watched = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in watched}
    hooks = sys.excepthook, sys.unraisablehook
    with pytest.raises(workers.Terminated) as stop:
        with workers.signals_as_interrupts():
            outer = signal.getsignal(signal.SIGTERM)
            with workers.signals_as_interrupts():  # what encode_chunked / ParallelDecoder enter
                assert signal.getsignal(signal.SIGTERM) is outer
                signal.raise_signal(signal.SIGTERM)
                time.sleep(5)  # the handler raises before this ends
    assert stop.value.signum == signal.SIGTERM and isinstance(stop.value, KeyboardInterrupt)
    assert {sig: signal.getsignal(sig) for sig in watched} == before
    assert (sys.excepthook, sys.unraisablehook) == hooks and workers.received_stop() is None


def test_closed_pipe_ends_quietly(bbb_stream):
    path, _ = bbb_stream
    shell = f"{sys.executable} -m m3cvcav -i {path} -f yuv4mpegpipe - | head -c 1000 > /dev/null; " \
            "echo ${PIPESTATUS[0]}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "0" and "m3cvcav:" not in done.stderr and "Error" not in done.stderr


def test_outputs_get_the_usual_permissions(bbb_stream, tmp_path):
    path, _ = bbb_stream
    old = os.umask(0o027)
    try:
        m3cvcav.decode(path, tmp_path / "d.mp4", frames=2)
        m3cvcav.decode(path, tmp_path / "f_%02d.png", frames=2)
        m3cvcav.encode(iter([np.zeros((32, 48, 3), np.uint8)] * 2), tmp_path / "e.m3cv")
        main(["edit", str(path), "--segment", "0", "--clip-text", "x", "-o", str(tmp_path / "e.mkv")])
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["d.mp4", "f_01.png", "f_02.png", "e.m3cv", "e.mkv"], 0o640)


def test_bad_output_name_is_refused_before_any_model(bbb_stream, tmp_path):
    r = run_cli("-loglevel", "verbose", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-c", "m3cvc",
            str(tmp_path / "x.xyz"))
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert "-f mkv|m3cv" in line and "format=" not in line and "container=" not in line
    assert b"engines" not in r.stderr  # no model was loaded
    with pytest.raises(UsageError, match="format='mkv'"):
        m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), tmp_path / "x.xyz")
    stream, _ = bbb_stream
    with pytest.raises(UsageError, match="cannot tell the output format"):  # decoding: before the models load too
        m3cvcav.decode(stream, tmp_path / "x.xyz")
    assert list(tmp_path.iterdir()) == []


def test_one_image_output_takes_one_frame(bbb_stream, tmp_path):
    path, _ = bbb_stream
    with m3cvcav.open(path) as s:
        frames = [f.to_ndarray(format="rgb24") for f in s.decode()]
    assert m3cvcav.decode(path, tmp_path / "one.png").frames == 1
    assert m3cvcav.decode(path, tmp_path / "at.png", ss=0.4).frames == 1
    for name, index in (("one.png", 0), ("at.png", 10)):
        with av.open(str(tmp_path / name)) as c:
            image = next(c.decode(video=0)).to_ndarray(format="rgb24")
        assert np.abs(image.astype(int) - frames[index]).mean() < 3
    r = run_cli("-i", str(path), "-frames:v", "3", str(tmp_path / "three.png"))
    assert r.returncode == 2 and "%04d" in error_line(r.stderr)


def test_every_segment_damaged_fails_and_writes_nothing(tmp_path, capsys):
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(6)]
    m3cvcav.encode(iter(frames), tmp_path / "c.m3cv", fps=6, vf="select=max=3")
    data = bytearray((tmp_path / "c.m3cv").read_bytes())
    with open_reader(tmp_path / "c.m3cv") as reader:
        packets = [bytes(p) for p in reader.packets()]
    for p in packets:
        where = data.find(p)
        data[where + len(p) // 2] ^= 0xFF
    (tmp_path / "bad.m3cv").write_bytes(bytes(data))
    assert main(["-i", str(tmp_path / "bad.m3cv"), str(tmp_path / "out.mp4")]) == 1
    assert "every segment is damaged" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.m3cv", "c.m3cv"]


def test_edit_writes_what_the_name_says(bbb_stream, tmp_path, caplog):
    path, _ = bbb_stream
    with caplog.at_level(logging.WARNING, logger="m3cvcav"):
        assert main(["edit", str(path), "--segment", "0", "--frame-text", "a kite", "-o",
                     str(tmp_path / "e.m3cv")]) == 0
    assert (tmp_path / "e.m3cv").read_bytes()[:4] == b"M3CV"
    assert "do not change" in caplog.text  # lite pictures come from the tokens only
    with open_reader(tmp_path / "e.m3cv") as r:
        assert next(r.segments()).frame_text == "a kite"
    assert main(["edit", str(path), "--segment", "0", "--frame-text", "x", "-o", str(tmp_path / "e.xyz")]) == 2
    assert main(["edit", str(path), "--segment", "99", "--frame-text", "x", "-o", str(tmp_path / "n.mkv")]) == 2
    assert main(["edit", str(path), "--segment", "0", "--frame-text", "x" * 70000, "-o", str(tmp_path / "n.mkv")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.m3cv"]


@pytest.mark.slow
def test_help_is_generated_from_the_option_tables():
    from m3cvcav.filters import pipeline
    from m3cvcav.filters.node import REGISTRY
    from m3cvcav.options import BY_FLAG

    text = run_cli("-h").stdout.decode()
    assert all(flag in text for flag in BY_FLAG)
    for node in pipeline.ENCODER_NODES:
        assert f"{node}=" + ":".join(o.name for o in REGISTRY[node].OPTIONS) in text
    assert "step" in text and "`" not in text
    select = run_cli("-h", "filter=select")
    assert select.returncode == 0 and all(o.name in select.stdout.decode() for o in REGISTRY["select"].OPTIONS)
    assert b"ffmpeg -h filter=scale" in run_cli("-h", "filter=scale").stdout
    assert run_cli("-h", "filter=nosuch").returncode == 2
    play = run_cli("play", "-h")
    assert play.returncode == 0 and play.stdout.startswith(b"usage: python -m m3cvcav play")
    bench = run_cli("bench", "rd", "--help")
    assert bench.returncode == 0 and b"rate-distortion" in bench.stdout.lower() and b"`" not in bench.stdout
    for argv in (["engines", "-h"], ["edit", "-h"], ["bench", "codec", "-h"], ["-h", "filter=select"], ["-h"]):
        page = run_cli(*argv).stdout.decode()  # no reStructuredText, no line cut off in mid-sentence or past 120 columns
        assert "`" not in page and all(len(line) <= 120 for line in page.splitlines()), argv
    assert "(ONNX exports and TensorRT plans)" in " ".join(run_cli("engines", "-h").stdout.decode().split())


def test_eq_names_pyav_ffmpeg(tmp_path, capsys):
    assert main(["-i", str(media_path("clips/bigbuckbunny.mp4")), "-vf", "eq=contrast=2", str(tmp_path / "o.mkv")]) == 2
    assert "the FFmpeg that PyAV bundles" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_play_checks_before_the_player(tmp_path, monkeypatch, capsys):
    assert main(["play", str(tmp_path / "missing.mkv")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_logger_names_are_not_doubled():
    from m3cvcav.bitstream.containers import m3cv
    from m3cvcav.core.log import get_logger

    assert m3cv.log.name == "m3cvcav.bitstream.containers.m3cv" and get_logger("api").name == "m3cvcav.api"
