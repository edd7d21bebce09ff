"""``probe``: the stable report of docs/bitstream.md §9, equal `segments`/`layers` across containers, CLI behaviour, and
video bytes as one number (probe, ffprobe, Result, -progress)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import media_path
from m3cvcav.__main__ import main
from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import open_writer
from m3cvcav.bitstream.probe import LAYERS, probe, unit_layers
from m3cvcav.bitstream.framing import pack_unit
from m3cvcav.engines.interfaces import GenerationParams
from streams import sequence_header, synthetic_segments


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    header = sequence_header(2)
    segments = synthetic_segments(seconds=3, segment_frames=36)
    segments[1].params = GenerationParams(seed=3, steps=4, scheduler_id=1, mode="it2v")
    out, written = {}, {}
    for ext in ("m3cv", "mkv"):
        out[ext] = folder / f"s.{ext}"
        with open_writer(out[ext], header) as w:
            for s in segments:
                w.write_segment(s)
        written[ext] = (w.video_bytes, w.bytes_written)
    out["written"] = written
    return header, segments, out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3cvcav", "probe", *args], capture_output=True, text=True)


def test_layer_accounting_is_exact():
    seg = U.Segment(U.SegmentHeader(0, 0, 2), U.KeyframeTokens(1, 0, (1, 2, 2), (32, 32), b"\x01" * 10),
                    frame_text="hi", params=GenerationParams(seed=1))
    data = U.encode_segment(seg)
    layers = unit_layers(data + pack_unit(0x55, b"abc") + pack_unit(U.PADDING, b"zz"))
    text_len = len(U.text_payload("hi", ""))
    assert layers == {"headers": 5 + 7, "framing": 6 * 6, "base": 0, "tokens": 10, "text": text_len, "params": 4,
                      "timestamps": 0, "padding": 2, "unknown": 3}
    assert sum(layers.values()) == len(data) + 9 + 8


def test_report_contents(files):
    header, segments, paths = files
    r = probe(paths["m3cv"])
    assert (r["container"], r["codec"], r["version"], r["width"], r["height"]) == \
        ("m3cv", "m3cvc", "%d.%d" % header.version, 512, 288)
    assert (r["frame_rate"], r["frame_count"], r["duration_s"]) == ("24/1", 72, 3.0)
    assert r["models"] == [{"id": m.model_id, "sha256": m.sha256.hex()} for m in header.models]
    assert r["file_size"] == paths["m3cv"].stat().st_size and r["bitrate_bps"] == round(8 * r["file_size"] / 3)
    assert set(r["layers"]) == set(LAYERS) and r["unit_bytes"] == sum(r["layers"].values())
    assert r["layers"]["tokens"] == sum(len(s.tokens.payload) for s in segments)
    assert r["layers"]["params"] == 4 and r["corrupt_segments"] == 0
    assert [(s["index"], s["first_pts"], s["frame_count"], s["frame_text"], s["clip_text"]) for s in r["segments"]] \
        == [(s.header.index, s.header.first_pts, s.header.frame_count, s.frame_text, s.clip_text) for s in segments]
    assert sum(sum(s["layers"].values()) for s in r["segments"]) + len(U.encode_sequence_header(header)) \
        == r["unit_bytes"]


def test_same_segments_and_layers_in_both_containers(files):
    _, _, paths = files
    a, b = probe(paths["m3cv"]), probe(paths["mkv"])
    assert a["segments"] == b["segments"] and a["layers"] == b["layers"] and a["unit_bytes"] == b["unit_bytes"]
    assert (a["container"], b["container"]) == ("m3cv", "matroska") and a["file_size"] < b["file_size"]


def test_video_bytes_are_one_number(files):
    """probe, the writer (what the encode log, progress and Result report) and ffprobe count the same video bytes."""
    _, segments, paths = files
    packets = [len(U.encode_segment(s)) for s in segments]
    frames = sum(s.header.frame_count for s in segments)
    for ext, want in (("m3cv", sum(packets)), ("mkv", sum(packets) + frames - len(segments))):  # + 1-byte markers
        r = probe(paths[ext])
        assert r["video_bytes"] == want == paths["written"][ext][0], ext
        assert paths["written"][ext][1] == r["file_size"], ext
        assert r["video_bitrate_bps"] == round(8 * want / r["duration_s"])
        assert r["audio_bytes"] == 0
    if shutil.which("ffprobe"):
        done = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=size", "-of",
                               "csv=p=0", str(paths["mkv"])], capture_output=True, text=True, check=True)
        assert sum(int(x) for x in done.stdout.split()) == probe(paths["mkv"])["video_bytes"]
    text = subprocess.run([sys.executable, "-m", "m3cvcav", "probe", str(paths["mkv"])], capture_output=True,
                          text=True).stdout
    assert f"({probe(paths['mkv'])['video_bytes']} bytes)" in text and "overhead" not in text


def test_corrupt_segment_in_report(files, tmp_path):
    _, segments, paths = files
    data = bytearray(paths["m3cv"].read_bytes())
    data[data.index(segments[1].tokens.payload[:16]) + 3] ^= 0xFF
    bad = tmp_path / "bad.m3cv"
    bad.write_bytes(bytes(data))
    r = probe(bad)
    assert r["corrupt_segments"] == 1 and "corrupt" in r["segments"][1] and r["segments"][1]["index"] == 1
    assert r["frame_count"] == 72


def test_cli(files, tmp_path):
    _, _, paths = files
    done = run_cli(str(paths["mkv"]), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == json.loads(json.dumps(probe(paths["mkv"])))
    text = run_cli(str(paths["m3cv"]))
    assert text.returncode == 0 and "512x288" in text.stdout and "segments    2 (0 corrupt)" in text.stdout
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 4)
    for path in (garbage, paths["m3cv"].with_name("missing.m3cv")):
        done = run_cli(str(path))
        assert done.returncode == 1 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith("m3cvcav: ")
    assert run_cli().returncode == 2


def test_video_bytes_agree_everywhere(bbb_stream, tmp_path):
    path, result = bbb_stream
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


def test_probe_json_separates_audio(bbb_stream):
    path, _ = bbb_stream
    done = subprocess.run([sys.executable, "-m", "m3cvcav", "probe", "--json", str(path)], capture_output=True,
                          text=True)
    report = json.loads(done.stdout)
    assert report["audio_bytes"] > 0 and report["video_bytes"] + report["audio_bytes"] < report["file_size"]
