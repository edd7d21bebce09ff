"""source: the encoder graph's input. PyAV demux + decode of anything FFmpeg reads (files, stdin ``-``, still images)
into RGB frames, keeping timestamps (VFR too), rotation and color metadata, with audio packets handed through for
muxing (:class:`Source`); or the API's frames: ``av.VideoFrame``s or RGB arrays (:class:`ArraySource`)."""
from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.errors import InputError, UsageError

from . import color
from .items import AudioPacket, Frame, VideoInfo
from .node import Node
from .options import Option


SEQUENCE = re.compile(r"%0?\d*d")  # FFmpeg's image2 pattern: f_%04d.png
SEQUENCE_START = 5  # FFmpeg's image2 looks for the first file among the numbers 0..4 (start_number_range)


def is_sequence(path: str | os.PathLike) -> bool:
    """True for an image sequence pattern (``f_%04d.png``) that names no file itself."""
    return bool(SEQUENCE.search(Path(path).name)) and not Path(path).exists()


def sequence_file(path: str | os.PathLike, number: int) -> Path | None:
    """The file of ``number`` in the pattern ``path``, or None when the name is not a pattern Python formats."""
    try:
        return Path(path).parent / (Path(path).name % number)
    except (TypeError, ValueError):
        return None


URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")  # a protocol FFmpeg opens itself (http://, rtmp://, ...)


def check_path(src: str | os.PathLike) -> None:
    """InputError unless ``src`` is a readable file, or an image sequence pattern whose first file exists (the first
    of the numbers 0..4, as FFmpeg's image2 looks); ``-`` (stdin) and URLs are FFmpeg's to open."""
    if str(src) == "-" or URL.match(str(src)):
        return
    path = Path(src)
    if is_sequence(path):
        if not any((f := sequence_file(path, n)) is not None and f.is_file() for n in range(SEQUENCE_START)):
            first, last = sequence_file(path, 0), sequence_file(path, SEQUENCE_START - 1)
            raise InputError(f"input {path}: no file of the image sequence (looked for {first} to {last}, as FFmpeg "
                             "does): check the pattern and the numbering")
        return
    if not path.exists():
        raise InputError(f"input {path} does not exist: check the path")
    if path.is_dir():
        raise InputError(f"input {path} is a directory: give a media file (or f_%04d.png for a sequence in it)")
    if not os.access(path, os.R_OK):
        raise InputError(f"input {path} is not readable: check its permissions")


def open_input(src: str | os.PathLike | BinaryIO, framerate: float = 25.0) -> av.container.InputContainer:
    """Open ``src`` (a path, an image sequence pattern read at ``framerate``, ``-`` for stdin, or a binary file
    object) with PyAV; one-line InputError on failure."""
    target = sys.stdin.buffer if str(src) == "-" else src
    fmt, options = None, {}
    if isinstance(target, (str, os.PathLike)):
        check_path(target)
        if not URL.match(str(target)) and is_sequence(target):
            fmt, options = "image2", {"framerate": f"{framerate:g}"}
        target = str(target)
    try:
        return av.open(target, "r", format=fmt, options=options)
    except av.error.FFmpegError as err:
        raise InputError(f"cannot read {src}: {err.strerror or err} (is it a media file FFmpeg can read?)") from None


IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")  # one still image


