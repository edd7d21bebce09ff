"""The Python API: ``encode``, ``decode`` and a PyAV-like ``open``. Options are the CLI's, as keyword arguments.

>>> import m3cvcav
>>> m3cvcav.encode("in.mp4", "out.mkv", bitrate="20k", overwrite=True)      # -b:v 20k -y
>>> m3cvcav.decode("out.mkv", "back.mp4", crf=20, overwrite=True)            # -crf 20 -y
>>> with m3cvcav.open("out.mkv") as stream:
...     for frame in stream.decode():                                       # av.VideoFrame, rgb24, with pts
...         print(frame.pts, frame.time_base, frame.width, frame.height)
>>> m3cvcav.encode((np.zeros((288, 512, 3), np.uint8) for _ in range(50)), "gray.m3cv", fps=25)
"""
from __future__ import annotations

import abc
import builtins
import contextlib
import errno
import itertools
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from m3cvcav.bitstream.containers import check_container, open_reader, open_writer
from m3cvcav.bitstream.containers.audio import AudioOptions
from m3cvcav.bitstream.units import SequenceHeader
from m3cvcav.engines.registry import load_profile, shared_profile
from m3cvcav.core.errors import BitstreamError, InputError, M3cvError, OutputError, UsageError
from m3cvcav.filters import pipeline
from m3cvcav.filters.generate import Generate, check_mode
from m3cvcav.filters.items import AudioPacket, Color, Frame, VideoInfo
from m3cvcav.filters.node import run_chain
from m3cvcav.filters.options import parse_number
from m3cvcav.filters.progress import ProgressCallback, Stats
from m3cvcav.filters.ratecontrol import RateControl
from m3cvcav.filters.sink import Sink, check_output, is_single_image, output_format
from m3cvcav.filters.source import Source
from m3cvcav.core.log import get_logger
from m3cvcav.preflight import check_profile, check_stream_models

log = get_logger("api")

Src = str | os.PathLike | BinaryIO


@dataclass
class Result:
    """What a run produced. ``bytes``: the video track's bytes (what ``ffprobe -show_packets`` sums for it: every
    segment packet and frame marker; for a decode, the output's video packets); ``total_bytes``: the whole output
    (audio, subtitles, container); ``duration`` in seconds; ``corrupt`` segments concealed; ``target_bitrate``: the
    -b:v asked for (0: none)."""

    frames: int
    segments: int
    bytes: int
    duration: float
    corrupt: int = 0
    total_bytes: int = 0
    target_bitrate: float = 0.0

    @property
    def video_bytes(self) -> int:
        return self.bytes

    @property
    def bitrate(self) -> float:
        """Video bits per second."""
        return 8 * self.bytes / self.duration if self.duration > 0 else 0.0

    @property
    def total_bitrate(self) -> float:
        """Bits per second of the whole output."""
        return 8 * self.total_bytes / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        """``video N bytes (X kbit/s), total M bytes (Y kbit/s)``."""
        return (f"video {self.bytes} bytes ({self.bitrate / 1000:.2f} kbit/s), total {self.total_bytes} bytes "
                f"({self.total_bitrate / 1000:.2f} kbit/s)")


RATE_TOLERANCE = 0.05


def warn_rate(result: Result) -> None:
    """The one place that says when the achieved video rate is more than 5 % off the -b:v target."""
    if not result.target_bitrate or result.duration <= 0 or not result.frames:
        return
    off = result.bitrate / result.target_bitrate - 1
    if abs(off) <= RATE_TOLERANCE:
        return
    why = ("the lowest rate point cannot go lower on this content: lower the resolution (-s), use fewer keyframes "
           "(-vf select=threshold=...) or -mode tt2v" if off > 0 else
           "the highest rate point spends no more on this content: the stream is as good as this profile makes it")
    log.warning("video rate %.2f kbit/s is %+.0f%% off the -b:v target of %.2f kbit/s: %s", result.bitrate / 1000,
                100 * off, result.target_bitrate / 1000, why)


