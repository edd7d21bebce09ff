"""Matroska writer for m3cvc streams (docs/bitstream.md §8), built on the small EBML writer in ``ebml``.

One SimpleBlock per frame (the segment packet in the keyframe block, a 1-byte continuation marker in the others), an
S_TEXT/UTF8 track with the descriptions, audio tracks of the packets it is given (a muxer, as libavformat's: the
graph decides whether the input's audio is copied or encoded, ``filters.audio``), Tags.
Streamed like FFmpeg's matroskaenc: the header goes out with the first data, and each cluster as soon as the audio up
to its end has arrived (at most one segment behind), so a pipe receives the stream as it is made and a crash keeps
every finished cluster. When the output is seekable, ``close()`` appends Cues and patches the Segment size, the
SeekHead and Info's Duration (reserved at the start); a pipe gets an unknown-size Segment without them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from m3cvcav.core import __version__
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.core.log import get_logger

from ..units import Segment, SequenceHeader, decode_segment, encode_sequence_header
from . import ebml as E
from . import tags as T
from .base import AtomicOutput, StreamWriter

log = get_logger(__name__)

FOURCC = b"M3CV"
CODEC_ID = "V_MS/VFW/FOURCC"
CONTINUATION = b"\x00"
CLUSTER_MAX_MS = 5000
VIDEO_TRACK = 1
# FFmpeg codec (its canonical name) -> (Matroska CodecID, CodecPrivate from the codec's extradata): the audio Matroska carries here.
AUDIO_CODECS = {
    "aac": ("A_AAC", lambda x: x),
    "opus": ("A_OPUS", lambda x: x),
    "flac": ("A_FLAC", lambda x: x if x[:4] == b"fLaC" else b"fLaC\x80\x00\x00\x22" + x),
    "mp3": ("A_MPEG/L3", lambda x: b""),
    "ac3": ("A_AC3", lambda x: b""),
}
NEEDS_PRIVATE = ("aac", "opus", "flac")  # their CodecPrivate is the codec configuration (ADTS AAC has none)
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
    """One audio track: the codec's CodecID, CodecPrivate, rate and channels, and its packets as blocks."""

    def __init__(self, number: int, codec):
        self.number = number
        self.codec_id, make_private = AUDIO_CODECS[codec.codec.canonical_name]
        self.private = make_private(bytes(codec.extradata or b""))
        self.sample_rate, self.channels = codec.sample_rate, codec.channels

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

    def block(self, packet) -> _Block | None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if packet.size == 0 or ts is None:  # a demuxer's flush packet, or nothing to place it by
            return None
        return _Block(to_ms(ts, packet.time_base), self.number, bytes(packet), True)


