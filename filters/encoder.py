"""The encoder graph: source → FFmpeg filters → the codec core (``codec.VideoEncoder``: select → tokenize → describe →
base) → mux.

``Encoder.run(source)`` pulls a whole input through it (``m3cvcav.encode``); ``write(frame)`` … ``close()`` pushes
frames one at a time (``m3cvcav.open(path, "w")``). The nodes after the FFmpeg filters are configured at the first
frame that comes out of them (its size is known only then); the input's audio goes straight to the mux, which holds
it until the video reaches its time.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, BinaryIO

from m3cvcav.core.errors import InputError, UsageError
from m3cvcav.core.log import get_logger
from m3cvcav.engines.registry import Engines

from .audio import AudioOptions
from .items import AudioPacket, Frame, VideoInfo
from .mux import Mux
from .codec import VideoEncoder
from .pipeline import Plan
from .progress import ProgressCallback, Stats
from .ratecontrol import RateControl
from .result import Result, warn_rate
from .source import ArraySource, Source, as_frame, describe_first

log = get_logger(__name__)


class Encoder:
    """Encodes frames into an m3cvc stream at ``dst`` with ``engines`` (a profile on a backend), the user's graph
    ``plan`` (FFmpeg filters, our nodes' options), rate control ``rate`` (-b:v / -q) and ``mode`` (it2v|tt2v).
    ``fps`` is the frame rate of pushed arrays; ``progress`` is called with :class:`Stats` for each frame."""

    def __init__(self, dst: str | os.PathLike | BinaryIO, *, engines: Engines, plan: Plan | None = None,
                 rate: RateControl | None = None, mode: str = "it2v", format: str | None = None,
                 tags: dict[str, str] | None = None, audio_options: AudioOptions | None = None,
                 fps: float | Fraction = 25, progress: ProgressCallback | None = None):
        plan = plan or Plan()
        self.engines, self.fps, self.progress = engines, fps, progress
        self.rate = rate or RateControl()
        self.ffmpeg_chain = plan.ffmpeg_chain()
        self.mux = Mux(dst, format=format, tags=tags, profile_name=engines.name, backends=engines.backends,
                       audio_options=audio_options)
        self.rate.frame_overhead = self.mux.frame_overhead  # container bytes per frame count as video bytes
        self.codec = VideoEncoder(engines, plan=plan, rate=self.rate, mode=mode)
        self.mode = mode
        self.input: VideoInfo | None = None  # the input, before the FFmpeg filters
        self.info: VideoInfo | None = None  # what the coding nodes see, known at the first filtered frame
        self.stats = Stats()
        self.result: Result | None = None  # set by the first close()
        self._received = 0
        self._what = "the input"

    # -- input ---------------------------------------------------------------------------------------------------
    def start(self, info: VideoInfo, audio_stream=None) -> None:
        """Describe the input (and its audio stream, muxed with the video) before the first frame."""
        self.input = self.ffmpeg_chain.configure(info)  # what will be coded: the ETA's total
        self.stats = Stats(total_frames=self.input.frame_count, duration=self.input.duration, written_time=0.0)
        self.mux.audio_stream = audio_stream

    def run(self, source: Source | ArraySource) -> Result:
        """Encode everything ``source`` yields; the source is closed after the output (its audio packets belong to
        the input container)."""
        self._what = str(getattr(source, "src", "the frames"))
        try:
            self.start(source.info, source.audio_stream)
            for item in source.run():
                if isinstance(item, AudioPacket):
                    self.mux.add_audio(item.packet)
                else:
                    self.write(item)
            return self.close()
        except BaseException:
            self.abort()
            raise
        finally:
            source.close()

    def write(self, frame: Frame | Any) -> None:
        """Encode one more frame: a :class:`Frame`, an ``av.VideoFrame`` or an (H, W, 3) uint8 RGB array."""
        if self.input is None:  # pushed frames: the first describes the stream
            first = describe_first(frame.image if isinstance(frame, Frame) else frame, self.fps)
            self.start(first.with_(time_base=frame.time_base) if isinstance(frame, Frame) else first)
        if not isinstance(frame, Frame):
            frame = as_frame(frame, self._received, self.input)
        self._received += 1
        for out in self.ffmpeg_chain.process(frame):
            self._code(out)

    def _code(self, frame: Frame) -> None:
        if self.info is None:
            self._configure(frame)
        stats = self.stats
        stats.frame += 1
        stats.media_time = frame.time
        self.mux.release(frame.time + 1 / float(self.info.fps))
        if self.progress:
            self.progress(stats)
        for seg in self.codec.send(frame):
            self.mux.process(seg)
        if self.mux.segments != stats.segments:  # a segment was written: its bytes are live at once
            self._written()
            if self.progress:
                self.progress(stats)

    def _written(self) -> None:
        stats, mux = self.stats, self.mux
        stats.size, stats.video_size, stats.segments = mux.bytes_written, mux.video_bytes, mux.segments
        stats.written_time = mux.video_time

    def _configure(self, first: Frame) -> None:
        """Open the codec (which builds its engines) and the mux with the stream's sequence header."""
        self.mux.configure(self.codec.open(self.ffmpeg_chain.output_info(self.input, first)))
        self.info = self.codec.info

    # -- output --------------------------------------------------------------------------------------------------
    def close(self) -> Result:
        """Finish the stream (the audio ends with the video) and move it into place; later calls return the same
        :class:`Result`."""
        if self.result is not None:
            return self.result
        try:
            for out in self.ffmpeg_chain.flush():
                self._code(out)
            if self.info is not None:
                for seg in self.codec.flush():
                    self.mux.process(seg)
            if not self.mux.segments:
                if self._received and self.ffmpeg_chain.specs:
                    raise UsageError("the FFmpeg filters left no frame: check -vf / -ss / -t")
                raise InputError(f"no video frame was read from {self._what}: check -ss/-t/-frames")
            duration = self.stats.media_time + 1 / float(self.info.fps)
            self.mux.close(duration)
        except BaseException:
            self.abort()
            raise
        stats = self.stats
        self._written()
        stats.media_time = stats.written_time = duration  # the final line and Result speak of the same span
        stats.total_frames = stats.frame  # done: no time left
        if self.progress:
            self.progress(stats)
        result = Result(stats.frame, stats.segments, self.mux.video_bytes, duration,
                        total_bytes=self.mux.bytes_written, target_bitrate=self.rate.target_bps)
        log.log(15, "encoded %d frames into %d segments: %s (profile %s, %s, %s)", result.frames, result.segments,
                result.summary(), self.engines.name, self.mode, self.engines.backends())
        warn_rate(result)
        self.result = result
        return result

    def abort(self) -> None:
        """Stop and remove what was written."""
        self.mux.abort()

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self.result is None:
            self.abort()