class Engines:
    """A profile whose engines run on one backend (``-engine``), offloading models when asked (``-offload``); what the
    nodes see as ``profile``."""

    def __init__(self, name: str = "lite", backend: str = "auto", offload: bool = False):
        self.profile = shared_profile(name)  # the one engine cache: the process's Profile of this name
        self.name, self.backend, self.profile_id = self.profile.name, backend, self.profile.profile_id
        self.offload = offload

    def engine(self, role: str):
        return self.profile.engine(role, backend=self.backend, offload=self.offload)

    def roles(self) -> list[str]:
        return self.profile.roles()

    def backends(self) -> str:
        """Which backend each engine used so far ran on, e.g. ``embedder=onnxruntime,motion=opencv``."""
        built = self.profile.built(self.backend, self.offload)
        return ",".join(f"{role}={_backend(engine)}" for role, engine in sorted(built.items()))


def _backend(engine: object) -> str:
    """The backend an engine ran on: its network engine's, its networks' (m3cvc: ``backend`` / ``backends``), a wrapped
    engine's, torch for modules, else opencv."""
    state = getattr(engine, "__dict__", {})
    if isinstance(state.get("backends"), dict):
        return "+".join(sorted(set(state["backends"].values())))
    if isinstance(state.get("backend"), str):
        return state["backend"]
    if "engine" in state and getattr(state["engine"], "backend", ""):
        return state["engine"].backend
    for inner in ("embedder", "net", "motion"):
        value = state.get(inner)
        if value is None:
            continue
        if inner == "net":
            return "torch"
        return _backend(value)
    return "opencv" if any(type(v).__module__ == "cv2" for v in state.values()) else "none"


def engines_for(profile: str = "lite", backend: str = "auto", offload: bool = False) -> Engines:
    """The profile's engines on ``backend``: a view of the process's shared profile, whose engines load once per
    (role, backend, offload)."""
    return Engines(profile, backend, offload)


def _bitrate(value: str | int | float | None, name: str = "-b:v") -> float:
    """Bits per second of a rate option (``None``: not given); zero or negative is a UsageError."""
    if value is None or value == "":
        return 0.0
    try:
        rate = float(parse_number(value, float) if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} {value!r}: give bits per second, e.g. 20k") from None
    if not rate > 0:
        raise UsageError(f"{name} {value!r}: give a positive number of bits per second, e.g. 20k")
    return rate


def _check_cut(ss: float | None, t: float | None, frames: int | None) -> None:
    """-ss/-t/-frames:v (API: ss/t/frames) must select something."""
    if ss is not None and ss < 0:
        raise UsageError(f"-ss {ss:g}: give a start time of 0 or more seconds")
    if t is not None and not t > 0:
        raise UsageError(f"-t {t:g}: give a positive duration in seconds (leave it out to read to the end)")
    if frames is not None and frames < 0:
        raise UsageError(f"-frames:v {frames}: give a positive number of frames")


def audio_options(codec: str | None = None, bitrate: str | int | None = None, channels: int | None = None,
                  sample_rate: int | None = None) -> AudioOptions:
    """The -c:a/-b:a/-ac/-ar options (API: audio_codec/audio_bitrate/channels/sample_rate), checked."""
    return AudioOptions(codec, int(_bitrate(bitrate, "-b:a")) or None, channels, sample_rate)


def is_m3cvc(src: Src) -> bool:
    """True when ``src`` is an m3cvc stream (.m3cv, or Matroska with an m3cvc track)."""
    if not isinstance(src, (str, os.PathLike)) or str(src) == "-" or not Path(src).is_file():
        return False
    with builtins.open(src, "rb") as f:
        magic = f.read(4)
    if magic == b"M3CV":
        return True
    if magic != b"\x1a\x45\xdf\xa3":
        return False
    try:
        open_reader(src).close()
        return True
    except M3cvError:
        return False


