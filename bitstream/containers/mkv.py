"""Matroska writer for m3cvc streams (docs/bitstream.md §8), built on the small EBML writer in ``ebml``.

One SimpleBlock per frame (the segment packet in the keyframe block, a 1-byte continuation marker in the others), an
S_TEXT/UTF8 track with the descriptions, audio copied or transcoded to Opus, Cues, SeekHead, Info with Duration, Tags.
Blocks are collected while writing and laid out, interleaved by time, on ``close()``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from m3cvcav import __version__
from m3cvcav.errors import BitstreamError
from m3cvcav.log import get_logger

from ..units import Segment, SequenceHeader, decode_segment, encode_segment, encode_sequence_header
from . import ebml as E
from .base import AtomicOutput, StreamWriter

log = get_logger(__name__)

FOURCC = b"M3CV"
CODEC_ID = "V_MS/VFW/FOURCC"
CONTINUATION = b"\x00"
CLUSTER_MAX_MS = 5000
VIDEO_TRACK = 1
# PyAV/FFmpeg codec name -> (Matroska CodecID, CodecPrivate builder) for audio copied packet for packet.
COPY_CODECS = {
    "aac": ("A_AAC", lambda x: x),
    "opus": ("A_OPUS", lambda x: x),
    "flac": ("A_FLAC", lambda x: x if x[:4] == b"fLaC" else b"fLaC\x80\x00\x00\x22" + x),
    "mp3": ("A_MPEG/L3", lambda x: b""),
    "mp3float": ("A_MPEG/L3", lambda x: b""),
    "ac3": ("A_AC3", lambda x: b""),
}
NEEDS_PRIVATE = ("aac", "opus", "flac")
OPUS_RATE = 48000
OPUS_PRE_ROLL_NS = 80_000_000


def bitmapinfoheader(width: int, height: int) -> bytes:
    """The 40-byte BITMAPINFOHEADER of the video track's CodecPrivate (biCompression = M3CV)."""
    return struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, int.from_bytes(FOURCC, "little"),
                       width * height * 3, 0, 0, 0, 0)


def to_ms(pts: int, time_base: Fraction) -> int:
    return round(pts * time_base * 1000)


@dataclass
class _Block:
    ms: int
    track: int
    data: bytes
    key: bool
    duration_ms: int | None = None  # set for subtitle blocks (written as BlockGroup)


