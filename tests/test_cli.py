"""The FFmpeg-like CLI: argument handling, exit codes and one-line errors, pipes, edit and play."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import error_line, media_path, require_lite_weights
from m3cvcav.__main__ import main
from m3cvcav.cli_transcode import parse_args
from m3cvcav.core.errors import UsageError


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3cvcav", *args], capture_output=True, timeout=300, **kw)


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
    r = run("-i", src, "-c", "m3cvc", "-vf", "select=nope=1", str(tmp_path / "o.mkv"))
    assert r.returncode == 2 and "valid options: threshold" in error_line(r.stderr)
    r = run("-i", src, "-c", "m3cvc", "-vf", "scalee=2:2", str(tmp_path / "o.mkv"))
    assert r.returncode == 2 and "unknown filter 'scalee'" in error_line(r.stderr)
    (tmp_path / "notes.txt").write_text("hello")
    r = run("-i", str(tmp_path / "notes.txt"), "-c", "m3cvc", str(tmp_path / "o.mkv"))
    assert r.returncode == 1 and "cannot read" in error_line(r.stderr)
    r = run("-i", src, str(tmp_path / "o.mp4"))
    assert r.returncode == 2 and "add -c m3cvc" in error_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_help_and_version():
    assert run("-h").stdout.startswith(b"usage: python -m m3cvcav")
    assert run("-version").stdout.startswith(b"m3cvcav ")


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
    r = run("-i", str(stream), "-f", "yuv4mpegpipe", "-")
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
    import signal
    import time

    require_lite_weights()
    src = media_path("clips/vtest.avi")
    proc = subprocess.Popen([sys.executable, "-m", "m3cvcav", "-i", str(src), "-c", "m3cvc", "-q", "0", "-vf",
                             "scale=128:-2,select=max=5", str(tmp_path / "out.m3cv")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*part*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.*part*")), "the encoder never started writing"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in error_line(proc.stderr.read())
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
        r = run("-i", "-", "-f", "yuv4mpegpipe", "-", stdin=stdin)
    assert r.returncode == 0 and r.stdout.startswith(b"YUV4MPEG2 W64 H48 F5:1") and r.stdout.count(b"FRAME") == 5