class ArraySource:
    """Frames from an iterable of ``av.VideoFrame`` or (H, W, 3) uint8 RGB arrays, at ``fps`` (arrays) or the frames'
    own pts/time_base (VideoFrames that have them)."""

    def __init__(self, frames: Iterable[Any], fps: float | Fraction = 25, frames_limit: int = 0):
        self._it = iter(frames)
        first = next(self._it, None)
        if first is None:
            raise InputError("the frame iterable is empty: give at least one frame")
        self._first = first
        fps = Fraction(fps).limit_denominator(1001 * 1000)
        image = self._image(first)
        tb = Fraction(first.time_base) if isinstance(first, av.VideoFrame) and first.time_base else 1 / fps
        self.info = VideoInfo(image.shape[1], image.shape[0], fps, tb, Color(1, 1, 1, False))
        self.audio_stream = None
        self.limit = frames_limit

    @staticmethod
    def _image(item: Any) -> np.ndarray:
        if isinstance(item, av.VideoFrame):
            return item.to_ndarray(format="rgb24")
        array = np.asarray(item)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise UsageError(f"frames must be av.VideoFrame or (H, W, 3) uint8 RGB arrays, got {array.shape} "
                             f"{array.dtype}")
        return np.ascontiguousarray(array)

    def __iter__(self) -> Iterator[Frame]:
        step = 1 / (self.info.fps * self.info.time_base)
        for i, item in enumerate(itertools.chain([self._first], self._it)):
            if self.limit and i >= self.limit:
                return
            image = self._image(item)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise UsageError(f"frame {i} is {image.shape[1]}x{image.shape[0]}, the first was "
                                 f"{self.info.width}x{self.info.height}: all frames need one size")
            pts = item.pts if isinstance(item, av.VideoFrame) and item.pts is not None else round(i * step)
            yield Frame(image, int(pts), self.info.time_base, i)


