"""mux: the encoder graph's sink. Segment packets, serialised once by ``base`` (or stitched from chunks), go into
an m3cvc stream (.mkv or .m3cv, ``bitstream.containers``) through an atomic output renamed on ``close``, with the
input's audio interleaved: audio demuxed ahead of the video waits until the video reaches it, and stops where the
video ends (-t, -frames:v). Whether that audio is copied or encoded (Opus 24 kbit/s by default) is decided here, by
``filters.audio``; the container takes packets."""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

import av

from m3cvcav.bitstream.containers import StreamWriter, check_container, frame_overhead, open_writer
from m3cvcav.bitstream.containers.tags import BACKEND, PROFILE
from m3cvcav.bitstream.units import Segment, SequenceHeader
from m3cvcav.core.atomic import output_errors

from .audio import DEFAULT_CODEC, AudioOptions, AudioTrack, choose
from .items import ClipSegment
from .node import Node


def stream_tags(profile_name: str, backends: str = "", tags: dict[str, str] | None = None) -> dict[str, str]:
    """The container tags of a stream: the profile's name, the backends the engines ran on, then the caller's (the
    writer adds ENCODER, the profile id and the models)."""
    return {PROFILE: profile_name, **({BACKEND: backends} if backends else {}), **(tags or {})}


class Mux(Node):
    """Writes ``ClipSegment.packet``s (``process``) or raw packets (``write_packet``) after the sequence header given
    to ``configure``; the container opens at the first packet, tagged with ``profile_name``, the engines' ``backends()``
    as they ran by then, and the caller's ``tags``. ``close(end)`` finishes, ``abort()`` removes it."""

    NAME = "mux"
    HELP = "write segment packets and audio into an m3cvc stream (.mkv or .m3cv)"
    GRAPH = False

    def __init__(self, dst: str | os.PathLike | BinaryIO, *, format: str | None = None,
                 tags: dict[str, str] | None = None, profile_name: str = "", backends: Callable[[], str] | None = None,
                 audio_stream=None, audio_options: AudioOptions | None = None):
        super().__init__()
        self.dst, self.format, self.tags = dst, format, dict(tags or {})
        self.profile_name, self.backends = profile_name, backends
        self.audio_stream, self.audio_options = audio_stream, audio_options
        self.audio: AudioTrack | None = None  # the input's audio on its way into the container
        self._track = -1  # its track in the container
        self.writer: StreamWriter | None = None
        self.segments = 0
        self.video_time = 0.0  # seconds of video written (the end of the last segment)
        self._ahead: deque = deque()  # audio demuxed ahead of the video
        self._due: deque = deque()  # audio the video has reached, waiting for the container to open

    @property
    def frame_overhead(self) -> int:
        """Video bytes the container adds for each frame after a segment's first (rate control counts them)."""
        return frame_overhead(check_container(self.dst, self.format))

    def configure(self, header: SequenceHeader) -> SequenceHeader:
        self.header = header
        return header

    # -- audio ---------------------------------------------------------------------------------------------------
    def add_audio(self, packet) -> None:
        """An audio packet of the input, muxed once the video reaches its time (``release``)."""
        self._ahead.append(packet)

    def release(self, until: float) -> None:
        """The audio that plays before ``until`` seconds is due: written now, or when the container opens."""
        while self._ahead and float(self._ahead[0].pts * self._ahead[0].time_base) < until:
            self._due.append(self._ahead.popleft())
        if self.writer is not None:
            with output_errors(self.dst):
                while self._due:
                    self._write_audio(self.audio.send(self._due.popleft()) if self.audio is not None else [])

    def _write_audio(self, packets: list) -> None:
        for packet in packets:
            self.writer.write_audio(packet, self._track)

    def _add_audio(self) -> None:
        """The input's audio track in the container: copied or encoded (``filters.audio``), or dropped."""
        stream, self.audio_stream = self.audio_stream, None
        if stream is None:
            return
        source = stream.codec_context
        if not self.writer.carries_audio:
            self.writer.add_audio(source)  # it warns that the audio is dropped
            return
        options = (self.audio_options or AudioOptions()).for_low_rate(source)
        codec = choose(source, options, takes=self.writer.takes_audio, default=DEFAULT_CODEC,
                       output=f"the {self.writer.container} stream")
        if codec is not None:
            self.audio = AudioTrack(stream) if codec == "copy" else \
                AudioTrack(stream, av.CodecContext.create(codec, "w"), options)
            self._track = self.writer.add_audio(self.audio.codec)

    # -- video ---------------------------------------------------------------------------------------------------
    def process(self, seg: ClipSegment) -> tuple:
        self.write_packet(seg.packet, seg.unit)
        self.video_time = seg.end_time
        return ()

    def write_packet(self, packet: bytes, segment: Segment | None = None) -> None:
        """Append one segment packet as it is (``segment``: the packet parsed, when known)."""
        if self.writer is None:
            self._open()
        with output_errors(self.dst):
            self.writer.write_packet(packet, segment)
        self.segments += 1

    def _open(self) -> None:
        with output_errors(self.dst):
            tags = stream_tags(self.profile_name, self.backends() if self.backends else "", self.tags)
            self.writer = open_writer(self.dst, self.header, container=self.format, tags=tags)
        try:
            self._add_audio()
        except BaseException:
            self.writer.abort()
            raise
        if self.audio is None:  # no audio, or none the container takes (it warned)
            self._due.clear()
            self._ahead.clear()
        self.release(0.0)

    @property
    def bytes_written(self) -> int:
        """Bytes of the whole output so far."""
        return self.writer.bytes_written if self.writer is not None else 0

    @property
    def video_bytes(self) -> int:
        """Bytes of the video track so far (what ``ffprobe -show_packets`` sums for it)."""
        return self.writer.video_bytes if self.writer is not None else 0

    def close(self, end: float | None = None) -> None:
        """Write the audio up to ``end`` seconds (the video's end; None: all of it), drop the rest, finish."""
        if end is not None:
            self.release(end)
        self._ahead.clear()
        with output_errors(self.dst):
            if self.audio is not None:
                self._write_audio(self.audio.flush())
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
