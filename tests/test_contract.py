"""The user's contract (issue 13): audio options and cuts, one number for video bytes, rate targets, signals, pipes,
permissions, one-image outputs, damaged streams, edit, help, the m3cvc profile failing fast, the API's surface."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

import m3cvcav
from helpers import error_line, media_path, require_lite_weights
from m3cvcav.__main__ import main
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.probe import probe
from m3cvcav.core.errors import BitstreamError, ModelError, OutputError, UsageError


def run(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3cvcav", *args], capture_output=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1.2 s of Big Buck Bunny at 192x108, with its (5.1 AAC, ~385 kbit/s) audio, encoded by the API."""
    require_lite_weights()
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("contract") / "s.mkv"
    result = m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), out, t=1.2, vf="scale=192:-2,select=max=10")
    return out, result


# ---- audio ------------------------------------------------------------------------------------------------------
def _audio(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        packets = [p for p in c.demux(a) if p.size]
        end = max(float((p.pts + p.duration) * p.time_base) for p in packets)
        return a.codec_context.name, a.codec_context.channels, sum(p.size for p in packets), end


def test_default_audio_is_low_rate_opus_cut_with_the_video(clip):
    path, result = clip
    codec, channels, size, end = _audio(path)
    assert (codec, channels) == ("opus", 2)  # 5.1 AAC at 385 kbit/s would be 98 % of the file
    assert size * 8 / result.duration < 32000
    assert end <= result.duration + 0.03  # -t cut the audio too


def test_audio_options_on_encode_and_decode(clip, tmp_path):
    src = media_path("clips/bigbuckbunny.mp4")
    copy = tmp_path / "copy.mkv"
    m3cvcav.encode(src, copy, frames=10, q=0, vf="scale=96:-2", audio_codec="copy")
    assert _audio(copy)[:2] == ("aac", 6)
    assert _audio(copy)[3] <= 10 / 25 + 0.03  # -frames:v cut the copied audio at the last frame
    mono = tmp_path / "mono.mkv"
    m3cvcav.encode(src, mono, frames=10, q=0, vf="scale=96:-2", audio_codec="libopus", audio_bitrate="12k",
                   channels=1)
    assert _audio(mono)[:2] == ("opus", 1)
    none = tmp_path / "none.mkv"
    m3cvcav.encode(src, none, frames=10, q=0, vf="scale=96:-2", audio=False)
    assert _audio(none) is None
    path, _ = clip
    webm = tmp_path / "back.webm"
    assert m3cvcav.decode(path, webm, frames=5, codec="libvpx").frames == 5
    codec, _, _, end = _audio(webm)
    assert codec == "opus" and end <= 5 / 25 + 0.03  # .webm gets Opus, cut with -frames:v
    aac = tmp_path / "back.mp4"
    m3cvcav.decode(path, aac, audio_codec="aac", audio_bitrate="32k", sample_rate=44100, channels=1)
    with av.open(str(aac)) as c:
        a = c.streams.audio[0].codec_context
        assert (a.name, a.sample_rate, a.channels) == ("aac", 44100, 1)
    r = run("-i", str(path), "-c:a", "copy", "-b:a", "32k", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "need an encoder" in error_line(r.stderr)


# ---- one number for one thing --------------------------------------------------------------------------------------
def test_video_bytes_agree_everywhere(clip, tmp_path):
    path, result = clip
    report = probe(path)
    assert result.bytes == report["video_bytes"] and result.total_bytes == path.stat().st_size
    if shutil.which("ffprobe"):
        sizes = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=size",
                                "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
        assert sum(map(int, sizes.split())) == result.bytes
    progress = tmp_path / "p.txt"
    out = tmp_path / "again.mkv"
    assert main(["-nostats", "-progress", str(progress), "-i", str(media_path("clips/bigbuckbunny.mp4")), "-t", "1.2",
                 "-vf", "scale=192:-2,select=max=10", str(out)]) == 0
    last = progress.read_text().split("progress=")[-2]
    pairs = dict(line.split("=", 1) for line in last.splitlines() if "=" in line)
    assert int(pairs["video_size"]) == probe(out)["video_bytes"] and int(pairs["total_size"]) == out.stat().st_size


def test_decode_progress_and_result_show_what_is_written(clip, tmp_path):
    path, _ = clip
    progress = tmp_path / "p.txt"
    out = tmp_path / "back.y4m"
    assert main(["-nostats", "-progress", str(progress), "-i", str(path), str(out)]) == 0
    sizes = [int(line.split("=")[1]) for line in progress.read_text().splitlines() if line.startswith("total_size=")]
    assert sizes[-1] > 0 and sizes == sorted(sizes)
    result = m3cvcav.decode(path, tmp_path / "r.mp4")
    assert result.segments == len(probe(path)["segments"]) > 0 and 0 < result.bytes <= result.total_bytes


def test_rate_targets(clip, caplog, capsys, tmp_path):
    path, _ = clip
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


# ---- signals, pipes, files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, status, words", [(signal.SIGTERM, 143, "received SIGTERM"),
                                                (signal.SIGHUP, 129, "received SIGHUP")])
