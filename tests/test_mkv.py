"""Matroska: the EBML writer, the file structure, PyAV reading, audio tracks (the writer takes packets; the encoder's
mux copies or encodes them, ``filters.audio``), and real tools (ffprobe, mkvmerge, ffmpeg -c copy) reading and
remuxing what we write."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import ebml as E
from m3cvcav.bitstream.containers import PipeSink, open_reader, open_writer
from m3cvcav.bitstream.containers.mkv import bitmapinfoheader
from m3cvcav.bitstream.probe import probe
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.filters.audio import AudioOptions
from m3cvcav.filters.mux import Mux
from streams import sequence_header, synthetic_segments

FPS = 24


def parse(data: bytes, pos: int = 0, end: int | None = None) -> list[tuple[int, int, bytes]]:
    """(id, offset, data) of the EBML elements in data[pos:end] (test-side reader, independent of the writer)."""
    end = len(data) if end is None else end
    out = []
    while pos < end:
        start = pos
        width = 1 + (8 - data[pos].bit_length())
        eid = int.from_bytes(data[pos:pos + width], "big")
        pos += width
        width = 1 + (8 - data[pos].bit_length())
        size = int.from_bytes(data[pos:pos + width], "big") & ((1 << (7 * width)) - 1)
        pos += width
        out.append((eid, start, data[pos:pos + size]))
        pos += size
    return out


def children(data: bytes) -> dict[int, list[bytes]]:
    d: dict[int, list[bytes]] = {}
    for eid, _, body in parse(data):
        d.setdefault(eid, []).append(body)
    return d


@pytest.fixture(scope="module")
def stream():
    return sequence_header(1), synthetic_segments(seconds=4, segment_frames=30)


@pytest.fixture(scope="module")
def pcm_wav(tmp_path_factory):
    """2 s of a stereo 44.1 kHz sine as PCM (a codec Matroska does not take as is here: it is transcoded to Opus)."""
    path = tmp_path_factory.mktemp("pcm") / "tone.wav"
    with av.open(str(path), "w") as out:
        st = out.add_stream("pcm_s16le", rate=44100, layout="stereo")
        t = np.arange(88200)
        pcm = (np.sin(t * 2 * np.pi * 440 / 44100) * 8000).astype(np.int16)
        for i in range(0, t.size, 1024):
            chunk = np.repeat(pcm[i:i + 1024], 2).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 44100, i
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path


def write_mkv(path, header, segments, audio=None, seconds=None, tags=None, options=None):
    """``segments`` into a Matroska file; with ``audio``, its first ``seconds`` through the encoder's mux, which copies
    or encodes them as ``options`` say (default: Opus 24 kbit/s) and gives the writer packets."""
    if audio is None:
        with open_writer(path, header, tags=tags) as w:
            for s in segments:
                w.write_segment(s)
        return
    with av.open(str(audio)) as src:
        stream = src.streams.audio[0]
        mux = Mux(path, tags=tags, audio_stream=stream, audio_options=options)
        mux.configure(header)
        for packet in src.demux(stream):
            if packet.pts is None:
                continue
            if seconds is not None and packet.pts * packet.time_base >= seconds:
                break
            mux.add_audio(packet)
        mux.release(float("inf"))  # all of it due: the writer interleaves it with the segments
        for s in segments:
            mux.write_packet(U.encode_segment(s), s)
        mux.close()


def test_the_writer_takes_audio_packets_and_never_encodes(tmp_path, stream, pcm_wav):
    """A muxer, as libavformat's: a track from a codec's parameters, its packets as they are; what Matroska does not
    carry (PCM here) is refused with a line that says to encode it."""
    header, segments = stream
    with av.open(str(pcm_wav)) as src, open_writer(tmp_path / "pcm.mkv", header) as w:
        assert not w.takes_audio("pcm_s16le") and w.takes_audio("opus") and not w.takes_audio("aac", b"")
        with pytest.raises(UsageError, match="encode it"):
            w.add_audio(src.streams.audio[0].codec_context)
        w.write_segment(segments[0])
    assert not hasattr(w, "converter") and not hasattr(open_writer, "transcode")


def test_ebml_primitives():
    assert E.encode_size(0) == b"\x80" and E.encode_size(126) == b"\xfe" and E.encode_size(127) == b"\x40\x7f"
    assert E.encode_size(5, 8) == b"\x01" + bytes(6) + b"\x05"
    with pytest.raises(ValueError):
        E.encode_size(127, 1)
    assert E.encode_id(E.EBML) == b"\x1a\x45\xdf\xa3" and E.encode_id(E.SIMPLE_BLOCK) == b"\xa3"
    assert E.uint(E.TRACK_NUMBER, 0) == b"\xd7\x81\x00" and E.uint(E.TIMESTAMP, 300) == b"\xe7\x82\x01\x2c"
    assert E.uint(E.SEEK_POSITION, 1, width=8) == b"\x53\xac\x88" + bytes(7) + b"\x01"
    assert E.block_payload(1, -2, 0x80, b"x") == b"\x81\xff\xfe\x80x"
    with pytest.raises(ValueError):
        E.block_payload(1, 40000, 0, b"")
    assert E.double(E.DURATION, 1.5) == b"\x44\x89\x88" + struct.pack(">d", 1.5)


def test_structure(tmp_path, stream):
    header, segments = stream
    path = tmp_path / "s.mkv"
    write_mkv(path, header, segments, tags={"M3CV_BACKEND": "torch"})
    data = path.read_bytes()
    top = parse(data)
    assert [t[0] for t in top] == [E.EBML, E.SEGMENT]
    assert children(top[0][2])[E.DOC_TYPE] == [b"matroska"]
    seg_body = top[1][2]
    seg_start = data.index(seg_body)
    elements = parse(data, seg_start, seg_start + len(seg_body))
    ids = [e[0] for e in elements]
    assert ids[:4] == [E.SEEK_HEAD, E.INFO, E.TRACKS, E.TAGS] and ids[-1] == E.CUES
    for seek in children(elements[0][2])[E.SEEK]:  # SeekHead points at the elements it names
        c = children(seek)
        target = seg_start + int.from_bytes(c[E.SEEK_POSITION][0], "big")
        assert data[target:target + len(c[E.SEEK_ID][0])] == c[E.SEEK_ID][0]
    track = children(children(elements[2][2])[E.TRACK_ENTRY][0])
    assert track[E.CODEC_ID] == [b"V_MS/VFW/FOURCC"]
    private = track[E.CODEC_PRIVATE][0]
    assert private[:40] == bitmapinfoheader(512, 288) and private[16:20] == b"M3CV"
    assert struct.unpack_from("<ii", private, 4) == (512, 288)
    assert U.decode_sequence_header(private[40:])[0] == header
    assert int.from_bytes(track[E.DEFAULT_DURATION][0], "big") == 41666667
    clusters = [e for e in elements if e[0] == E.CLUSTER]
    blocks = [b for c in clusters for b in children(c[2]).get(E.SIMPLE_BLOCK, [])]
    video = [b for b in blocks if b[0] == 0x81]
    assert len(video) == sum(s.header.frame_count for s in segments) == 96
    keys = [b[4:] for b in video if b[3] & 0x80]
    assert keys == [U.encode_segment(s) for s in segments]
    assert all(b[4:] == b"\x00" for b in video if not b[3] & 0x80)
    cues = children(elements[-1][2])[E.CUE_POINT]
    cue_positions = [int.from_bytes(children(children(c)[E.CUE_TRACK_POSITIONS][0])[E.CUE_CLUSTER_POSITION][0], "big")
                     for c in cues]
    assert [seg_start + p for p in cue_positions] == [c[1] for c in clusters][:len(cues)]
    assert len(cues) == len(segments)
    duration = struct.unpack(">d", children(elements[1][2])[E.DURATION][0])[0]
    assert duration == 4000.0


def test_vfr_block_times(tmp_path):
    header = U.SequenceHeader(64, 64, Fraction(24), Fraction(1, 24))
    segments = [U.Segment(U.SegmentHeader(0, 0, 3), frame_text="a", frame_pts=[0, 1, 5]),
                U.Segment(U.SegmentHeader(1, 6, 2))]
    path = tmp_path / "vfr.mkv"
    write_mkv(path, header, segments)
    with av.open(str(path)) as c:
        times = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert times == [0, 42, 208, 250, 292]
    with open_reader(path) as r:
        assert list(r.segments()) == segments


def test_reader_roundtrip(tmp_path, stream):
    header, segments = stream
    path = tmp_path / "r.mkv"
    write_mkv(path, header, segments, tags={"M3CV_BACKEND": "onnxruntime"})
    with open_reader(path) as r:
        assert r.container == "matroska" and r.header == header and not r.has_audio
        assert list(r.segments()) == segments
        assert r.tags["M3CV_BACKEND"] == "onnxruntime" and r.tags["M3CV_MODELS"] == "1"
    with open(path, "rb") as f, open_reader(f) as r:  # a binary stream instead of a path
        assert list(r.segments()) == segments


def test_not_m3cvc_matroska(tmp_path):
    path = tmp_path / "plain.mkv"
    with av.open(str(path), "w") as out:
        st = out.add_stream("ffv1", rate=FPS)
        st.width = st.height = 16
        st.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for p in st.encode(frame):
            out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    with pytest.raises(BitstreamError, match="no m3cvc video track"):
        open_reader(path)


def test_audio_copy_keeps_packets(tmp_path, stream, media):
    header, segments = stream
    clip = media("clips/bigbuckbunny.mp4")
    path = tmp_path / "aac.mkv"
    write_mkv(path, header, segments, audio=clip, seconds=4, options=AudioOptions("copy"))
    with av.open(str(clip)) as src:
        a = src.streams.audio[0]
        want = [bytes(p) for p in src.demux(a) if p.size and p.pts * p.time_base < 4]
    with av.open(str(path)) as mkv:
        assert mkv.streams.audio[0].codec_context.name == "aac"
        got = [bytes(p) for p in mkv.demux(mkv.streams.audio[0]) if p.size]
    assert got == want
    with open_reader(path) as r:
        assert r.has_audio and list(r.segments()) == segments


def test_audio_transcode_to_opus(tmp_path, stream, pcm_wav):
    header, segments = stream
    path = tmp_path / "opus.mkv"
    write_mkv(path, header, segments, audio=pcm_wav)
    with av.open(str(path)) as mkv:
        a = mkv.streams.audio[0]
        assert a.codec_context.name == "opus" and a.codec_context.sample_rate == 48000
        samples = sum(f.samples for f in mkv.decode(a))
    assert abs(samples - 2 * 48000) < 2 * 960 + 312  # 2 s of audio, give or take the last frame and pre-skip


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg is needed to cut an ADTS AAC file")
def test_adts_aac_without_config_is_transcoded(tmp_path, stream, media):
    header, segments = stream
    adts = tmp_path / "a.aac"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media("clips/bigbuckbunny.mp4")), "-vn", "-c:a", "copy",
                    "-t", "1", str(adts)], check=True)
    path = tmp_path / "adts.mkv"
    write_mkv(path, header, segments, audio=adts)
    with av.open(str(path)) as mkv:
        assert mkv.streams.audio[0].codec_context.name == "opus"
        assert sum(f.samples for f in mkv.decode(mkv.streams.audio[0])) > 40000


needs_tools = pytest.mark.skipif(not (shutil.which("ffprobe") and shutil.which("ffmpeg") and shutil.which("mkvmerge")),
                                 reason="ffprobe, ffmpeg and mkvmerge are needed (apt install ffmpeg mkvtoolnix)")


@needs_tools
def test_real_tools_read_and_remux(tmp_path, stream, media, pcm_wav):
    header, segments = stream
    for audio, codec in ((media("clips/bigbuckbunny.mp4"), "aac"), (pcm_wav, "opus")):
        path = tmp_path / f"{codec}.mkv"
        write_mkv(path, header, segments, audio=audio, seconds=4,
                  options=AudioOptions("copy") if codec == "aac" else None)
        info = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
            capture_output=True, text=True, check=True).stdout)
        v, a, s = info["streams"]
        assert (v["codec_type"], v["codec_tag_string"], v["width"], v["height"], v["r_frame_rate"]) == \
            ("video", "M3CV", 512, 288, "24/1")
        assert (a["codec_type"], a["codec_name"]) == ("audio", codec)
        assert (s["codec_type"], s["codec_name"]) == ("subtitle", "subrip")
        assert abs(float(info["format"]["duration"]) - 4.0) < 0.05
        ident = json.loads(subprocess.run(["mkvmerge", "-J", str(path)], capture_output=True, text=True).stdout)
        assert ident["container"]["recognized"] and not ident["errors"]
        assert [t["type"] for t in ident["tracks"]] == ["video", "audio", "subtitles"]
        original = probe(path)
        remuxed = {"mkvmerge": tmp_path / f"{codec}_mkvmerge.mkv", "ffmpeg": tmp_path / f"{codec}_ffmpeg.mkv"}
        subprocess.run(["mkvmerge", "-q", "-o", str(remuxed["mkvmerge"]), str(path)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-map", "0", "-c", "copy",
                        str(remuxed["ffmpeg"])], check=True)
        for tool, out in remuxed.items():
            with open_reader(out) as r:
                assert list(r.segments()) == segments, tool
            again = probe(out)
            assert again["segments"] == original["segments"] and again["layers"] == original["layers"], tool
            assert again["frame_count"] == original["frame_count"] == 96, tool
    subs = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "s", "-show_packets", "-show_data", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)["packets"]
    assert [(p["pts_time"], p["duration_time"]) for p in subs] == [
        (f"{s.header.first_pts / FPS:.6f}", f"{s.header.frame_count / FPS:.6f}") for s in segments]


def test_streams_clusters_to_a_pipe(tmp_path, stream):
    header, segments = stream
    pipe = PipeSink()
    w = open_writer(pipe, header, container="mkv")
    sizes = []
    for s in segments:
        w.write_segment(s)
        sizes.append(len(pipe.data))
    # Each segment's cluster is on the pipe before the next segment is written (no audio to wait for).
    assert sizes == sorted(set(sizes)) and all(U.encode_segment(s) in bytes(pipe.data[:n])
                                               for s, n in zip(segments, sizes))
    w.close()
    assert bytes(pipe.data[4 + len(E.ebml_header()):][:8]) == E.UNKNOWN_SIZE  # a pipe: Segment of unknown size
    path = tmp_path / "piped.mkv"
    path.write_bytes(bytes(pipe.data))
    with open_reader(path) as r:
        assert list(r.segments()) == segments
    with av.open(str(path)) as c:  # FFmpeg reads it too
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == 96


def test_a_crash_keeps_the_finished_clusters(tmp_path, stream):
    header, segments = stream
    w = open_writer(tmp_path / "crash.mkv", header)
    for s in segments[:2]:
        w.write_segment(s)
    partial = tmp_path / "copy.mkv"
    partial.write_bytes(w.out.tmp.read_bytes())  # what a killed process leaves in its temporary file
    w.abort()
    assert not list(tmp_path.glob(".*.part*")) and not (tmp_path / "crash.mkv").exists()
    with open_reader(partial) as r:
        assert list(r.segments()) == segments[:2]


def test_audio_options_encode(tmp_path, stream, media):
    header, segments = stream
    clip = media("clips/bigbuckbunny.mp4")
    for options, codec, channels, rate in ((None, "opus", 2, 48000), (AudioOptions("aac", 48000, 1, 44100), "aac", 1,
                                                                     44100)):
        path = tmp_path / f"{codec}.mkv"
        write_mkv(path, header, segments, audio=clip, seconds=4, options=options)
        with av.open(str(path)) as mkv:
            a = mkv.streams.audio[0]
            assert (a.codec_context.name, a.codec_context.channels, a.codec_context.sample_rate) == \
                (codec, channels, rate)
            packets = [p for p in mkv.demux(a) if p.size]
            size = sum(p.size for p in packets)
            samples = sum(f.samples for p in packets for f in p.decode())
        assert abs(samples / rate - 4) < 0.1
        target = 24000 if options is None else 48000
        assert size * 8 / 4 < 1.3 * target  # the rate asked for (default: Opus 24 kbit/s), not the source's 385k


@pytest.mark.parametrize("kwargs, message", [(dict(codec="nosuch"), "no encoder of that name"),
                                             (dict(codec="libx264"), "video encoder"),
                                             (dict(codec="copy", bitrate=32000), "need an encoder"),
                                             (dict(channels=0), "-ac 0")])
def test_bad_audio_options(kwargs, message):
    from m3cvcav.core.errors import UsageError

    with pytest.raises(UsageError, match=message):
        AudioOptions(**kwargs)
