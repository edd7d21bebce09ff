"""The decoder graph: demux → the codec core (``codec.VideoDecoder``: generate) → trim (-ss/-t/-frames:v) → FFmpeg
filters → sink.

:class:`Decoder` is the stream side (demux → codec core), what ``m3cvcav.open(path)`` returns: PyAV-like, it yields
decoded frames. :func:`decode_to` runs any :class:`StreamDecoder` (this one, or the parallel one of
``m3cvcav.parallel``) into a sink, with the stream's audio.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import av

from m3cvcav.bitstream.units import SequenceHeader
from m3cvcav.core.errors import BitstreamError, UsageError

from .audio import AudioOptions
from .demux import Demux
from .codec import open_decoder
from .items import Frame, VideoInfo
from .pipeline import Plan
from .progress import ProgressCallback, Stats
from .result import Result
from .sink import Sink
from .trim import Trim


class StreamDecoder(abc.ABC):
    """What every decoder of an m3cvc stream offers (serial or on workers): ``reader``, ``header``, ``tags``,
    ``info``, ``frames()``, ``decode()`` yielding ``av.VideoFrame`` (rgb24), ``segments_read``, ``corrupt``,
    ``close()``, ``with``."""

    reader: Any
    header: SequenceHeader
    tags: dict[str, str]
    segments_read = 0
    corrupt = 0  # segments concealed so far

    @property
    def info(self) -> VideoInfo:
        return VideoInfo.from_header(self.header)

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Decoded frames as :class:`Frame` (RGB numpy + pts), in order."""

    def decode(self) -> Iterator[av.VideoFrame]:
        """``av.VideoFrame``s in rgb24 with ``pts`` and ``time_base`` of the stream."""
        for frame in self.frames():
            out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            out.pts, out.time_base = frame.pts, frame.time_base
            yield out

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Decoder(StreamDecoder):
    """A PyAV-like reader of an m3cvc stream: ``header``, ``tags``, ``decode()`` yielding ``av.VideoFrame`` (rgb24).
    ``mode`` is CMVC's: "it2v" decodes the base layer (and keyframe tokens where the stream has them; segments with
    neither are generated from text), "tt2v" ignores the pictures and generates every keyframe from D^F. The
    profile's models are checked against those the stream names before anything is decoded. ``enhance`` False upscales the base bicubically whatever the encoder
    chose (-enhance none)."""

    def __init__(self, src: str | os.PathLike | BinaryIO, *, profile: str | None = None, engine: str = "auto",
                 mode: str = "it2v", offload: bool = False, enhance: bool = True):
        self.demux = Demux(src)
        self.reader, self.header, self.tags = self.demux.reader, self.demux.header, self.demux.tags
        try:
            self.engines, self.codec = open_decoder(self.header, self.tags, profile=profile, engine=engine,
                                                    mode=mode, offload=offload, enhance=enhance)
        except BaseException:
            self.demux.close()
            raise

    @property
    def segments_read(self) -> int:
        return self.demux.segments_read

    @property
    def corrupt(self) -> int:
        return self.codec.corrupt

    def frames(self) -> Iterator[Frame]:
        for segment in self.demux.run(()):
            yield from self.codec.send(segment)
        yield from self.codec.flush()


def decode_to(stream: StreamDecoder, dst: str | os.PathLike | BinaryIO, *, plan: Plan | None = None,
              sink_options: dict[str, Any] | None = None, ss: float = 0.0, t: float | None = None, frames: int = 0,
              audio: bool = True, audio_options: AudioOptions | None = None,
              progress: ProgressCallback | None = None) -> Result:
    """Decode ``stream`` into ``dst``: the frames from ``ss`` on (rebased to 0), at most ``t`` seconds or ``frames``
    frames (decoding stops there), through the plan's FFmpeg filters, into a :class:`Sink` (``sink_options``: format,
    codec, crf, preset, pix_fmt, bitrate) with the stream's audio cut the same way. Writes nothing and raises
    BitstreamError when no frame can be decoded; closes ``stream``."""
    ffmpeg_chain = (plan or Plan()).ffmpeg_chain()
    info = stream.info
    stats = Stats()
    sink: Sink | None = None
    audio_input = None
    trim = Trim(ss, t, frames)
    decoded = 0

    def emit(out: Frame) -> None:
        nonlocal sink
        if sink is None:  # the size is the first filtered frame's
            audio_stream = audio_input.streams.audio[0] if audio_input is not None else None
            packets = trim.audio(audio_input.demux(audio_stream)) if audio_stream is not None else None
            sink = Sink(dst, ffmpeg_chain.output_info(info, out), audio=audio_stream, audio_packets=packets,
                        audio_options=audio_options, **(sink_options or {}))
        sink.process(out)
        stats.frame += 1
        stats.media_time = out.time
        stats.size, stats.video_size = sink.bytes, sink.video_bytes
        if progress:
            progress(stats)

    try:
        info = ffmpeg_chain.configure(info)
        if audio:
            audio_input = stream.reader.audio_input()
        for frame in trim.run(stream.frames()):
            decoded += 1
            for out in ffmpeg_chain.process(frame):
                emit(out)
        for out in ffmpeg_chain.flush():
            emit(out)
        corrupt, read = stream.corrupt, stream.segments_read
        if sink is None and decoded and ffmpeg_chain.specs:
            raise UsageError("the FFmpeg filters left no frame: check -vf / -ss / -t")
        if sink is None or (corrupt and corrupt >= read > 0 and not trim.cut_short):  # nothing real: no output
            raise BitstreamError(f"no frame could be decoded from {stream.reader.path or 'the input'}: " + (
                f"every segment is damaged ({corrupt} corrupt); nothing was written" if corrupt else
                "it holds no segment in the range asked for (check -ss/-t); nothing was written"))
        sink.close()
        stats.media_time += 1 / float(sink.info.fps)  # the end of the last frame: the final line matches Result
        stats.size, stats.video_size = sink.bytes, sink.video_bytes
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        stream.close()
        if audio_input is not None:
            audio_input.close()
    return Result(stats.frame, stream.segments_read, sink.video_bytes, stats.media_time, stream.corrupt,
                  total_bytes=sink.bytes)
