"""The GStreamer elements (plugin/gst, docs/media-frameworks.md) as gst-launch-1.0 / gst-play-1.0 run them: frames
identical to the CLI's decode through matroskademux, playbin (with audio and subtitles), a seek to a segment start,
the bare .m3cv (typefinder + m3cvparse), a damaged segment concealed as the CLI conceals it, one-line errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from m3cvcav.__main__ import main

FRAME = 192 * 108 * 3 // 2  # one I420 frame of the test stream
SEGMENT = 25  # frames per segment (select=max=25)


def _gst_or_skip() -> dict[str, str]:
    from m3cvcav import gst
    from m3cvcav.core.errors import EngineError

    for tool in ("gst-launch-1.0", "gst-play-1.0"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install {gst.APT}; .ci/setup.sh does)")
    try:
        gst.check_loader()
    except EngineError as err:
        pytest.skip(str(err))
    return gst.environment()


@pytest.fixture(scope="module")
def gst_env(tmp_path_factory):
    env = {**os.environ, **_gst_or_skip()}
    env["GST_REGISTRY"] = str(tmp_path_factory.mktemp("gst") / "registry.bin")  # a fresh scan, not a stale cache
    return env


@pytest.fixture(scope="module")
def stream(framework_stream):
    return framework_stream


def cli_frames(path) -> np.ndarray:
    return np.fromfile(path, np.uint8).reshape(-1, FRAME)


def gst(args: list[str], env, tool: str = "gst-launch-1.0") -> subprocess.CompletedProcess:
    run = subprocess.run([tool, "-q", *args], env=env, capture_output=True, text=True, timeout=300)
    run.stderr = "\n".join(line for line in run.stderr.splitlines() if "should be floating" not in line)
    return run


def test_decoder_element_matches_cli(stream, gst_env, tmp_path):
    out = tmp_path / "gst.yuv"
    run = gst(["filesrc", f"location={stream}", "!", "matroskademux", "!", "m3cvcdec", "!", "filesink",
               f"location={out}"], gst_env)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == (stream.parent / "cli.yuv").read_bytes()


@pytest.mark.slow
def test_playbin_plays_video_audio_and_subtitles(stream, gst_env, tmp_path):
    uri = stream.resolve().as_uri()
    video, audio = tmp_path / "v.yuv", tmp_path / "a.raw"
    run = gst(["playbin", f"uri={uri}", "flags=0x3", f"video-sink=filesink location={video}",
               f"audio-sink=filesink location={audio}"], gst_env)
    assert run.returncode == 0, run.stderr
    assert video.read_bytes() == (stream.parent / "cli.yuv").read_bytes()  # rank primary: playbin picks m3cvcdec
    assert audio.stat().st_size > 48000  # the Opus track, decoded by GStreamer's own decoder
    shown = tmp_path / "t.yuv"  # default flags: the descriptions are drawn on the picture (textoverlay)
    run = gst(["playbin", f"uri={uri}", f"video-sink=filesink location={shown}", "audio-sink=fakesink"], gst_env)
    assert run.returncode == 0, run.stderr
    plain, text = cli_frames(stream.parent / "cli.yuv"), cli_frames(shown)
    assert len(text) == len(plain) and not np.array_equal(text, plain)


@pytest.mark.slow
def test_gst_play_seeks_to_a_segment_start(stream, gst_env, tmp_path):
    out = tmp_path / "seek.yuv"
    run = gst(["--no-interactive", "--no-position", "-s", "1.0", "--flags=3", f"--videosink=filesink location={out}",
               "--audiosink=fakesink sync=false", str(stream)], gst_env, tool="gst-play-1.0")
    assert run.returncode == 0, run.stderr
    frames, reference = cli_frames(out), cli_frames(stream.parent / "cli.yuv")
    assert len(frames) == len(reference) - SEGMENT and np.array_equal(frames, reference[SEGMENT:])


@pytest.mark.slow
def test_bare_m3cv_through_typefinder_and_parser(stream, gst_env, tmp_path):
    bare = tmp_path / "s.m3cv"
    assert main(["-nostats", "-i", str(stream), "-c", "copy", str(bare)]) == 0
    out = tmp_path / "m3cv.yuv"
    run = gst(["playbin", f"uri={bare.as_uri()}", f"video-sink=filesink location={out}"], gst_env)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == (stream.parent / "cli.yuv").read_bytes()


def test_damaged_segment_is_concealed_as_in_the_cli(stream, gst_env, tmp_path):
    from m3cvcav.bitstream.containers import open_reader

    with open_reader(stream) as reader:
        packet = list(reader.packets())[1]
    data = bytearray(stream.read_bytes())
    at = bytes(data).find(packet) + len(packet) // 3
    data[at] ^= 0x55
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    assert main(["-nostats", "-i", str(damaged), "-f", "rawvideo", str(tmp_path / "cli.yuv")]) == 0
    out = tmp_path / "gst.yuv"
    run = gst(["filesrc", f"location={damaged}", "!", "matroskademux", "!", "m3cvcdec", "!", "filesink",
               f"location={out}"], gst_env)
    assert run.returncode == 0, run.stderr
    assert "corrupt" in run.stderr
    assert out.read_bytes() == (tmp_path / "cli.yuv").read_bytes()


def test_bad_stream_is_one_element_error(stream, gst_env, tmp_path):
    data = bytearray(stream.read_bytes())
    data[data.find(b"M3CV") + 40] ^= 0xFF  # the sequence header in CodecPrivate
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    run = gst(["filesrc", f"location={bad}", "!", "matroskademux", "!", "m3cvcdec", "!", "fakesink"], gst_env)
    assert run.returncode != 0
    errors = [line for line in (run.stdout + run.stderr).splitlines() if "m3cvcav:" in line]
    assert len(errors) == 1 and "sequence header" in errors[0] and "Traceback" not in run.stderr, run.stderr


def test_gst_env_prints_exports(capsys):
    assert main(["gst", "env"]) == 0
    out = capsys.readouterr().out
    assert "export GST_PLUGIN_PATH=" in out and "export M3CVCAV_SITE=" in out
    from m3cvcav import gst

    assert (gst.PLUGIN_DIR / "python" / "m3cvcav_gst.py").is_file()
    assert sys.prefix in out or any(d in out for d in gst.site_dirs())