class Source(Node):
    """Decoded video frames (and audio packets) of one input; ``info`` describes the video after ``open()``."""

    NAME = "source"
    HELP = "decode any input FFmpeg reads into RGB frames"
    GRAPH = False
    OPTIONS = (
        Option("ss", float, 0.0, "start at this time (seconds)", range=(0, 1e9)),
        Option("t", float, 0.0, "stop after this duration (seconds, 0 = to the end)", range=(0, 1e9)),
        Option("frames", int, 0, "stop after this many frames (0 = all)", range=(0, 1 << 40)),
        Option("audio", bool, True, "hand the first audio stream's packets through"),
        Option("framerate", float, 25.0, "frame rate of an image sequence (f_%04d.png)", range=(1e-3, 1000)),
    )

    def __init__(self, src: str | os.PathLike | BinaryIO, positional: list[str] | None = None, **named):
        super().__init__(positional, **named)
        self.src = src
        self.container = open_input(src, self.opts["framerate"])
        self.sequence = isinstance(src, (str, os.PathLike)) and is_sequence(src)
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"input {src} has no video stream: m3cvcav encodes video")
        try:
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            audio = self.container.streams.audio
            self.audio_stream = audio[0] if audio and self.opts["audio"] else None
            self._first = self._peek()
            self.info = self._describe()
        except BaseException:
            self.container.close()
            raise

    def _peek(self) -> av.VideoFrame:
        if self.opts["ss"] > 0:
            offset = int(self.opts["ss"] / self.stream.time_base) + (self.stream.start_time or 0)
            try:
                self.container.seek(offset, stream=self.stream, backward=True)
            except av.error.FFmpegError:
                pass  # unseekable (pipes): frames before -ss are dropped while decoding
        self._packets = self._demux()
        for item in self._packets:
            if isinstance(item, av.VideoFrame):
                return item
            self._pending.append(item)
        raise InputError(f"input {self.src} has no decodable video frame after {self.opts['ss']} s")

    def _demux(self) -> Iterator[av.VideoFrame | av.Packet]:
        self._pending: list[av.Packet] = []
        streams = [self.stream] + ([self.audio_stream] if self.audio_stream is not None else [])
        start = self.opts["ss"]
        try:
            for packet in self.container.demux(streams):
                if packet.stream.type == "audio":
                    if packet.pts is not None and packet.size and float(packet.pts * packet.time_base) >= start:
                        yield packet
                    continue
                for frame in packet.decode():
                    if frame.time is None or frame.time >= start - 1e-6:
                        yield frame
        except av.error.FFmpegError as err:
            raise InputError(f"cannot decode {self.src}: {err}") from None

    def _describe(self) -> VideoInfo:
        first, stream = self._first, self.stream
        fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
        if fps <= 0 or fps > 1000:
            fps = Fraction(25)
        time_base = Fraction(stream.time_base) if stream.time_base else 1 / fps
        height, width = first.height, first.width
        if round((first.rotation or 0) / 90) % 2:
            width, height = height, width
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        if duration is not None:
            duration = max(0.0, duration - self.opts["ss"])
            if self.opts["t"]:
                duration = min(duration, self.opts["t"])
        count = stream.frames or (round(duration * fps) if duration else None)
        if self.container.format.name in IMAGE_FORMATS and not self.sequence:
            count = 1
        if count is not None and (self.opts["ss"] > 0 or self.opts["t"]) and stream.frames:  # the frames coded
            count = max(1, round(duration * fps)) if duration else count
        if count is not None and self.opts["frames"]:
            count = min(count, self.opts["frames"])
        return VideoInfo(width, height, fps, time_base, color.from_frame(first), count, duration)

    def run(self, items: Iterable[Any] = ()) -> Iterator[Frame | AudioPacket]:
        """Frames with pts rebased so the first output frame is at 0; audio packets shifted by the same offset."""
        info, opts = self.info, self.opts
        step = 1 / (info.fps * info.time_base)  # ticks per frame, for frames without pts
        origin: float | None = None
        count = 0
        pending = self._pending
        try:
            for item in itertools.chain([self._first], self._packets):
                if isinstance(item, av.Packet):
                    if origin is None:
                        pending.append(item)
                        continue
                    yield from self._audio(item, origin)
                    continue
                pts = item.pts if item.pts is not None else round(count * step)
                if origin is None:
                    origin = float(pts * info.time_base)
                    for packet in pending:
                        yield from self._audio(packet, origin)
                    pending.clear()
                if opts["t"] and float(pts * info.time_base) - origin >= opts["t"] - 1e-9:
                    break
                image = color.to_rgb(item, info.color)
                turns = round((item.rotation or 0) / 90) % 4
                if turns:
                    image = np.ascontiguousarray(np.rot90(image, k=turns))
                yield Frame(image, pts - round(origin / info.time_base), info.time_base, count)
                count += 1
                if opts["frames"] and count >= opts["frames"]:
                    break
        finally:
            if self.audio_stream is None:
                self.close()
            # else: handed-out audio packets point into the container (their stream, the decoder's context), so it
            # stays open until close(): after the video ends their writer still muxes and flushes them.

    def close(self) -> None:
        """Release the input (idempotent); with audio, call it once every packet handed out has been written."""
        self.container.close()

    def _audio(self, packet: av.Packet, origin: float) -> Iterator[AudioPacket]:
        shift = round(origin / packet.time_base)
        if float(packet.pts * packet.time_base) < origin - 1e-6:
            return
        if self.opts["t"] and float(packet.pts * packet.time_base) - origin >= self.opts["t"]:
            return
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        yield AudioPacket(packet)