def test_termination_signals_leave_nothing(tmp_path, sig, status, words):
    require_lite_weights()
    proc = subprocess.Popen([sys.executable, "-m", "m3cvcav", "-i", str(media_path("clips/vtest.avi")), "-c", "m3cvc",
                             "-q", "0", "-vf", "scale=128:-2,select=max=5", str(tmp_path / "out.mkv")],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*part*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.*part*")), "the encoder never started writing"
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == status
    assert words in error_line(proc.stderr.read())
    assert list(tmp_path.iterdir()) == []


def test_closed_pipe_ends_quietly(clip):
    path, _ = clip
    shell = f"{sys.executable} -m m3cvcav -i {path} -f yuv4mpegpipe - | head -c 1000 > /dev/null; " \
            "echo ${PIPESTATUS[0]}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "0" and "m3cvcav:" not in done.stderr and "Error" not in done.stderr


def test_outputs_get_the_usual_permissions(clip, tmp_path):
    path, _ = clip
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


def test_bad_output_name_is_refused_before_any_model(clip, tmp_path):
    r = run("-loglevel", "verbose", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-c", "m3cvc",
            str(tmp_path / "x.xyz"))
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert "-f mkv|m3cv" in line and "format=" not in line and "container=" not in line
    assert b"engines" not in r.stderr  # no model was loaded
    with pytest.raises(UsageError, match="format='mkv'"):
        m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), tmp_path / "x.xyz")
    stream, _ = clip
    with pytest.raises(UsageError, match="cannot tell the output format"):  # decoding: before the models load too
        m3cvcav.decode(stream, tmp_path / "x.xyz")
    assert list(tmp_path.iterdir()) == []


def test_one_image_output_takes_one_frame(clip, tmp_path):
    path, _ = clip
    with m3cvcav.open(path) as s:
        frames = [f.to_ndarray(format="rgb24") for f in s.decode()]
    assert m3cvcav.decode(path, tmp_path / "one.png").frames == 1
    assert m3cvcav.decode(path, tmp_path / "at.png", ss=0.4).frames == 1
    for name, index in (("one.png", 0), ("at.png", 10)):
        with av.open(str(tmp_path / name)) as c:
            image = next(c.decode(video=0)).to_ndarray(format="rgb24")
        assert np.abs(image.astype(int) - frames[index]).mean() < 3
    r = run("-i", str(path), "-frames:v", "3", str(tmp_path / "three.png"))
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


def test_edit_writes_what_the_name_says(clip, tmp_path, caplog):
    path, _ = clip
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


