"""sink: the decoder graph's output. PyAV encode of RGB frames to any format FFmpeg writes (codec by extension or
``codec``), y4m to stdout, still images or ``%04d`` sequences. Audio is copied when the container takes its codec and
no audio option asks otherwise, else encoded (``-c:a``/``-b:a``/``-ac``/``-ar``, or the container's default audio
codec: Opus for .webm), as ``filters.audio`` decides for every output; it stops with the video. Files are written
through :class:`m3cvcav.core.atomic.AtomicPath` and renamed only when complete."""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from m3cvcav.core.atomic import AtomicPath, output_errors
from m3cvcav.core.errors import OutputError, UsageError
from m3cvcav.core.log import get_logger

from . import color
from .audio import AudioOptions, AudioTrack, choose
from .options import encoder
from .items import Frame, VideoInfo
from .node import Node

log = get_logger(__name__)

IMAGE_CODECS = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff",
                ".webp": "libwebp"}
CHROMA_420 = ("yuv420p", "yuvj420p", "nv12", "nv21", "yuv420p10le")


def is_pattern(path: str) -> bool:
    return "%" in Path(path).name


def is_single_image(path: str) -> bool:
    """An image name without a ``%d`` pattern: it takes one frame (see :class:`Sink`)."""
    return path != "-" and Path(path).suffix.lower() in IMAGE_CODECS and not is_pattern(path)


@functools.lru_cache(maxsize=1)
def _extensions() -> dict[str, str]:
    """File extension -> the first muxer of PyAV's FFmpeg that claims it (FFmpeg's av_guess_format, by name)."""
    table: dict[str, str] = {}
    for name in sorted(av.formats_available):
        try:
            fmt = av.format.ContainerFormat(name, "w")
        except (ValueError, av.error.FFmpegError):
            continue
        for ext in fmt.extensions:
            table.setdefault(ext.lower(), name)
    return table


def output_format(dst: str, format: str | None) -> str:
    """The muxer that will write ``dst`` (``format``, or guessed from the extension); UsageError when there is none,
    so a bad output name fails before any model is loaded."""
    if format:
        try:
            return av.format.ContainerFormat(format, "w").name
        except (ValueError, av.error.FFmpegError):
            raise UsageError(f"-f {format}: not an output format of PyAV's FFmpeg (list them with `ffmpeg -formats`)"
                             ) from None
    if dst == "-":
        raise UsageError("writing to stdout needs a format: add -f yuv4mpegpipe (or -f matroska, -f nut)")
    suffix = Path(dst).suffix.lower().lstrip(".")
    if is_single_image(dst) or (is_pattern(dst) and "." + suffix in IMAGE_CODECS):
        return "image2"
    name = _extensions().get(suffix)
    if name is None:
        raise UsageError(f"cannot tell the output format of {dst}: use a known extension (.mp4, .mkv, .webm, .y4m, "
                         ".png, ...) or give -f FORMAT")
    return name


# Largest CRF of encoders whose range is narrower than the option table's 0..63 (x264/x265 take 0..51).
CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51}


def check_encoder(codec: str, crf: float | None) -> None:
    """A UsageError, before anything is written, for a name FFmpeg has no video encoder by, or a CRF the encoder
    does not take."""
    found = encoder(codec, "video", "-c:v", "libx264, libvpx-vp9, ffv1; audio is set with -c:a")
    top = CRF_MAX.get(found.name)
    if crf is not None and top is not None and crf > top:
        raise UsageError(f"-crf {crf:g}: {found.name} takes a CRF from 0 to {top}")