def encode(src: Src | Iterable[Any], dst: str | os.PathLike | BinaryIO, *, vf: str | None = None,
           filter_complex: str | None = None, ss: float = 0.0, t: float | None = None, frames: int = 0,
           size: str | None = None, rate: str | float | None = None, bitrate: str | float | None = None,
           q: int | None = None, profile: str = "lite", engine: str = "auto", overwrite: bool | None = None,
           format: str | None = None, fps: float = 25, audio: bool = True, tags: dict[str, str] | None = None,
           mode: str = "it2v", offload: bool = False, progress: ProgressCallback | None = None,
           workers: int | None = None, cluster: str | None = None, resume: str | None = None, chunk_min: int = 0,
           chunk_max: int = 0, audio_codec: str | None = None, audio_bitrate: str | int | None = None,
           channels: int | None = None, sample_rate: int | None = None) -> Result:
    """Encode a video (any file FFmpeg reads, ``-`` for stdin, or an iterable of ``av.VideoFrame``/RGB arrays) into an
    m3cvc stream (``.mkv`` with audio and descriptions, or ``.m3cv``).

    Options, as on the command line: ``vf``/``filter_complex`` (-vf/-filter_complex; FFmpeg filters and the nodes
    select/describe/tokenize), ``ss``/``t``/``frames`` (-ss/-t/-frames:v), ``size`` (-s WxH), ``rate`` (-r),
    ``bitrate`` (-b:v, e.g. "20k": rate control) or ``q`` (-q: a fixed quality level 0..15), ``profile``
    (-profile), ``engine`` (-engine: auto|torch|onnxruntime|tensorrt), ``offload`` (-offload: the profile's models go
    to the GPU only while they run; a no-op on the CPU), ``overwrite`` (-y True / -n False), ``format`` (-f m3cv|mkv),
    ``fps`` (frame rate of array input), ``mode`` (-mode: "it2v" writes keyframe tokens, "tt2v" none: text only,
    the lowest rate; needs a profile whose keyframe generator makes images from text, e.g. m3cvc). ``progress`` is
    called with a :class:`Stats` after each frame. ``workers`` (-workers N, 0: one per core) or ``cluster``
    (-cluster local|auto|ray://HOST:PORT) encode in chunks of ``chunk_min``..``chunk_max`` frames cut at scene cuts, on
    worker processes or Ray; ``resume`` (-resume DIR) keeps finished chunks there to continue an interrupted job
    (docs/parallel.md). Audio (``audio=False``: -an): ``audio_codec`` (-c:a copy|libopus|aac|...; default Opus),
    ``audio_bitrate`` (-b:a; default 24k), ``channels`` (-ac; default at most 2), ``sample_rate`` (-ar); it is cut
    with the video (ss/t/frames).

    >>> encode("in.mp4", "out.mkv", bitrate="20k", overwrite=True).bitrate   # about 20000 bits/s
    """
    if q is not None and bitrate:
        raise UsageError("give either -q (a fixed quality level) or -b:v (a bitrate target), not both")
    target = _bitrate(bitrate)
    _check_cut(ss, t, frames)
    audio_opts = audio_options(audio_codec, audio_bitrate, channels, sample_rate)
    if isinstance(dst, (str, os.PathLike)) and str(dst) != "-":
        check_container(dst, format)  # a bad output name fails before any model is loaded
        check_output(str(dst), overwrite, "overwrite=True")
    if workers is not None or cluster:
        from m3cvcav.parallel import encode_chunked

        result = encode_chunked(src, dst,
                                options=dict(vf=vf, filter_complex=filter_complex, size=size, rate=rate,
                                             bitrate=bitrate, q=q, profile=profile, engine=engine, mode=mode,
                                             offload=offload),
                                source_options=dict(ss=ss, t=t or 0.0, frames=frames),
                                overwrite=overwrite, format=format, audio=audio, tags=tags, fps=fps,
                                workers_n=workers or 0, cluster=cluster, resume=resume, chunk_min=chunk_min,
                                chunk_max=chunk_max, progress=progress)
        result.target_bitrate = target
        warn_rate(result)
        return result
    if str(dst) == "-":
        dst = sys.stdout.buffer
        format = format or "m3cv"
    p = pipeline.plan(vf, filter_complex, size=size, rate=str(rate) if rate else None, ours=pipeline.ENCODER_NODES)
    engines = engines_for(profile, engine, offload)
    check_profile(engines.profile)  # packages, files, hub models: before any engine is built or downloaded
    check_mode(engines, mode)
    if isinstance(src, (str, os.PathLike, BinaryIO)) or hasattr(src, "read"):
        source: Source | ArraySource = Source(src, ss=ss, t=t or 0.0, frames=frames, audio=audio)
    else:
        source = ArraySource(src, fps, frames)
    rc = RateControl(target, q)
    if (format or isinstance(dst, (str, os.PathLike))) and check_container(dst, format) == "matroska":
        rc.frame_overhead = 1  # Matroska's 1-byte block for each frame after a keyframe counts as video bytes
    nodes = [pipeline.make("select", p, profile=engines, rate=rc),
             pipeline.make("tokenize", p, profile=engines, rate=rc, mode=mode),
             pipeline.make("describe", p, profile=engines)]
    stats = Stats(total_frames=source.info.frame_count, duration=source.info.duration)
    ahead: deque = deque()  # audio demuxed ahead of the video: released as the video reaches it, cut where it ends
    pending_audio: deque = deque()  # released audio waiting for the writer (opened at the first segment)
    writer = None

    def video() -> Iterator[Frame]:
        for item in source:
            if isinstance(item, AudioPacket):
                ahead.append(item.packet)
                continue
            yield item

    def release(until: float) -> None:
        while ahead and float(ahead[0].pts * ahead[0].time_base) < until:
            pending_audio.append(ahead.popleft())
        if writer is not None:
            with _writing(dst):
                while pending_audio:
                    writer.write_audio(pending_audio.popleft())

    def counted(frames_in: Iterator[Frame]) -> Iterator[Frame]:
        for frame in frames_in:
            stats.frame += 1
            stats.media_time = frame.time
            release(frame.time + 1 / float(source.info.fps))
            if progress:
                progress(stats)
            yield frame

    info, filtered = pipeline.apply_ffmpeg(p, source.info, video())
    for node in nodes:
        info = node.configure(info)
    header = SequenceHeader(info.width, info.height, Fraction(info.fps), Fraction(info.time_base),
                            info.color, engines.profile_id,
                            list(engines.profile.model_refs()))
    try:
        for seg in run_chain(nodes, counted(filtered)):
            if writer is None:
                writer = _open_writer(dst, header, format, source, engines, tags, pending_audio, audio_opts)
            with _writing(dst):
                writer.write_segment(seg.unit)
            stats.size, stats.video_size = writer.bytes_written, writer.video_bytes
            stats.segments += 1
        if writer is None:
            raise InputError(f"no video frame was read from {src}: check -ss/-t/-frames")
        release(stats.media_time + 1 / float(info.fps))  # the audio ends with the video (-frames:v, -t)
        ahead.clear()
        with _writing(dst):
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if isinstance(source, Source):
            source.close()  # after the writer: its audio packets and decoder belong to the input container
    duration = stats.media_time + 1 / float(info.fps)
    stats.size, stats.video_size = writer.bytes_written, writer.video_bytes
    stats.media_time = duration  # the final line and Result speak of the same span
    if progress:
        progress(stats)
    result = Result(stats.frame, stats.segments, writer.video_bytes, duration, total_bytes=writer.bytes_written,
                    target_bitrate=target)
    log.log(15, "encoded %d frames into %d segments: %s (profile %s, %s, %s)", result.frames, result.segments,
            result.summary(), engines.name, mode, engines.backends())
    warn_rate(result)
    return result