class ArraySource(Node):
    """Frames from an iterable of ``av.VideoFrame`` or (H, W, 3) uint8 RGB arrays, at ``fps`` (arrays) or the frames'
    own pts/time_base (VideoFrames that have them); ``frames``: at most this many (0: all)."""

    NAME = "arrays"
    HELP = "the API's frames: av.VideoFrame or RGB arrays"
    GRAPH = False
    audio_stream = None

    def __init__(self, frames: Iterable[Any], fps: float | Fraction = 25, limit: int = 0):
        super().__init__()
        self._it = iter(frames)
        first = next(self._it, None)
        if first is None:
            raise InputError("the frame iterable is empty: give at least one frame")
        self._first = first
        self.info = describe_first(first, fps)
        self.limit = limit

    def run(self, items: Iterable[Any] = ()) -> Iterator[Frame]:
        for i, item in enumerate(itertools.chain([self._first], self._it)):
            if self.limit and i >= self.limit:
                return
            yield as_frame(item, i, self.info)

    def close(self) -> None:
        """Nothing to release (the caller owns the iterable)."""


def describe_first(item: Any, fps: float | Fraction = 25) -> VideoInfo:
    """The stream description of frames like ``item`` (an ``av.VideoFrame``, whose colour tags it keeps as a file's
    source does, or an RGB array, coded as BT.709) at ``fps``."""
    fps = Fraction(fps).limit_denominator(1001 * 1000)
    description = color.from_frame(item) if isinstance(item, av.VideoFrame) else ColorDescription(1, 1, 1, False)
    image = rgb_image(item, description)
    time_base = Fraction(item.time_base) if isinstance(item, av.VideoFrame) and item.time_base else 1 / fps
    return VideoInfo(image.shape[1], image.shape[0], fps, time_base, description)


def rgb_image(item: Any, description: ColorDescription) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image of an ``av.VideoFrame`` (converted with the stream's ``description``, as the file
    source converts) or an array; UsageError for anything else."""
    if isinstance(item, av.VideoFrame):
        return color.to_rgb(item, description)
    array = np.asarray(item)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise UsageError(f"frames must be av.VideoFrame or (H, W, 3) uint8 RGB arrays, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)


def as_frame(item: Any, index: int, info: VideoInfo) -> Frame:
    """Frame ``index`` of a stream described by ``info``: its pts from an ``av.VideoFrame`` that has one, else from
    the index and the frame rate; every frame must have the first one's size."""
    image = rgb_image(item, info.color)
    if image.shape[:2] != (info.height, info.width):
        raise UsageError(f"frame {index} is {image.shape[1]}x{image.shape[0]}, the first was {info.width}x"
                         f"{info.height}: all frames need one size")
    if isinstance(item, av.VideoFrame) and item.pts is not None:
        pts = item.pts
    else:
        pts = round(index / (info.fps * info.time_base))
    return Frame(image, int(pts), info.time_base, index)


def open_source(src: Any, *, fps: float | Fraction = 25, ss: float = 0.0, t: float | None = None, frames: int = 0,
                audio: bool = True) -> Source | ArraySource:
    """The encoder's source: a path (an image sequence pattern at ``fps``), ``-`` or a binary file object through
    PyAV, else an iterable of frames (at ``fps``)."""
    if isinstance(src, (str, os.PathLike)) or hasattr(src, "read"):
        return Source(src, ss=ss, t=t or 0.0, frames=frames, audio=audio, framerate=float(fps))
    return ArraySource(src, fps, frames)
