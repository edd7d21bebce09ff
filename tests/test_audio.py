"""Audio through the graphs (filters.audio): the default low-rate Opus of an encode, -c:a/-b:a/-ac/-ar/-an on
encode and decode, cut with the video."""
from __future__ import annotations

import av

import m3cvcav
from helpers import error_line, media_path, run_cli


def _audio(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        packets = [p for p in c.demux(a) if p.size]
        end = max(float((p.pts + p.duration) * p.time_base) for p in packets)
        return a.codec_context.name, a.codec_context.channels, sum(p.size for p in packets), end


def test_default_audio_is_low_rate_opus_cut_with_the_video(bbb_stream):
    path, result = bbb_stream
    codec, channels, size, end = _audio(path)
    assert (codec, channels) == ("opus", 2)  # 5.1 AAC at 385 kbit/s would be 98 % of the file
    assert size * 8 / result.duration < 32000
    assert end <= result.duration + 0.03  # -t cut the audio too


def test_audio_options_on_encode_and_decode(bbb_stream, tmp_path):
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
    path, _ = bbb_stream
    webm = tmp_path / "back.webm"
    assert m3cvcav.decode(path, webm, frames=5, codec="libvpx").frames == 5
    codec, _, _, end = _audio(webm)
    assert codec == "opus" and end <= 5 / 25 + 0.03  # .webm gets Opus, cut with -frames:v
    aac = tmp_path / "back.mp4"
    m3cvcav.decode(path, aac, audio_codec="aac", audio_bitrate="32k", sample_rate=44100, channels=1)
    with av.open(str(aac)) as c:
        a = c.streams.audio[0].codec_context
        assert (a.name, a.sample_rate, a.channels) == ("aac", 44100, 1)
    r = run_cli("-i", str(path), "-c:a", "copy", "-b:a", "32k", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "need an encoder" in error_line(r.stderr)