@contextlib.contextmanager
def _writing(dst) -> Iterator[None]:
    """Turn an OS error of the output (a full disk, a lost pipe target) into a one-line OutputError."""
    try:
        yield
    except M3cvError:
        raise
    except OSError as err:
        if isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE:
            raise BrokenPipeError(errno.EPIPE, "the reader of the output closed it") from None
        raise OutputError(f"cannot write {dst}: {err.strerror or err} (free some space or choose another "
                          "output)") from None


def _open_writer(dst, header, format, source, engines: Engines, tags, pending_audio, audio_opts=None):
    all_tags = {"ENCODER": "m3cvcav", "M3CV_PROFILE": engines.name, "M3CV_BACKEND": engines.backends()}
    all_tags.update(tags or {})
    from m3cvcav import __version__

    all_tags["ENCODER"] = f"m3cvcav {__version__}"
    with _writing(dst):
        writer = open_writer(dst, header, container=format, tags=all_tags)
    if source.audio_stream is not None:
        if writer.add_audio(source.audio_stream, audio_opts) >= 0:
            while pending_audio:
                writer.write_audio(pending_audio.popleft())
        pending_audio.clear()
    return writer


class StreamDecoder(abc.ABC):
    """What every decoder of an m3cvc stream offers (serial or on workers): ``reader``, ``header``, ``info``,
    ``frames()`` (from the subclass), ``decode()`` yielding ``av.VideoFrame`` (rgb24), ``close()``, ``with``."""

    reader: Any
    header: SequenceHeader
    segments_read = 0

    @property
    def info(self) -> VideoInfo:
        h = self.header
        return VideoInfo(h.width, h.height, h.fps, h.time_base, h.color)

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Decoded frames as :class:`m3cvcav.filters.items.Frame` (RGB numpy + pts), in order."""

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
    ``mode`` is CMVC's: "it2v" decodes the keyframe tokens (segments without any are generated from text), "tt2v"
    ignores the token layer and generates every keyframe from D^F."""

    def __init__(self, src: Src, *, profile: str | None = None, engine: str = "auto", mode: str = "it2v",
                 offload: bool = False):
        self.reader = open_reader(sys.stdin.buffer if str(src) == "-" else src)
        self.header: SequenceHeader = self.reader.header
        self.tags: dict[str, str] = dict(self.reader.tags)
        try:
            name = profile or self.tags.get("M3CV_PROFILE") or _profile_name(self.header.profile_id)
            self.engines = engines_for(name, engine, offload)
            check_profile(self.engines.profile, self.engines.profile.decoder_roles())
            check_stream_models(self.engines.profile, self.header.models)
            check_mode(self.engines, mode)
            self.generate = Generate(profile=self.engines, mode=mode)
            self.generate.configure(self.header)
            self.engines.profile.verify(self.header.models)  # after configure: reuses the engines it built
        except BaseException:
            self.reader.close()
            raise

    def frames(self) -> Iterator[Frame]:
        """Decoded frames as :class:`m3cvcav.filters.items.Frame` (RGB numpy + pts)."""
        return run_chain([self.generate], self._counted(self.reader.segments()))

    def _counted(self, segments: Iterator) -> Iterator:
        for seg in segments:
            self.segments_read += 1
            yield seg