class _AudioTrack:
    """One audio track: copies packets, or decodes and re-encodes them to Opus."""

    def __init__(self, number: int, stream):
        self.number = number
        ctx = stream.codec_context
        # AAC, Opus and FLAC need their codec configuration as CodecPrivate (ADTS AAC without one is re-encoded).
        self.copy = ctx.name in COPY_CODECS and (bool(ctx.extradata) or ctx.name not in NEEDS_PRIVATE)
        self.sample_rate, self.channels = ctx.sample_rate, ctx.channels
        if self.copy:
            self.codec_id, make_private = COPY_CODECS[ctx.name]
            self.private = make_private(bytes(ctx.extradata or b""))
            return
        import av

        log.info("audio codec %s is not carried by Matroska as is: transcoding it to Opus", ctx.name)
        self.decoder = ctx
        self.channels = min(2, max(1, ctx.channels))
        layout = "stereo" if self.channels == 2 else "mono"
        enc = av.CodecContext.create("libopus", "w")
        enc.sample_rate, enc.layout, enc.format = OPUS_RATE, layout, "s16"
        enc.bit_rate = 32000 * self.channels
        enc.time_base = Fraction(1, OPUS_RATE)
        enc.open()
        self.encoder = enc
        self.resampler = av.AudioResampler(format="s16", layout=layout, rate=OPUS_RATE, frame_size=enc.frame_size)
        self.codec_id, self.private, self.sample_rate = "A_OPUS", bytes(enc.extradata or b""), OPUS_RATE
        self._next_pts = None

    def entry(self) -> bytes:
        children = [E.uint(E.TRACK_NUMBER, self.number), E.uint(E.TRACK_UID, 0x4D330000 + self.number),
                    E.uint(E.TRACK_TYPE, E.TRACK_AUDIO), E.uint(E.FLAG_LACING, 0), E.string(E.CODEC_ID, self.codec_id)]
        if self.private:
            children.append(E.element(E.CODEC_PRIVATE, self.private))
        if self.codec_id == "A_OPUS":  # CodecDelay: the OpusHead pre-skip (48 kHz samples at bytes 10..11)
            pre_skip = int.from_bytes(self.private[10:12], "little") if len(self.private) >= 12 else 0
            children += [E.uint(E.CODEC_DELAY, pre_skip * 1_000_000_000 // OPUS_RATE),
                         E.uint(E.SEEK_PRE_ROLL, OPUS_PRE_ROLL_NS)]
        children.append(E.master(E.AUDIO, E.double(E.SAMPLING_FREQUENCY, float(self.sample_rate)),
                                 E.uint(E.CHANNELS, self.channels)))
        return E.master(E.TRACK_ENTRY, *children)

    def blocks(self, packet) -> list[_Block]:
        if self.copy:
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                return []
            ts = packet.pts if packet.pts is not None else packet.dts
            return [_Block(to_ms(ts, packet.time_base), self.number, bytes(packet), True)]
        if packet.size == 0:  # a demuxer's flush packet: the decoder is drained in flush()
            return []
        frames = self.decoder.decode(packet)
        return self._encode([r for f in frames for r in self.resampler.resample(f)])

    def flush(self) -> list[_Block]:
        if self.copy:
            return []
        frames = [r for f in self.decoder.decode(None) for r in self.resampler.resample(f)]
        return self._encode(frames + list(self.resampler.resample(None)), flush=True)

    def _encode(self, frames, flush: bool = False) -> list[_Block]:
        out = []
        for frame in frames:
            if self._next_pts is None:
                self._next_pts = int(frame.pts * frame.time_base * OPUS_RATE) if frame.pts is not None else 0
            frame.pts, frame.time_base = self._next_pts, Fraction(1, OPUS_RATE)
            self._next_pts += frame.samples
            out += self.encoder.encode(frame)
        if flush:
            out += self.encoder.encode(None)
        return [_Block(to_ms(p.pts, p.time_base), self.number, bytes(p), True) for p in out if p.size]


class MkvWriter(StreamWriter):
    container = "matroska"

    def __init__(self, out: AtomicOutput, header: SequenceHeader, tags: dict[str, str] | None):
        super().__init__(out, header, tags)
        self._blocks: list[_Block] = []
        self._subtitles: list[_Block] = []
        self._audio: list[_AudioTrack] = []
        self._by_stream: dict[int, _AudioTrack] = {}
        self._end_ms = 0
        self._frame_ns = round(Fraction(10 ** 9) / header.fps)
        encode_sequence_header(header)  # validates the header now, not at close

    def write_segment(self, segment: Segment) -> None:
        self._write(encode_segment(segment), segment)

    def write_packet(self, packet: bytes) -> None:
        """Append an already-coded segment packet as is (e.g. stitched from chunks; plugin/parallel.py); it is parsed
        for its timestamps and descriptions, never re-encoded."""
        self._write(packet, decode_segment(packet))

    def _write(self, packet: bytes, segment: Segment) -> None:
        times = [to_ms(p, self.header.time_base) for p in segment.pts(self.header)]
        for i, ms in enumerate(times):
            self._blocks.append(_Block(ms, VIDEO_TRACK, packet if i == 0 else CONTINUATION, i == 0))
        end = times[-1] + round(Fraction(self._frame_ns, 10 ** 6))
        self._end_ms = max(self._end_ms, end)
        text = "\n".join(t for t in (segment.frame_text, segment.clip_text) if t)
        if text:
            self._subtitles.append(_Block(times[0], 0, text.encode("utf-8"), True, max(1, end - times[0])))

    def add_audio(self, stream) -> int:
        track = _AudioTrack(VIDEO_TRACK + 1 + len(self._audio), stream)
        self._audio.append(track)
        self._by_stream[stream.index] = track
        return track.number

    def write_audio(self, packet) -> None:
        track = self._by_stream.get(packet.stream.index) if packet.stream is not None else None
        if track is None:
            raise BitstreamError("write_audio got a packet of a stream that was not added with add_audio; "
                                 "call add_audio(stream) first")
        self._add_audio_blocks(track.blocks(packet))

    def _add_audio_blocks(self, blocks: list[_Block]) -> None:
        self._blocks += blocks
        for b in blocks:
            self._end_ms = max(self._end_ms, b.ms)

    # -- layout ----------------------------------------------------------------------------------------------------
    def _tracks(self, subtitle_track: int | None) -> bytes:
        h = self.header
        c = h.color
        video = E.master(
            E.TRACK_ENTRY, E.uint(E.TRACK_NUMBER, VIDEO_TRACK), E.uint(E.TRACK_UID, 0x4D330000 + VIDEO_TRACK),
            E.uint(E.TRACK_TYPE, E.TRACK_VIDEO), E.uint(E.FLAG_LACING, 0), E.string(E.CODEC_ID, CODEC_ID),
            E.element(E.CODEC_PRIVATE, bitmapinfoheader(h.width, h.height) + encode_sequence_header(h)),
            E.uint(E.DEFAULT_DURATION, self._frame_ns),
            E.master(E.VIDEO, E.uint(E.PIXEL_WIDTH, h.width), E.uint(E.PIXEL_HEIGHT, h.height),
                     E.master(E.COLOUR, E.uint(E.MATRIX_COEFFICIENTS, c.matrix),
                              E.uint(E.RANGE, 2 if c.full_range else 1),
                              E.uint(E.TRANSFER_CHARACTERISTICS, c.transfer), E.uint(E.PRIMARIES, c.primaries))))
        entries = [video] + [a.entry() for a in self._audio]
        if subtitle_track is not None:
            entries.append(E.master(
                E.TRACK_ENTRY, E.uint(E.TRACK_NUMBER, subtitle_track), E.uint(E.TRACK_UID, 0x4D330000 + subtitle_track),
                E.uint(E.TRACK_TYPE, E.TRACK_SUBTITLE), E.uint(E.FLAG_LACING, 0), E.string(E.CODEC_ID, "S_TEXT/UTF8"),
                E.string(E.NAME, "m3cvc descriptions"), E.string(E.LANGUAGE, "eng")))
        return E.master(E.TRACKS, *entries)

    def _tags(self) -> bytes:
        tags = {"ENCODER": f"m3cvcav {__version__}", "M3CV_PROFILE_ID": str(self.header.profile_id),
                "M3CV_MODELS": ",".join(str(m.model_id) for m in self.header.models)}
        tags.update(self.tags)
        simple = [E.master(E.SIMPLE_TAG, E.string(E.TAG_NAME, k), E.string(E.TAG_STRING, v)) for k, v in tags.items()]
        return E.master(E.TAGS, E.master(E.TAG, E.master(E.TARGETS, E.uint(E.TARGET_TYPE_VALUE, 50)), *simple))

    def _clusters(self, blocks: list[_Block], base: int) -> tuple[list[bytes], list[tuple[int, int]]]:
        """Clusters (each starting at a video keyframe or after CLUSTER_MAX_MS) and the (ms, position) cue points."""
        clusters: list[bytes] = []
        cues: list[tuple[int, int]] = []
        current: list[bytes] = []
        start = 0
        pos = base

        def close() -> None:
            nonlocal pos
            if current:
                clusters.append(E.master(E.CLUSTER, E.uint(E.TIMESTAMP, start), *current))
                pos += len(clusters[-1])

        for b in blocks:
            video_key = b.track == VIDEO_TRACK and b.key
            if not current or video_key or b.ms - start > CLUSTER_MAX_MS:
                close()
                current, start = [], max(0, b.ms)
                if video_key:
                    cues.append((b.ms, pos))
            flags = 0x80 if b.key else 0
            if b.duration_ms is None:
                current.append(E.element(E.SIMPLE_BLOCK, E.block_payload(b.track, b.ms - start, flags, b.data)))
            else:
                current.append(E.master(E.BLOCK_GROUP, E.element(E.BLOCK, E.block_payload(b.track, b.ms - start, 0,
                                                                                             b.data)),
                                        E.uint(E.BLOCK_DURATION, b.duration_ms)))
        close()
        return clusters, cues

    def _finish(self) -> None:
        for track in self._audio:
            self._add_audio_blocks(track.flush())
        subtitle_track = VIDEO_TRACK + 1 + len(self._audio) if self._subtitles else None
        for s in self._subtitles:
            s.track = subtitle_track
        order = {VIDEO_TRACK: 0}
        blocks = sorted(self._blocks + self._subtitles, key=lambda b: (b.ms, order.get(b.track, 1 + (b.duration_ms
                                                                                                    is not None))))
        info = E.master(E.INFO, E.uint(E.TIMESTAMP_SCALE, 1_000_000), E.string(E.MUXING_APP, f"m3cvcav {__version__}"),
                        E.string(E.WRITING_APP, f"m3cvcav {__version__}"), E.double(E.DURATION, float(self._end_ms)))
        tracks, tags = self._tracks(subtitle_track), self._tags()

        def seek_head(positions: list[tuple[int, int]]) -> bytes:
            return E.master(E.SEEK_HEAD, *(E.master(E.SEEK, E.element(E.SEEK_ID, E.encode_id(i)),
                                                    E.uint(E.SEEK_POSITION, p, width=8)) for i, p in positions))

        head_size = len(seek_head([(E.INFO, 0), (E.TRACKS, 0), (E.TAGS, 0), (E.CUES, 0)]))
        info_pos = head_size
        tracks_pos = info_pos + len(info)
        tags_pos = tracks_pos + len(tracks)
        clusters, cue_points = self._clusters(blocks, tags_pos + len(tags))
        cues_pos = tags_pos + len(tags) + sum(len(c) for c in clusters)
        cues = E.master(E.CUES, *(E.master(E.CUE_POINT, E.uint(E.CUE_TIME, ms), E.master(
            E.CUE_TRACK_POSITIONS, E.uint(E.CUE_TRACK, VIDEO_TRACK), E.uint(E.CUE_CLUSTER_POSITION, pos)))
            for ms, pos in cue_points))
        head = seek_head([(E.INFO, info_pos), (E.TRACKS, tracks_pos), (E.TAGS, tags_pos), (E.CUES, cues_pos)])
        body_size = cues_pos + len(cues)
        f = self.out.file
        f.write(E.ebml_header() + E.encode_id(E.SEGMENT) + E.encode_size(body_size, 8))
        for part in (head, info, tracks, tags, *clusters, cues):
            f.write(part)