class Sink(Node):
    """Encodes frames into ``dst`` (``process``/``write``); ``close()`` finishes and renames, ``abort()`` removes what
    was written."""

    NAME = "sink"
    HELP = "encode frames to any format FFmpeg writes"
    GRAPH = False

    def __init__(self, dst: str | os.PathLike, info: VideoInfo, *, format: str | None = None,
                 codec: str | None = None, crf: float | None = None, preset: str | None = None,
                 pix_fmt: str | None = None, bitrate: int | None = None, audio: av.audio.AudioStream | None = None,
                 audio_packets: Iterator | None = None, audio_options: AudioOptions | None = None,
                 metadata: dict[str, str] | None = None):
        super().__init__()
        self.dst, self.info = str(dst), info
        self._atomic: AtomicPath | None = None
        if self.dst == "-" or hasattr(dst, "write"):
            if not format:
                raise UsageError("writing to stdout needs a format: add -f yuv4mpegpipe (or -f matroska, -f nut)")
            target, self._final = (sys.stdout.buffer if self.dst == "-" else dst), None
        else:
            self._final = Path(self.dst)
            self._atomic = AtomicPath(self.dst, folder=is_pattern(self.dst))
            target = str(self._atomic.tmp / self._final.name) if is_pattern(self.dst) else str(self._atomic.tmp)
        self._target = target
        options = {"update": "1"} if self._is_single_image() else {}
        try:
            self.container = av.open(target, "w", format=format, options=options)
        except (av.error.FFmpegError, ValueError) as err:
            self._cleanup()
            raise OutputError(f"cannot write {self.dst}: {err} (check the extension or -f)") from None
        self.container.metadata.update({k: v for k, v in (metadata or {}).items() if v != ""})
        self.bytes = 0  # bytes of the packets muxed so far (video and audio)
        self.video_bytes = 0  # of which video
        self.audio: AudioTrack | None = None  # the input's audio on its way into the output
        try:
            self.stream = self._add_video(codec, crf, preset, pix_fmt, bitrate)
            self.audio_out = self._add_audio(audio, audio_options or AudioOptions()) if audio is not None else None
        except BaseException:
            self.abort()
            raise
        self._audio_packets = audio_packets if self.audio_out is not None else None
        self._pending_audio: av.Packet | None = None
        self.frames = 0
        self._end: float | None = None  # set on close: audio from there on is not written
        self._video_end = 0.0

    # ---- setup
    def _is_single_image(self) -> bool:
        return self._final is not None and is_single_image(self.dst)

    def _add_video(self, codec, crf, preset, pix_fmt, bitrate) -> av.video.stream.VideoStream:
        fmt = self.container.format.name
        info = self.info
        if codec is None:
            codec = IMAGE_CODECS.get(Path(self.dst).suffix.lower()) if fmt == "image2" else None
            if fmt in ("yuv4mpegpipe",):
                codec = "rawvideo"
            codec = codec or self.container.default_video_codec
            if codec in ("h264",) and "libx264" in av.codecs_available:
                codec = "libx264"
        check_encoder(codec, crf)
        try:
            stream = self.container.add_stream(codec, rate=info.fps)
        except (av.error.FFmpegError, ValueError, KeyError):
            raise UsageError(f"-c:v {codec}: the {fmt} format cannot carry {codec} video; choose another encoder "
                             f"(its default: {self.container.default_video_codec})") from None
        ctx = stream.codec_context
        ctx.width, ctx.height = info.width, info.height
        formats = [f.name for f in (stream.codec.video_formats or ())]
        if pix_fmt is None:
            pix_fmt = "yuv420p" if (not formats or "yuv420p" in formats) else formats[0]
            if codec == "mjpeg":
                pix_fmt = "yuvj420p"
            if (info.width % 2 or info.height % 2) and pix_fmt in CHROMA_420:
                full = next((p for p in ("yuv444p", "yuvj444p", "gbrp", "rgb24") if p in formats), None)
                if full is not None:
                    pix_fmt = full
                    log.info("odd frame size %dx%d: writing %s to keep every pixel", info.width, info.height,
                             pix_fmt)
        elif formats and pix_fmt not in formats:
            raise UsageError(f"codec {codec} does not take -pix_fmt {pix_fmt}; it takes {', '.join(formats)}")
        ctx.pix_fmt = pix_fmt
        if fmt != "yuv4mpegpipe":
            ctx.time_base = info.time_base
        opts = {}
        if crf is not None:
            opts["crf"] = f"{crf:g}"
        if preset is not None:
            opts["preset"] = str(preset)
        if bitrate:
            ctx.bit_rate = int(bitrate)
        ctx.options = opts
        self.color = color.output_color(info.color)
        if codec == "mjpeg":  # JPEG is full range
            self.color = dataclasses.replace(self.color, full_range=True)
        if not pix_fmt.startswith(("rgb", "bgr", "gbr", "pal", "gray")):
            ctx.colorspace = self.color.matrix
            ctx.color_range = 2 if self.color.full_range else 1
            ctx.color_primaries, ctx.color_trc = self.color.primaries, self.color.transfer
        return stream

    def _add_audio(self, template: av.audio.AudioStream, options: AudioOptions):
        """The output's audio stream: ``template``'s packets copied when the container takes them and nothing else
        is asked, else encoded with -c:a or the container's default audio codec (Opus for WebM)."""
        fmt = self.container.format.name
        if fmt in ("image2", "yuv4mpegpipe"):
            return None
        codec = choose(template.codec_context, options, output=f"the {fmt} format",
                       takes=lambda name, config: name in self.container.supported_codecs,
                       default=self.container.default_audio_codec)
        if codec is None:
            return None
        if codec == "copy":
            self.audio = AudioTrack(template)
            return self.container.add_stream_from_template(template)
        stream = self.container.add_stream(codec)
        self.audio = AudioTrack(template, stream.codec_context, options)
        return stream

    # ---- writing
    def process(self, frame: Frame) -> tuple:
        self.write(frame)
        return ()

    def write(self, frame: Frame) -> None:
        """Encode one frame (its pts in ``frame.time_base``), after the audio that plays before it."""
        self._mux_audio_until(frame.time)
        vf = color.from_rgb(frame.image, self.stream.codec_context.pix_fmt, self.color)
        if self.container.format.name == "yuv4mpegpipe":
            vf.pts, vf.time_base = self.frames, 1 / Fraction(self.info.fps)
        else:
            vf.pts, vf.time_base = frame.pts, frame.time_base
        self._mux(self._encode(vf))
        self.frames += 1
        if frame.time is not None:
            self._video_end = frame.time + 1 / float(self.info.fps)

    def _encode(self, frame: av.VideoFrame) -> list[av.Packet]:
        """The packets of one frame; the encoder opens on the first, and a refusal to open is one line."""
        if self.frames:
            return self.stream.encode(frame)
        try:
            return self.stream.encode(frame)
        except av.error.FFmpegError as err:
            ctx = self.stream.codec_context
            odd = (ctx.width % 2 or ctx.height % 2) and ctx.pix_fmt in CHROMA_420
            why = (f"{ctx.pix_fmt} (4:2:0) needs an even width and height: leave -pix_fmt out (odd sizes get 4:4:4) "
                   f"or crop, e.g. -vf crop={ctx.width // 2 * 2}:{ctx.height // 2 * 2}:0:0" if odd else
                   "check -pix_fmt, -crf, -preset and -b:v for this encoder")
            raise UsageError(f"{ctx.name} cannot encode {ctx.width}x{ctx.height} {ctx.pix_fmt} "
                             f"({err.strerror or err}): {why}") from None

    def _mux_audio_until(self, time: float | None) -> None:
        """Mux the audio that plays before ``time`` (all of it, up to the video's end, when ``time`` is None)."""
        if self._audio_packets is None:
            return
        while True:
            if self._pending_audio is None:
                self._pending_audio = next(self._audio_packets, None)
                if self._pending_audio is None:
                    self._audio_packets = None
                    return
            packet = self._pending_audio
            start = float(packet.pts * packet.time_base) if packet.pts is not None else None
            if start is not None and time is not None and start > time:
                return
            self._pending_audio = None
            if start is not None and self._end is not None and start >= self._end:
                self._audio_packets = None  # the video has ended: so does the audio (-frames:v, -t)
                return
            self._mux_audio(self.audio.send(packet))

    def _mux_audio(self, packets) -> None:
        for p in packets:
            p.stream = self.audio_out
        self._mux(packets)

    def _mux(self, packets) -> None:
        with output_errors(self.dst):
            for packet in packets:
                self.bytes += packet.size
                if packet.stream is not None and packet.stream.type == "video":
                    self.video_bytes += packet.size
                self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and the audio up to the video's end, close, and move the output into place."""
        try:
            self._mux(self.stream.encode(None))
            self._end = self._video_end  # the audio stops with the video (-frames:v, -t, -ss)
            self._mux_audio_until(None)
            if self.audio is not None:
                self._mux_audio(self.audio.flush())
            self.container.close()
        except BaseException:
            self.abort()
            raise
        if self._atomic is not None:
            self._atomic.commit()

    def abort(self) -> None:
        """Close without finishing and remove everything written."""
        try:
            self.container.close()
        except Exception:  # the container may be half-open after an I/O error; removal below is what matters
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        if self._atomic is not None:
            self._atomic.abort()