def _profile_name(profile_id: int) -> str:
    from m3cvcav.engines.registry import available_profiles

    for name in available_profiles():
        if load_profile(name).profile_id == profile_id:
            return name
    raise InputError(f"the stream was made with profile id {profile_id}, which is not installed: pass -profile")


def open(src: Src, *, profile: str | None = None, engine: str = "auto",  # noqa: A001  (PyAV's name)
         mode: str = "it2v", offload: bool = False) -> Decoder:
    """Open an m3cvc stream for decoding, like ``av.open``: ``with m3cvcav.open("out.mkv") as s: s.decode()``."""
    return Decoder(src, profile=profile, engine=engine, mode=mode, offload=offload)


def decode(src: Src, dst: str | os.PathLike | BinaryIO, *, vf: str | None = None, filter_complex: str | None = None,
           frames: int = 0, size: str | None = None, rate: str | float | None = None, codec: str | None = None,
           crf: float | None = None, preset: str | None = None, pix_fmt: str | None = None,
           bitrate: str | float | None = None, format: str | None = None, profile: str | None = None,
           engine: str = "auto", overwrite: bool | None = None, audio: bool = True, mode: str = "it2v",
           offload: bool = False, progress: ProgressCallback | None = None, workers: int | None = None,
           cluster: str | None = None, chunk_max: int = 0, ss: float = 0.0, t: float | None = None,
           audio_codec: str | None = None, audio_bitrate: str | int | None = None, channels: int | None = None,
           sample_rate: int | None = None) -> Result:
    """Decode an m3cvc stream to any format PyAV writes (by extension, or ``format``), ``-`` with
    ``format="yuv4mpegpipe"`` for a pipe, images or ``%04d`` sequences. ``codec``/``crf``/``preset``/``pix_fmt``/
    ``bitrate`` set the output encoder (-c:v/-crf/-preset/-pix_fmt/-b:v); ``vf``/``size``/``rate`` apply FFmpeg
    filters to the decoded frames; audio in the .mkv is copied when the output container takes it. ``mode`` (-mode
    it2v|tt2v): see :class:`Decoder`; ``offload``: as for :func:`encode`; ``workers``/``cluster``: decode runs of
    ``chunk_max`` frames (0: 10 s) on workers, frames identical to a serial decode (docs/parallel.md).
    ``ss``/``t``/``frames`` (-ss/-t/-frames:v) pick the frames written (from ``ss`` on, rebased to 0), and the audio
    with them; decoding stops once they are written. One image name (``one.png``) takes one frame: the first, or the
    one at ``ss``. Audio options as for :func:`encode` (default: copied when the output container takes it, else the
    container's audio codec, e.g. Opus for .webm). Fails, writing nothing, when no frame can be decoded.

    >>> decode("out.mkv", "back.mp4", overwrite=True).frames
    """
    _check_cut(ss, t, frames)
    audio_opts = audio_options(audio_codec, audio_bitrate, channels, sample_rate)
    video_rate = int(_bitrate(bitrate)) or None
    if isinstance(dst, (str, os.PathLike)) or str(dst) == "-":
        output_format(str(dst), format)  # a bad output name fails before any model is loaded
    if isinstance(dst, (str, os.PathLike)) and str(dst) != "-":
        check_output(str(dst), overwrite, "overwrite=True")
        if is_single_image(str(dst)):
            if frames > 1:
                raise UsageError(f"{dst} is one image but {frames} frames were asked for: name the output with a "
                                 "pattern (e.g. out_%04d.png) for several")
            frames = 1  # the first frame (or the one at ss), without decoding the rest
    p = pipeline.plan(vf, filter_complex, size=size, rate=str(rate) if rate else None, ours=pipeline.DECODER_NODES)
    if workers is not None or cluster:
        from m3cvcav.parallel import ParallelDecoder

        stream = ParallelDecoder(src, profile=profile, engine=engine, mode=mode, offload=offload,
                                 workers_n=workers or 0, cluster=cluster, run_frames=chunk_max)
    else:
        stream = Decoder(src, profile=profile, engine=engine, mode=mode, offload=offload)
    info = stream.info
    stats = Stats()
    sink: Sink | None = None
    audio_stream, audio_packets, audio_container = None, None, None

    cut_short: list[bool] = []  # the frames asked for ended before the stream did

    def limited(frames_in: Iterator[Frame]) -> Iterator[Frame]:
        """The frames from ss on (pts rebased to it), up to t seconds or ``frames`` frames; stops decoding there."""
        count = 0
        for frame in frames_in:
            if frame.time < ss - 1e-6:
                continue
            if (frames and count >= frames) or (t is not None and frame.time - ss >= t - 1e-6):
                cut_short.append(True)
                return
            count += 1
            yield Frame(frame.image, frame.pts - round(ss / frame.time_base), frame.time_base, frame.index)

    def audio_from(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
        """The audio from ss on, shifted like the video (the sink stops it where the video ends)."""
        for pk in packets:
            if not pk.size or pk.pts is None or float(pk.pts * pk.time_base) < ss - 1e-6:
                continue
            shift = round(ss / pk.time_base)
            pk.pts -= shift
            if pk.dts is not None:
                pk.dts -= shift
            yield pk

    try:
        if audio and stream.reader.has_audio and stream.reader.path is not None:
            audio_container = av.open(str(stream.reader.path))
            if audio_container.streams.audio:
                audio_stream = audio_container.streams.audio[0]
                audio_packets = audio_from(audio_container.demux(audio_stream))
        info, out = pipeline.apply_ffmpeg(p, info, limited(stream.frames()))
        sink = Sink(dst, info, format=format, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
                    bitrate=video_rate, audio=audio_stream, audio_packets=audio_packets, audio_options=audio_opts)
        for frame in out:
            sink.write(frame)
            stats.frame += 1
            stats.media_time = frame.time
            stats.size, stats.video_size = sink.bytes, sink.video_bytes
            if progress:
                progress(stats)
        read, corrupt = getattr(stream, "segments_read", 0), stream.generate.corrupt
        if not stats.frame or (corrupt and corrupt >= read > 0 and not cut_short):  # nothing real: no output
            raise BitstreamError(f"no frame could be decoded from {src}: " + (
                f"every segment is damaged ({corrupt} corrupt); nothing was written" if corrupt else
                "it holds no segment in the range asked for (check -ss/-t); nothing was written"))
        sink.close()
        stats.media_time += 1 / float(info.fps)  # the end of the last frame: the final line matches Result
        stats.size, stats.video_size = sink.bytes, sink.video_bytes
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        stream.close()
        if audio_container is not None:
            audio_container.close()
    return Result(stats.frame, getattr(stream, "segments_read", 0), sink.video_bytes,
                  stats.media_time, stream.generate.corrupt, total_bytes=sink.bytes)