# ---- help, logs, play --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_help_is_generated_from_the_option_tables():
    from m3cvcav.filters import pipeline
    from m3cvcav.filters.node import REGISTRY
    from m3cvcav.options import BY_FLAG

    text = run("-h").stdout.decode()
    assert all(flag in text for flag in BY_FLAG)
    for node in pipeline.ENCODER_NODES:
        assert f"{node}=" + ":".join(o.name for o in REGISTRY[node].OPTIONS) in text
    assert "step" in text and "`" not in text
    select = run("-h", "filter=select")
    assert select.returncode == 0 and all(o.name in select.stdout.decode() for o in REGISTRY["select"].OPTIONS)
    assert b"ffmpeg -h filter=scale" in run("-h", "filter=scale").stdout
    assert run("-h", "filter=nosuch").returncode == 2
    play = run("play", "-h")
    assert play.returncode == 0 and play.stdout.startswith(b"usage: python -m m3cvcav play")
    bench = run("bench", "rd", "--help")
    assert bench.returncode == 0 and b"rate-distortion" in bench.stdout.lower() and b"`" not in bench.stdout
    for argv in (["engines", "-h"], ["edit", "-h"], ["bench", "codec", "-h"], ["-h", "filter=select"], ["-h"]):
        page = run(*argv).stdout.decode()  # no reStructuredText, no line cut off in mid-sentence or past 120 columns
        assert "`" not in page and all(len(line) <= 120 for line in page.splitlines()), argv
    assert "(ONNX exports and TensorRT plans)" in " ".join(run("engines", "-h").stdout.decode().split())


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


def test_no_tensorrt_hint_without_cuda():
    from m3cvcav.engines.backends.trt_backend import unavailable_reason

    assert "pip install" not in unavailable_reason("cpu")


# ---- the m3cvc profile without weights ------------------------------------------------------------------------------
def test_m3cvc_fails_fast_offline(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    start = time.monotonic()
    r = run("-i", str(media_path("clips/bigbuckbunny.mp4")), "-profile", "m3cvc", "-frames:v", "2",
            str(tmp_path / "o.mkv"), env=env, timeout=120)
    assert time.monotonic() - start < 60
    line = error_line(r.stderr)
    assert r.returncode == 1 and "HF_HUB_OFFLINE" in line and "hf download" in line
    assert "-profile lite" in line and len(r.stderr.decode().strip().splitlines()) == 1


def test_m3cvc_fails_fast_without_a_hub(tmp_path, monkeypatch):
    from m3cvcav.engines import preflight
    from m3cvcav.engines.registry import load_profile

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(preflight, "hub_answer", lambda repo, revision: "Name or service not known")
    with pytest.raises(ModelError, match="does not serve .*Name or service not known.*-profile lite"):
        preflight.check_profile(load_profile("m3cvc"), ["describer"])


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    from m3cvcav.engines import preflight
    from m3cvcav.engines.registry import load_profile

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(m3cvcav.EngineError, match=r"transformers from the optional \[m3cvc\] extra.*-profile lite"):
        preflight.check_profile(load_profile("m3cvc"), ["describer"])
    from m3cvcav.core.errors import missing_package

    assert "[bench] extra" in str(missing_package("matplotlib", "bench rd"))


# ---- the API's surface ----------------------------------------------------------------------------------------------
def test_api_surface_and_wording(clip, tmp_path):
    assert {"encode", "decode", "open", "Result"} <= set(dir(m3cvcav)) and "encode" in m3cvcav.__all__
    path, _ = clip
    (tmp_path / "x.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="overwrite=True"):
        m3cvcav.decode(path, tmp_path / "x.mp4")
    with pytest.raises(UsageError, match="positive"):
        m3cvcav.encode(path, tmp_path / "y.mkv", bitrate=0)
    with pytest.raises(BitstreamError):
        m3cvcav.decode(tmp_path / "x.mp4", tmp_path / "z.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_probe_json_separates_audio(clip):
    path, _ = clip
    done = subprocess.run([sys.executable, "-m", "m3cvcav", "probe", "--json", str(path)], capture_output=True,
                          text=True)
    report = json.loads(done.stdout)
    assert report["audio_bytes"] > 0 and report["video_bytes"] + report["audio_bytes"] < report["file_size"]


def test_registry_names_the_extra_of_a_missing_package(monkeypatch):
    from m3cvcav.engines import registry

    def missing(name):
        raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")

    profile = registry.load_profile("m3cvc")
    monkeypatch.setattr(registry.importlib, "import_module", missing)
    with pytest.raises(m3cvcav.EngineError, match=r"diffusers from the optional \[m3cvc\] extra"):
        profile._factory("keyframe_generator")
