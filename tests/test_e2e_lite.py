"""The README's first commands, end to end on the lite profile, on a 1.2 s cut of Big Buck Bunny (1280x720, audio):
encode to .mkv, inspect it with ffprobe/mkvmerge, decode to .mp4 (frames, size, rate, audio), pipe y4m into ffmpeg, and
the same through the Python API."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import av
import pytest

import m3cvcav
from helpers import media_path, require_lite_weights
from m3cvcav.__main__ import main

FRAMES = 30  # 1.2 s at 25 fps


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    require_lite_weights()
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("e2e")
    src = media_path("clips/bigbuckbunny.mp4")
    assert main(["-y", "-nostats", "-i", str(src), "-t", "1.2", "-c", "m3cvc", str(folder / "out.mkv")]) == 0
    return folder


def test_stream_is_matroska_with_m3cv_video_audio_and_descriptions(encoded):
    out = encoded / "out.mkv"
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]
        assert c.metadata.get("M3CV_PROFILE") == "lite" and "embedder=" in c.metadata.get("M3CV_BACKEND", "")
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                               capture_output=True, check=True)
        streams = json.loads(probe.stdout)["streams"]
        assert streams[0]["codec_tag_string"] == "M3CV" and streams[1]["codec_name"] == "opus"  # the low-rate default
    if shutil.which("mkvmerge"):
        info = json.loads(subprocess.run(["mkvmerge", "-J", str(out)], capture_output=True, check=True).stdout)
        assert [t["type"] for t in info["tracks"]] == ["video", "audio", "subtitles"]


def test_decode_to_mp4_restores_frames_size_rate_and_audio(encoded):
    back = encoded / "back.mp4"
    assert main(["-y", "-nostats", "-i", str(encoded / "out.mkv"), str(back)]) == 0
    with av.open(str(back)) as c:
        video = c.streams.video[0]
        assert (video.frames, video.width, video.height, video.average_rate) == (FRAMES, 1280, 720, 25)
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "opus"  # copied: mp4 takes Opus
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(media_path("clips/bigbuckbunny.mp4"))) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(frames[0].astype(int) - first).mean() < 30  # the real picture, at a few kbit/s


def test_y4m_pipe_into_ffmpeg(encoded):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    producer = subprocess.Popen([sys.executable, "-m", "m3cvcav", "-i", str(encoded / "out.mkv"), "-f",
                                 "yuv4mpegpipe", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumer = subprocess.run(["ffmpeg", "-hide_banner", "-i", "-", "-f", "null", "-"], stdin=producer.stdout,
                              capture_output=True, timeout=300)
    producer.stdout.close()
    assert producer.wait(timeout=300) == 0 and consumer.returncode == 0
    assert re.search(rf"frame=\s*{FRAMES}\b", consumer.stderr.decode())


def test_same_through_the_python_api(encoded):
    result = m3cvcav.decode(encoded / "out.mkv", encoded / "api.mkv", codec="libx264", crf=30, preset="ultrafast")
    assert result.frames == FRAMES
    with m3cvcav.open(encoded / "out.mkv") as stream:
        pts = [f.pts for f in stream.decode()]
    assert pts == [i * 512 for i in range(FRAMES)]  # time base 1/12800 of the source, 25 fps
    probe = subprocess.run([sys.executable, "-m", "m3cvcav", "probe", str(encoded / "out.mkv")], capture_output=True)
    assert probe.returncode == 0 and b"1280x720" in probe.stdout
