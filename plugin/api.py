"""The Python API, a thin facade over the encoder and decoder graphs of ``m3cvcav.filters``, like PyAV's ``av.open``.
Options are the command line's (``m3cvcav.options``), as keyword arguments, checked by the same table.

>>> import m3cvcav
>>> m3cvcav.encode("in.mp4", "out.mkv", bitrate="20k", overwrite=True)      # -b:v 20k -y
>>> m3cvcav.decode("out.mkv", "back.mp4", crf=20, overwrite=True)            # -crf 20 -y
>>> with m3cvcav.open("out.mkv") as stream:                                 # a reader
...     for frame in stream.decode():                                       # av.VideoFrame, rgb24, with pts
...         print(frame.pts, frame.time_base, frame.width, frame.height)
>>> with m3cvcav.open("gray.m3cv", "w", fps=25, bitrate="5k") as out:     # a writer
...     for _ in range(50):
...         out.write(np.zeros((288, 512, 3), np.uint8))                   # or av.VideoFrame
>>> m3cvcav.encode((np.zeros((288, 512, 3), np.uint8) for _ in range(50)), "gray.m3cv", fps=25)
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO

from m3cvcav.bitstream.containers import PipeSink, check_container
from m3cvcav.filters.audio import AudioOptions
from m3cvcav.core.atomic import check_output
from m3cvcav.core.errors import UsageError
from m3cvcav.engines.preflight import check_profile
from m3cvcav.engines.registry import DEFAULT_PROFILE, Engines
from m3cvcav.filters import pipeline
from m3cvcav.filters.decoder import Decoder, decode_to
from m3cvcav.filters.encoder import Encoder
from m3cvcav.filters.progress import ProgressCallback
from m3cvcav.filters.ratecontrol import RateControl
from m3cvcav.filters.result import Result, warn_rate
from m3cvcav.filters.sink import is_single_image, output_format
from m3cvcav.filters.source import check_path, open_source

from .options import DECODE, ENCODE, check
from .parallel import ParallelDecoder, encode_chunked

__all__ = ["encode", "decode", "open", "Result", "Encoder", "Decoder"]

Src = str | os.PathLike | BinaryIO
BOTH_RATES = "give either q= (a fixed quality level) or bitrate= (a bitrate target), not both"
NULL = "null"  # format="null" (-f null): encode or decode, count the bytes, keep none (FFmpeg's dry run)


def encode(src: Src | Iterable[Any], dst: str | os.PathLike | BinaryIO, *, vf: str | None = None,
           filter_complex: str | None = None, ss: float = 0.0, t: float | None = None, frames: int = 0,
           size: str | None = None, rate: str | float | None = None, bitrate: str | float | None = None,
           q: int | None = None, profile: str | None = None, engine: str = "auto", overwrite: bool | None = None,
           format: str | None = None, fps: float = 25, audio: bool = True, tags: dict[str, str] | None = None,
           mode: str = "it2v", offload: bool = False, progress: ProgressCallback | None = None,
           workers: int | None = None, cluster: str | None = None, resume: str | None = None, chunk_min: int = 0,
           chunk_max: int = 0, audio_codec: str | None = None, audio_bitrate: str | int | None = None,
           channels: int | None = None, sample_rate: int | None = None) -> Result:
    """Encode a video (any file FFmpeg reads, ``-`` for stdin, or an iterable of ``av.VideoFrame``/RGB arrays) into an
    m3cvc stream (``.mkv`` with audio and descriptions, or ``.m3cv``).

    Options, as on the command line: ``vf``/``filter_complex`` (-vf/-filter_complex; FFmpeg filters and the nodes
    select/tokenize/describe/base), ``ss``/``t``/``frames`` (-ss/-t/-frames:v), ``size`` (-s WxH), ``rate`` (-r),
    ``bitrate`` (-b:v, e.g. "20k": rate control) or ``q`` (-q: a fixed quality level 0..15), ``profile``
    (-profile), ``engine`` (-engine: auto|torch|onnxruntime|tensorrt), ``offload`` (-offload: the profile's models go
    to the GPU only while they run; a no-op on the CPU), ``overwrite`` (-y True / -n False), ``format`` (-f m3cv|mkv;
    "null": a dry run whose .mkv bytes are counted and dropped), ``tags`` (-metadata KEY=VALUE),
    ``fps`` (frame rate of array input), ``mode`` (-mode: "it2v" writes the base pictures, and keyframe tokens where
    the profile has a tokenizer; "tt2v" neither: text only, the lowest rate; needs a profile whose keyframe generator makes images from text, e.g. m3cvc). ``progress`` is
    called with a :class:`Stats` after each frame read and each segment written. ``workers`` (-workers N, 0: one per core) or ``cluster``
    (-cluster local|auto|ray://HOST:PORT) encode in chunks of ``chunk_min``..``chunk_max`` frames cut at scene cuts, on
    worker processes or Ray; ``resume`` (-resume DIR) keeps finished chunks there to continue an interrupted job
    (docs/parallel.md). Audio (``audio=False``: -an): ``audio_codec`` (-c:a copy|libopus|aac|...; default Opus),
    ``audio_bitrate`` (-b:a; default 24k), ``channels`` (-ac; default at most 2), ``sample_rate`` (-ar); it is cut
    with the video (ss/t/frames).

    >>> encode("in.mp4", "out.mkv", bitrate="20k", overwrite=True).bitrate   # about 20000 bits/s
    """
    o = check(ENCODE, ss=ss, t=t, frames=frames, bitrate=bitrate, q=q, engine=engine, mode=mode, workers=workers,
              chunk_min=chunk_min, chunk_max=chunk_max, audio_bitrate=audio_bitrate, channels=channels,
              sample_rate=sample_rate)
    if q is not None and bitrate:
        raise UsageError(BOTH_RATES)
    audio_opts = _audio_options(audio_codec, o["audio_bitrate"], o["channels"], o["sample_rate"])
    if isinstance(src, (str, os.PathLike)):
        check_path(src)  # a mistyped input is named before the output is judged
    _check_stream_output(dst, format, overwrite)
    profile = profile or DEFAULT_PROFILE
    if format == NULL:
        dst, format = PipeSink(keep=False), "mkv"
    if workers is not None or cluster:
        result = encode_chunked(src, dst,
                                options=dict(vf=vf, filter_complex=filter_complex, size=size, rate=rate,
                                             bitrate=o["bitrate"], q=o["q"], profile=profile, engine=engine,
                                             mode=mode, offload=offload),
                                source_options=dict(ss=o["ss"], t=o["t"] or 0.0, frames=o["frames"]),
                                overwrite=overwrite, format=format, audio=audio, tags=tags, fps=fps,
                                workers_n=o["workers"] or 0, cluster=cluster, resume=resume,
                                chunk_min=o["chunk_min"], chunk_max=o["chunk_max"], progress=progress,
                                audio_options=audio_opts)
        result.target_bitrate = o["bitrate"] or 0.0
        warn_rate(result)
        return result
    encoder = _encoder(dst, vf=vf, filter_complex=filter_complex, size=size, rate=rate, bitrate=o["bitrate"],
                       q=o["q"], profile=profile, engine=engine, offload=offload, mode=mode, format=format, tags=tags,
                       audio_options=audio_opts, fps=fps, progress=progress)
    return encoder.run(open_source(src, fps=fps, ss=o["ss"], t=o["t"], frames=o["frames"], audio=audio))


def decode(src: Src, dst: str | os.PathLike | BinaryIO, *, vf: str | None = None, filter_complex: str | None = None,
           frames: int = 0, size: str | None = None, rate: str | float | None = None, codec: str | None = None,
           crf: float | None = None, preset: str | None = None, pix_fmt: str | None = None,
           bitrate: str | float | None = None, format: str | None = None, profile: str | None = None,
           engine: str = "auto", overwrite: bool | None = None, audio: bool = True, mode: str = "it2v",
           offload: bool = False, progress: ProgressCallback | None = None, workers: int | None = None,
           cluster: str | None = None, chunk_max: int = 0, ss: float = 0.0, t: float | None = None,
           audio_codec: str | None = None, audio_bitrate: str | int | None = None, channels: int | None = None,
           sample_rate: int | None = None, tags: dict[str, str] | None = None,
           enhance: bool | str = True) -> Result:
    """Decode an m3cvc stream to any format PyAV writes (by extension, or ``format``), ``-`` with
    ``format="yuv4mpegpipe"`` for a pipe, images or ``%04d`` sequences. ``codec``/``crf``/``preset``/``pix_fmt``/
    ``bitrate`` set the output encoder (-c:v/-crf/-preset/-pix_fmt/-b:v); ``vf``/``size``/``rate`` apply FFmpeg
    filters to the decoded frames; audio in the .mkv is copied when the output container takes it. ``mode`` (-mode
    it2v|tt2v): see :class:`Decoder`; ``offload``: as for :func:`encode`; ``workers``/``cluster``: decode chunks of
    ``chunk_max`` frames (0: 10 s) on workers, frames identical to a serial decode (docs/parallel.md).
    ``ss``/``t``/``frames`` (-ss/-t/-frames:v) pick the frames written (from ``ss`` on, rebased to 0), and the audio
    with them; decoding stops once they are written. One image name (``one.png``) takes one frame: the first, or the
    one at ``ss``. Audio options as for :func:`encode` (default: copied when the output container takes it, else the
    container's audio codec, e.g. Opus for .webm). ``tags`` (-metadata KEY=VALUE): global tags of the output;
    ``format="null"``: decode and drop the frames (FFmpeg's ``-f null -``). Fails, writing nothing, when no frame can
    be decoded.

    >>> decode("out.mkv", "back.mp4", overwrite=True).frames
    """
    o = check(DECODE, ss=ss, t=t, frames=frames, bitrate=bitrate, crf=crf, engine=engine, mode=mode, workers=workers,
              chunk_max=chunk_max, audio_bitrate=audio_bitrate, channels=channels, sample_rate=sample_rate)
    audio_opts = _audio_options(audio_codec, o["audio_bitrate"], o["channels"], o["sample_rate"])
    frames = o["frames"]
    if isinstance(src, (str, os.PathLike)):
        check_path(src)
    if format == NULL:
        dst = "-"  # FFmpeg's null muxer writes nothing, whatever the output is named
    if isinstance(dst, (str, os.PathLike)) or str(dst) == "-":
        output_format(str(dst), format)  # a bad output name fails before any model is loaded
    elif not format:
        raise UsageError("writing to a file object needs a format: pass format='yuv4mpegpipe' (or 'matroska', ...)")
    if isinstance(dst, (str, os.PathLike)) and str(dst) != "-":
        check_output(str(dst), overwrite, "overwrite=True")
        if is_single_image(str(dst)):
            if frames > 1:
                raise UsageError(f"{dst} is one image but {frames} frames were asked for: name the output with a "
                                 "pattern (e.g. out_%04d.png) for several")
            frames = 1  # the first frame (or the one at ss), without decoding the rest
    plan = pipeline.plan(vf, filter_complex, size=size, rate=str(rate) if rate else None, ours=pipeline.DECODER_NODES)
    if workers is not None or cluster:
        stream = ParallelDecoder(src, profile=profile, engine=engine, mode=mode, offload=offload,
                                 workers_n=o["workers"] or 0, cluster=cluster, chunk_frames=o["chunk_max"],
                                 enhance=enhance not in (False, "none"))
    else:
        stream = Decoder(src, profile=profile, engine=engine, mode=mode, offload=offload,
                         enhance=enhance not in (False, "none"))
    sink_options = dict(format=format, codec=codec, crf=o["crf"], preset=preset, pix_fmt=pix_fmt,
                        bitrate=int(o["bitrate"]) if o["bitrate"] else None, metadata=tags)
    return decode_to(stream, dst, plan=plan, sink_options=sink_options, ss=o["ss"], t=o["t"], frames=frames,
                     audio=audio, audio_options=audio_opts, progress=progress)


def open(path: Src, mode: str = "r", /, **options: Any) -> Decoder | Encoder:  # noqa: A001  (PyAV's name)
    """Open an m3cvc stream like ``av.open``: ``"r"`` gives a :class:`Decoder` (``decode()`` yields
    ``av.VideoFrame``s; options ``profile``, ``engine``, ``mode`` (it2v|tt2v), ``offload``), ``"w"`` an
    :class:`Encoder` that takes frames one at a time (``write(frame)``: an ``av.VideoFrame`` or an RGB array;
    ``close()`` returns the :class:`Result`; options as :func:`encode`'s: ``fps``, ``bitrate``, ``q``, ``vf``,
    ``profile``, ...). Both are context managers."""
    if mode not in ("r", "w"):
        raise UsageError(f"open(..., {mode!r}): the mode is 'r' (read a stream) or 'w' (write one); the decoding "
                         "mode is the keyword mode='it2v'|'tt2v'")
    allowed = READER_OPTIONS if mode == "r" else WRITER_OPTIONS
    unknown = set(options) - set(allowed)
    if unknown:
        raise UsageError(f"open(..., {mode!r}): unknown option(s) {', '.join(sorted(unknown))}; it takes "
                         f"{', '.join(allowed)}")
    checked = {k: v for k, v in options.items() if k in ("bitrate", "q", "engine", "mode")}
    o = check(DECODE if mode == "r" else ENCODE, **checked)
    if mode == "r":
        return Decoder(path, **{**options, **o})
    if options.get("q") is not None and options.get("bitrate"):
        raise UsageError(BOTH_RATES)
    _check_stream_output(path, options.get("format"), options.pop("overwrite", None))
    return _encoder(path, **{**options, **o, "profile": options.get("profile") or DEFAULT_PROFILE})


READER_OPTIONS = ("profile", "engine", "mode", "offload", "enhance")
WRITER_OPTIONS = ("vf", "filter_complex", "size", "rate", "bitrate", "q", "profile", "engine", "offload", "mode",
                  "format", "tags", "fps", "progress", "overwrite")


def _encoder(dst, *, vf=None, filter_complex=None, size=None, rate=None, bitrate=None, q=None,
             profile: str = DEFAULT_PROFILE, engine: str = "auto", offload: bool = False, mode: str = "it2v",
             format=None, tags=None, audio_options: AudioOptions | None = None, fps: float = 25,
             progress: ProgressCallback | None = None) -> Encoder:
    """The encoder graph for ``dst``, everything checked before any engine is built or downloaded."""
    if format == NULL:
        dst, format = PipeSink(keep=False), "mkv"
    elif str(dst) == "-":
        dst, format = sys.stdout.buffer, format or "m3cv"
    plan = pipeline.plan(vf, filter_complex, size=size, rate=str(rate) if rate else None, ours=pipeline.ENCODER_NODES)
    engines = Engines(profile, engine, offload)
    check_profile(engines.profile)  # packages, files, hub models: before any engine is built or downloaded
    return Encoder(dst, engines=engines, plan=plan, rate=RateControl(bitrate or 0.0, q), mode=mode, format=format,
                   tags=tags, audio_options=audio_options, fps=fps, progress=progress)


def _check_stream_output(dst: Any, format: str | None, overwrite: bool | None) -> None:
    """A bad output name or an existing file fails before anything is read or loaded."""
    if isinstance(dst, (str, os.PathLike)) and str(dst) != "-" and format != NULL:
        check_stream_container(dst, format)
        check_output(str(dst), overwrite, "overwrite=True")


def check_stream_container(dst: Any, format: str | None, flag: str = "format='mkv'|'m3cv'") -> str:
    """The container an m3cvc stream will be written in; UsageError for a name none takes, and for WebM, which
    allows only VP8/VP9/AV1 video (a WebM player would refuse an m3cvc track)."""
    suffix = os.path.splitext(str(dst))[1].lower() if isinstance(dst, (str, os.PathLike)) else ""
    if (format or "").lower() == "webm" or (format is None and suffix == ".webm"):
        raise UsageError(f"{dst}: WebM carries only VP8, VP9 or AV1 video, not m3cvc: write .mkv (Matroska, which "
                         "WebM is a subset of) or .m3cv; python -m m3cvcav base STREAM out.webm then makes a real "
                         "WebM of its AV1 base layer")
    return check_container(dst, format, flag)


def _audio_options(codec: str | None, bitrate: float | None, channels: int | None,
                   sample_rate: int | None) -> AudioOptions:
    """The -c:a/-b:a/-ac/-ar options (API: audio_codec/audio_bitrate/channels/sample_rate)."""
    return AudioOptions(codec, int(bitrate) if bitrate else None, channels, sample_rate)
