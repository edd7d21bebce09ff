"""sink: PyAV encode of RGB frames to any format FFmpeg writes (codec by extension or ``codec``), y4m to stdout, still
images or ``%04d`` sequences; audio packets copied when the container takes their codec. Files are written under a
temporary name and renamed only when complete."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from m3cvcav.errors import OutputError, UsageError
from m3cvcav.log import get_logger

from . import colour
from .items import Color, Frame, VideoInfo

log = get_logger("filters.sink")

IMAGE_CODECS = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff",
                ".webp": "libwebp"}
CHROMA_420 = ("yuv420p", "yuvj420p", "nv12", "nv21", "yuv420p10le")


def is_pattern(path: str) -> bool:
    return "%" in Path(path).name


def check_output(dst: str, overwrite: bool | None) -> None:
    """FFmpeg's -y/-n: refuse to overwrite an existing file unless ``overwrite`` is True."""
    if dst == "-" or is_pattern(dst):
        return
    path = Path(dst)
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists: pass -y to overwrite it (or choose another name)")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist: create it first")


class Sink:
    """Encodes frames into ``dst``; ``close()`` finishes and renames, ``abort()`` removes what was written."""

    def __init__(self, dst: str | os.PathLike, info: VideoInfo, *, format: str | None = None,
                 codec: str | None = None, crf: float | None = None, preset: str | None = None,
                 pix_fmt: str | None = None, bitrate: int | None = None, audio: av.audio.AudioStream | None = None,
                 audio_packets: Iterator | None = None):
        self.dst, self.info = str(dst), info
        self._tmpdir: str | None = None
        if self.dst == "-" or hasattr(dst, "write"):
            if not format:
                raise UsageError("writing to stdout needs a format: add -f yuv4mpegpipe (or -f matroska, -f nut)")
            target, self._final = (sys.stdout.buffer if self.dst == "-" else dst), None
        else:
            target, self._final = self._temp_target(), Path(self.dst)
        self._target = target
        options = {"update": "1"} if self._is_single_image() else {}
        try:
            self.container = av.open(target, "w", format=format, options=options)
        except (av.error.FFmpegError, ValueError) as err:
            self._cleanup()
            raise OutputError(f"cannot write {self.dst}: {err} (check the extension or -f)") from None
        try:
            self.stream = self._add_video(codec, crf, preset, pix_fmt, bitrate)
            self.audio_out = self._add_audio(audio) if audio is not None else None
        except BaseException:
            self.abort()
            raise
        self._audio_packets = audio_packets if self.audio_out is not None else None
        self._pending_audio: av.Packet | None = None
        self.frames = 0

    # ---- setup
    def _is_single_image(self) -> bool:
        return self._final is not None and Path(self.dst).suffix.lower() in IMAGE_CODECS and not is_pattern(self.dst)

    def _temp_target(self) -> str:
        path = Path(self.dst)
        if is_pattern(self.dst):
            self._tmpdir = tempfile.mkdtemp(prefix=".m3cvcav-", dir=path.parent)
            return str(Path(self._tmpdir) / path.name)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
        os.close(fd)
        self._tmpfile = name
        return name

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
        try:
            stream = self.container.add_stream(codec, rate=info.fps)
        except (av.error.FFmpegError, ValueError, KeyError) as err:
            raise UsageError(f"cannot encode with codec {codec!r} into {fmt}: {err} (choose another -c:v)") from None
        ctx = stream.codec_context
        ctx.width, ctx.height = info.width, info.height
        formats = [f.name for f in (stream.codec.video_formats or ())]
        if pix_fmt is None:
            pix_fmt = "yuv420p" if (not formats or "yuv420p" in formats) else formats[0]
            if codec == "mjpeg":
                pix_fmt = "yuvj420p"
            if (info.width % 2 or info.height % 2) and pix_fmt in CHROMA_420:
                pix_fmt = next((p for p in ("yuv444p", "yuvj444p", "gbrp", "rgb24") if p in formats), pix_fmt)
                log.info("odd frame size %dx%d: writing %s to keep every pixel", info.width, info.height, pix_fmt)
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
        self.color = Color(info.color.primaries, info.color.transfer,
                           info.color.matrix if info.color.matrix else 1, info.color.full_range or codec == "mjpeg")
        if not pix_fmt.startswith(("rgb", "bgr", "gbr", "pal", "gray")):
            ctx.colorspace = self.color.matrix
            ctx.color_range = 2 if self.color.full_range else 1
            ctx.color_primaries, ctx.color_trc = self.color.primaries, self.color.transfer
        return stream

    def _add_audio(self, template: av.audio.AudioStream):
        name = template.codec_context.name
        if self.container.format.name in ("image2", "yuv4mpegpipe") or name not in self.container.supported_codecs:
            if self.container.format.name not in ("image2", "yuv4mpegpipe"):
                log.warning("audio (%s) dropped: %s cannot carry it", name, self.container.format.name)
            return None
        return self.container.add_stream_from_template(template)

    # ---- writing
    def write(self, frame: Frame) -> None:
        """Encode one frame (its pts in ``frame.time_base``), after the audio that plays before it."""
        self._mux_audio_until(frame.time)
        vf = colour.from_rgb(frame.image, self.stream.codec_context.pix_fmt, self.color)
        if self.container.format.name == "yuv4mpegpipe":
            vf.pts, vf.time_base = self.frames, 1 / Fraction(self.info.fps)
        else:
            vf.pts, vf.time_base = frame.pts, frame.time_base
        self._mux(self.stream.encode(vf))
        self.frames += 1

    def _mux_audio_until(self, time: float | None) -> None:
        if self._audio_packets is None:
            return
        while True:
            if self._pending_audio is None:
                self._pending_audio = next(self._audio_packets, None)
                if self._pending_audio is None:
                    self._audio_packets = None
                    return
            packet = self._pending_audio
            if time is not None and packet.pts is not None and float(packet.pts * packet.time_base) > time:
                return
            packet.stream = self.audio_out
            self._mux([packet])
            self._pending_audio = None

    def _mux(self, packets) -> None:
        try:
            self.container.mux(packets)
        except OSError as err:
            raise OutputError(f"cannot write {self.dst}: {err.strerror or err} (free some space or choose "
                              "another output)") from None

    def close(self) -> None:
        """Flush the encoder and the remaining audio, close, and move the temp file (or files) into place."""
        try:
            self._mux(self.stream.encode(None))
            self._mux_audio_until(None)
            self.container.close()
        except BaseException:
            self.abort()
            raise
        if self._final is None:
            return
        if self._tmpdir is not None:
            for name in sorted(os.listdir(self._tmpdir)):
                os.replace(Path(self._tmpdir) / name, self._final.parent / name)
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        else:
            os.replace(self._tmpfile, self._final)

    def abort(self) -> None:
        """Close without finishing and remove everything written."""
        try:
            self.container.close()
        except Exception:  # the container may be half-open after an I/O error; removal below is what matters
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        elif self._final is not None and getattr(self, "_tmpfile", None):
            Path(self._tmpfile).unlink(missing_ok=True)