class MkvWriter(StreamWriter):
    container = "matroska"

    def __init__(self, out: AtomicOutput, header: SequenceHeader, tags: dict[str, str] | None):
        super().__init__(out, header, tags)
        self._pending: list[_Block] = []  # blocks not yet in a cluster (audio may still come before them)
        self._audio: list[_AudioTrack] = []
        self._end_ms = 0
        self._frame_ns = round(Fraction(10 ** 9) / header.fps)
        self._subtitle_track = 0
        self._base = -1  # file position of the Segment's data (positions in SeekHead and Cues are relative to it)
        self._patch: dict[str, int] = {}  # file positions of what close() patches when the output is seekable
        self._cues: list[tuple[int, int]] = []
        encode_sequence_header(header)  # validates the header now, not at close

    # -- data ------------------------------------------------------------------------------------------------------
    def write_packet(self, packet: bytes, segment: Segment | None = None) -> None:
        """The packet as one block, a 1-byte block for each further frame, and the texts as a subtitle."""
        if segment is None:
            segment = decode_segment(packet)  # read for its timestamps and texts, never re-encoded
        times = [to_ms(p, self.header.time_base) for p in segment.pts(self.header)]
        blocks = [_Block(ms, VIDEO_TRACK, packet if i == 0 else CONTINUATION, i == 0) for i, ms in enumerate(times)]
        self.video_bytes += len(packet) + (len(times) - 1) * len(CONTINUATION)
        end = times[-1] + round(Fraction(self._frame_ns, 10 ** 6))
        self._end_ms = max(self._end_ms, end)
        text = "\n".join(t for t in (segment.frame_text, segment.clip_text) if t)
        if text:
            blocks.append(_Block(times[0], -1, text.encode("utf-8"), True, max(1, end - times[0])))
        # Audio already received up to this segment's start completes the clusters before it.
        self._write_clusters([b for b in self._pending if b.ms < times[0]] if self._audio else self._pending)
        self._pending = ([b for b in self._pending if b.ms >= times[0]] if self._audio else []) + blocks
        if not self._audio:
            self._write_clusters(self._pending)
            self._pending = []

    carries_audio = True

    @staticmethod
    def takes_audio(codec: str, config: bytes | None = None) -> bool:
        """Whether Matroska here carries packets of ``codec`` (FFmpeg's canonical name: aac, opus, ...) with the codec
        configuration ``config`` (extradata; None: not known yet, an encoder makes it)."""
        return codec in AUDIO_CODECS and (config is None or bool(config) or codec not in NEEDS_PRIVATE)

    def add_audio(self, codec) -> int:
        """Add an audio track for packets of ``codec`` (a PyAV codec context, opened: its codec, ``extradata``,
        ``sample_rate``, ``channels``; libavformat's stream codec parameters) before the first segment; its number."""
        if self._base >= 0:
            raise BitstreamError("add_audio after the first segment: add every audio track before writing video")
        name = codec.codec.canonical_name
        if not self.takes_audio(name, bytes(codec.extradata or b"")):
            raise UsageError(f"Matroska here carries {', '.join(sorted(AUDIO_CODECS))} audio with its codec "
                             f"configuration, not this {name}: encode it (-c:a libopus)")
        track = _AudioTrack(VIDEO_TRACK + 1 + len(self._audio), codec)
        self._audio.append(track)
        return track.number

    def write_audio(self, packet, track: int) -> None:
        """One packet of audio ``track`` (``add_audio``'s number), its time from ``pts`` (else ``dts``) in
        ``time_base``."""
        found = next((t for t in self._audio if t.number == track), None)
        if found is None:
            raise BitstreamError(f"write_audio: no audio track {track}; add it with add_audio(codec) first")
        block = found.block(packet)
        if block is not None:
            self._add_audio_blocks([block])

    def _add_audio_blocks(self, blocks: list[_Block]) -> None:
        self._pending += blocks
        for b in blocks:
            self._end_ms = max(self._end_ms, b.ms)

    # -- layout ----------------------------------------------------------------------------------------------------
    def _tracks(self) -> bytes:
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
        n = self._subtitle_track
        subtitles = E.master(
            E.TRACK_ENTRY, E.uint(E.TRACK_NUMBER, n), E.uint(E.TRACK_UID, 0x4D330000 + n),
            E.uint(E.TRACK_TYPE, E.TRACK_SUBTITLE), E.uint(E.FLAG_LACING, 0), E.string(E.CODEC_ID, "S_TEXT/UTF8"),
            E.string(E.NAME, "m3cvc descriptions"), E.string(E.LANGUAGE, "eng"))
        return E.master(E.TRACKS, video, *(a.entry() for a in self._audio), subtitles)

    def _tags(self) -> bytes:
        tags = {T.ENCODER: f"m3cvcav {__version__}", T.PROFILE_ID: str(self.header.profile_id),
                T.MODELS: ",".join(str(m.model_id) for m in self.header.models)}
        tags.update(self.tags)
        tags[T.ENCODER] = f"m3cvcav {__version__}"  # always this m3cvcav, whatever the caller's tags say
        simple = [E.master(E.SIMPLE_TAG, E.string(E.TAG_NAME, k), E.string(E.TAG_STRING, v)) for k, v in tags.items()]
        return E.master(E.TAGS, E.master(E.TAG, E.master(E.TARGETS, E.uint(E.TARGET_TYPE_VALUE, 50)), *simple))

    @staticmethod
    def _seek_head(positions: list[tuple[int, int]]) -> bytes:
        return E.master(E.SEEK_HEAD, *(E.master(E.SEEK, E.element(E.SEEK_ID, E.encode_id(i)),
                                                E.uint(E.SEEK_POSITION, p, width=8)) for i, p in positions))

    def _position(self) -> int:
        return self._start + self.out.written

    def _write_header(self) -> None:
        """EBML header, Segment (unknown size), SeekHead (+ room for Cues), Info, Tracks, Tags."""
        self._start = self.out.file.tell() if self.out.seekable else 0
        self._subtitle_track = VIDEO_TRACK + 1 + len(self._audio)
        self.out.write(E.ebml_header() + E.encode_id(E.SEGMENT))
        self._patch["size"] = self._position()
        self.out.write(E.UNKNOWN_SIZE)
        self._base = self._position()
        info_children = [E.uint(E.TIMESTAMP_SCALE, 1_000_000), E.string(E.MUXING_APP, f"m3cvcav {__version__}"),
                         E.string(E.WRITING_APP, f"m3cvcav {__version__}")]
        duration = E.double(E.DURATION, 0.0)
        if self.out.seekable:  # patched on close; a pipe's stream has no known duration
            info_children.append(duration)
        info, tracks, tags = E.master(E.INFO, *info_children), self._tracks(), self._tags()
        room = len(self._seek_head([(E.INFO, 0), (E.TRACKS, 0), (E.TAGS, 0), (E.CUES, 0)]))
        info_pos = room
        self._known = [(E.INFO, info_pos), (E.TRACKS, info_pos + len(info)),
                       (E.TAGS, info_pos + len(info) + len(tracks))]
        head = self._seek_head(self._known)
        self._patch["seek_head"] = self._position()
        self.out.write(head + E.void(room - len(head)))
        if self.out.seekable:
            self._patch["duration"] = self._position() + len(info) - len(duration) + 3  # the double after id + size
        self.out.write(info + tracks + tags)

    def _write_clusters(self, blocks: list[_Block]) -> None:
        """Write ``blocks`` (sorted by time) as clusters, each starting at a video keyframe or after CLUSTER_MAX_MS."""
        if self._base < 0:
            self._write_header()
        if not blocks:
            return
        order = {VIDEO_TRACK: 0}
        blocks = sorted(blocks, key=lambda b: (b.ms, order.get(b.track, 1 + (b.duration_ms is not None))))
        current: list[bytes] = []
        start = 0

        def close() -> None:
            if current:
                self.out.write(E.master(E.CLUSTER, E.uint(E.TIMESTAMP, start), *current))

        for b in blocks:
            video_key = b.track == VIDEO_TRACK and b.key
            if not current or video_key or b.ms - start > CLUSTER_MAX_MS:
                close()
                current, start = [], max(0, b.ms)
                if video_key:
                    self._cues.append((b.ms, self._position() - self._base))
            track = self._subtitle_track if b.track == -1 else b.track
            if b.duration_ms is None:
                current.append(E.element(E.SIMPLE_BLOCK, E.block_payload(track, b.ms - start, 0x80 if b.key else 0,
                                                                          b.data)))
            else:
                current.append(E.master(E.BLOCK_GROUP, E.element(E.BLOCK, E.block_payload(track, b.ms - start, 0,
                                                                                             b.data)),
                                        E.uint(E.BLOCK_DURATION, b.duration_ms)))
        close()
        self.out.file.flush()  # a pipe (or a crash) gets every finished cluster

    def _finish(self) -> None:
        self._write_clusters(self._pending)
        self._pending = []
        if not self.out.seekable:
            return
        cues_pos = self._position() - self._base
        if self._cues:
            self.out.write(E.master(E.CUES, *(E.master(E.CUE_POINT, E.uint(E.CUE_TIME, ms), E.master(
                E.CUE_TRACK_POSITIONS, E.uint(E.CUE_TRACK, VIDEO_TRACK), E.uint(E.CUE_CLUSTER_POSITION, pos)))
                for ms, pos in self._cues)))
        end = self._position()
        f = self.out.file
        f.seek(self._patch["size"])
        f.write(E.encode_size(end - self._base, 8))
        f.seek(self._patch["seek_head"])
        f.write(self._seek_head(self._known + ([(E.CUES, cues_pos)] if self._cues else [])))
        f.seek(self._patch["duration"])
        f.write(struct.pack(">d", float(self._end_ms)))
        f.seek(end)
