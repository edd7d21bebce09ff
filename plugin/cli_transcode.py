"""The FFmpeg-like main command: ``python -m m3cvcav [options] -i INPUT [options] OUTPUT``.

Encodes when the output codec is m3cvc (``-c m3cvc``, or an ``.m3cv``/``.mkv`` output of a plain video), decodes when the
input is an m3cvc stream (to any format PyAV writes, ``-f yuv4mpegpipe -`` for a pipe).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from m3cvcav.core.errors import InputError, OutputError, UsageError
from m3cvcav.core.log import get_logger

from .options import BY_FLAG, DECODE, ENCODE, REPEATABLE, absent, help_entry, help_width, usage_lines, wrong_direction

log = get_logger(__name__)

USAGE = """usage: python -m m3cvcav [options] -i INPUT [options] OUTPUT
       python -m m3cvcav probe|edit|play|engines|train|bench ...   (each takes -h)
       python -m m3cvcav -h filter=NAME   (a graph node's options, or where an FFmpeg filter's are)
       python -m m3cvcav -h encoder=m3cvc|decoder=m3cvc   (the options of an encode or a decode)
encode:  python -m m3cvcav -i in.mp4 -c m3cvc [-b:v 20k | -q N] [-mode it2v|tt2v] [-vf ...] out.mkv|out.m3cv
decode:  python -m m3cvcav -i out.mkv [-mode it2v|tt2v] [-c:v libx264 -crf 20 -preset fast -pix_fmt yuv420p] back.mp4
remux:   python -m m3cvcav -i out.mkv -c copy out.m3cv   (the packets as they are, into the other container)
pipe:    python -m m3cvcav -i out.mkv -f yuv4mpegpipe - | ffplay -
dry run: python -m m3cvcav -i in.mp4 -c m3cvc -f null -   (encode, count the bytes, keep none)
"""
HELP_FLAGS = ("-h", "-help", "--help", "-?")


def usage() -> str:
    """-h: the usage above, every option of the one table (``m3cvcav.options``), and the graph nodes from theirs."""
    from m3cvcav.filters import pipeline
    from m3cvcav.filters.node import REGISTRY

    lines = [USAGE.rstrip("\n"), "options:", *usage_lines(), *help_entry("-version", "print the version"),
             "graph nodes (in -vf/-filter_complex after FFmpeg filters; -h filter=NAME for each option's help):"]
    for direction, nodes in (("encode", pipeline.ENCODER_NODES), ("decode", pipeline.DECODER_NODES)):
        for node in nodes:
            table = REGISTRY[node].OPTIONS
            lines.append(f"  {direction}: {node}=" + ":".join(o.name for o in table) if table else
                         f"  {direction}: {node} (no options)")
    return "\n".join(lines) + "\n"


def filter_help(name: str) -> str:
    """``-h filter=NAME``: a node's option table, or what PyAV's FFmpeg says of one of its filters."""
    import av

    from m3cvcav.filters import pipeline  # noqa: F401  (registers the nodes)
    from m3cvcav.filters.node import REGISTRY

    if name in REGISTRY:
        width = help_width()
        return "".join(textwrap.fill(line, width, subsequent_indent="    ", break_on_hyphens=False) + "\n"
                       for line in REGISTRY[name].help().splitlines())
    if name in av.filter.filters_available:
        return (f"{name}: FFmpeg filter: {av.filter.Filter(name).description}\n"
                f"  its options: ffmpeg -h filter={name} (m3cvcav runs it through PyAV's libavfilter)\n")
    nodes = ", ".join(sorted(REGISTRY))
    raise UsageError(f"-h filter={name}: no such filter; nodes: {nodes}; FFmpeg filters: those of PyAV's libavfilter "
                     "(av.filter.filters_available)")


def codec_help(kind: str, name: str) -> str:
    """``-h encoder=m3cvc`` / ``-h decoder=m3cvc``: the options of an encode or a decode; for FFmpeg's own coders,
    where FFmpeg documents them and which options m3cvcav hands on."""
    if name not in M3CVC_CODECS:
        import av

        try:
            av.Codec(name, "w" if kind == "encoder" else "r")
        except (av.error.FFmpegError, ValueError):
            raise UsageError(f"-h {kind}={name}: no such {kind}; m3cvcav's is m3cvc, FFmpeg's are listed by "
                             f"ffmpeg -{kind}s") from None
        handed = ("-c:v, -crf, -preset, -pix_fmt and -b:v of a decode" if kind == "encoder" else
                  "nothing: m3cvcav reads m3cvc")
        return f"{name}: an FFmpeg {kind}; its options: ffmpeg -h {kind}={name} (m3cvcav hands it {handed})\n"
    use = ENCODE if kind == "encoder" else DECODE
    lines = [f"{kind} m3cvc: the options of {'an encode' if use == ENCODE else 'a decode'} (python -m m3cvcav -h "
             "lists them all):"]
    return "\n".join(lines + usage_lines(use)) + "\n"


def help_text(topic: str) -> str:
    """``-h TOPIC``: FFmpeg's forms (``filter=``, ``encoder=``, ``decoder=``, ``full``, ``long``)."""
    kind, _, name = topic.partition("=")
    if topic in ("full", "long"):
        return usage()
    if kind == "filter" and name:
        return filter_help(name)
    if kind in ("encoder", "decoder") and name:
        return codec_help(kind, name)
    if kind in ("muxer", "demuxer", "protocol", "bsf") and name:
        return f"{name}: FFmpeg's {kind}: ffmpeg -h {kind}={name} (m3cvcav writes m3cvc into .mkv or .m3cv)\n"
    raise UsageError(f"-h {topic}: use -h alone, -h full, or -h filter=NAME|encoder=NAME|decoder=NAME")


M3CVC_CODECS = ("m3cvc", "m3cv")
STREAM_SUFFIXES = (".mkv", ".mka", ".m3cv")  # the names an m3cvc stream is written under
PIPES = {"pipe:": "-", "pipe:0": "-", "pipe:1": "-"}  # FFmpeg's pipe protocol: stdin for -i, stdout for the output


@dataclass
class Args:
    """The parsed command line: the inputs, the output, and every other option's value by its name (the API's
    keyword), converted and checked by its entry in ``m3cvcav.options``."""

    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)  # name -> the flag that set it (for messages)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def parse_args(argv: list[str]) -> Args:
    """Parse FFmpeg-style arguments; an unknown option is a UsageError that lists the valid ones."""
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        option = BY_FLAG.get(arg)
        if option is not None:
            if option.switch is not None:
                value = option.switch
                i += 1
            else:
                if i + 1 >= len(argv):
                    raise UsageError(f"option {arg} needs a value (see python -m m3cvcav -h)")
                value = argv[i + 1]
                i += 2
            if option.name == "input":
                args.inputs.append(value)
                continue
            earlier = args.given.get(option.name)
            if earlier is not None and option.switch is not None and args.values[option.name] != value:
                raise UsageError(f"{earlier} and {arg} contradict each other: give one")
            if option.name in REPEATABLE:
                args.values.setdefault(option.name, []).append(option.parse(value))
            else:
                args.values[option.name] = option.parse(value)
            args.given[option.name] = arg
            continue
        if arg.startswith("-") and arg != "-":
            why = absent(arg)
            if why is not None:
                raise UsageError(f"{arg} is not an option of m3cvcav: {why}")
            raise UsageError(f"unknown option {arg}; valid options: {' '.join(BY_FLAG)}")
        if args.output is not None:
            raise UsageError(f"more than one output ({args.output}, {arg}): m3cvcav writes one output")
        args.output = arg
        i += 1
    return args


def main(argv: list[str]) -> int:
    if not argv:
        print(usage(), end="")
        return 2
    asked = next((i for i, arg in enumerate(argv) if arg in HELP_FLAGS), None)
    if asked is not None:  # -h anywhere, as in FFmpeg; its topic is the next word
        topic = argv[asked + 1] if asked + 1 < len(argv) and not argv[asked + 1].startswith("-") else None
        print(help_text(topic) if topic else usage(), end="")
        return 0
    args = parse_args(argv)
    if len(args.inputs) != 1:
        raise UsageError("give exactly one input with -i (e.g. -i in.mp4)")
    if args.output is None:
        raise UsageError("no output file given: add one after the options (e.g. out.mkv, or - with -f)")
    from m3cvcav.core.atomic import check_output
    from m3cvcav.filters.source import check_path

    values = dict(args.values)
    src, dst = PIPES.get(args.inputs[0], args.inputs[0]), PIPES.get(args.output, args.output)
    codec = values.pop("codec", None)
    for name in ("loglevel", "hide_banner", "nostdin", "subtitles"):  # set by __main__, or nothing to do here
        values.pop(name, None)
    stats_line, progress_file = values.pop("stats", None), values.pop("progress_file", None)
    if progress_file not in (None, "pipe:1", "-") and not Path(progress_file).resolve().parent.is_dir():
        raise OutputError(f"-progress {progress_file}: its folder does not exist; create it or write to pipe:1")
    _apply_to(values)
    _apply_maps(values.pop("map", None), values)
    if "tags" in values:
        values["tags"] = parse_tags(values["tags"])
    if "workers" not in values and "cluster" not in values and \
            any(name in values for name in ("resume", "chunk_min", "chunk_max")):
        raise UsageError("-resume/-chunk_min/-chunk_max apply to chunked jobs: add -workers N or -cluster local")
    if "q" in values and "bitrate" in values:
        raise UsageError("give either -q (a fixed quality level) or -b:v (a bitrate target), not both")
    check_path(src)  # a mistyped input is named before the output is judged
    fmt = values.get("format")
    if codec == "copy":
        with stdin_stream(src) as source:
            return _remux(source, dst, values, args.given, label=src)
    direction = ENCODE if _encoding(src, dst, codec, fmt) else DECODE
    for name, flag in args.given.items():
        if BY_FLAG[flag].use not in ("", direction):
            raise UsageError(wrong_direction(BY_FLAG[flag], direction))
    if dst != "-" and fmt != "null":
        if direction == ENCODE:
            from .api import check_stream_container

            check_stream_container(dst, fmt, "-f mkv|m3cv")
        check_output(dst, values.get("overwrite"))
    if direction == ENCODE:
        return _transcode(src, dst, codec, direction, values, stats_line, progress_file)
    with stdin_stream(src) as source:
        return _transcode(source, dst, codec, direction, values, stats_line, progress_file, label=src)


@contextlib.contextmanager
def stdin_stream(src: str) -> Iterator[Any]:
    """What a decode reads for ``src``: the path itself, or for ``-`` stdin, where Matroska is spooled to a temporary
    file (its reader needs the whole file, and its audio is read apart from the video: a pipe would lose the audio)
    and a .m3cv stream is read as it comes."""
    if src != "-":
        yield src
        return
    from m3cvcav.bitstream.containers import sniff

    head = sys.stdin.buffer.read(4)
    if sniff(head) != "matroska":
        yield io.BufferedReader(Prefixed(head, sys.stdin.buffer))
        return
    with tempfile.TemporaryDirectory(prefix="m3cvcav-stdin-") as folder:
        path = Path(folder) / "stdin.mkv"
        with open(path, "wb") as f:
            f.write(head)
            shutil.copyfileobj(sys.stdin.buffer, f)
        yield str(path)


class Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``rest``), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO):
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read1(len(buffer)) if hasattr(self._rest, "read1") else self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _transcode(src: Any, dst: str, codec: str | None, direction: str, values: dict[str, Any],
               stats_line: bool | None, progress_file: str | None, label: str | None = None) -> int:
    """Run the encode or decode with the progress line and ``-progress`` blocks, then log its summary."""
    from . import api
    from m3cvcav.filters.progress import Reporter, Stats

    reporter: Reporter | None = None

    def progress(stats: Stats) -> None:
        nonlocal reporter
        if reporter is None:
            reporter = Reporter(FFmpegKeys(stats), line=stats_line, progress=progress_file)
        reporter()

    if direction == ENCODE:
        result = api.encode(src, dst, progress=progress, **values)
        summary = f"{result.frames} frames, {result.segments} segments: {result.summary()}"
    else:
        result = api.decode(src, dst, codec=codec, progress=progress, **values)
        summary = (f"{result.frames} frames decoded from {result.segments} segments: {result.summary()}"
                   + (f", {result.corrupt} corrupt segment(s) concealed" if result.corrupt else ""))
    if reporter is not None:
        reporter(final=True)
    log.info("%s -> %s: %s", label or src, dst, summary)
    return 0


class FFmpegKeys:
    """The run's ``Stats`` with FFmpeg's ``-progress`` keys added (``out_time``, ``out_time_ms``, ``dup_frames``,
    ``drop_frames``), so scripts written for ffmpeg's progress blocks read ours."""

    def __init__(self, stats: Any):
        self._stats = stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stats, name)

    def pairs(self) -> dict[str, str]:
        pairs = self._stats.pairs()
        us = int(pairs.get("out_time_us", 0))
        clock = f"{us // 3_600_000_000:02d}:{us // 60_000_000 % 60:02d}:{us // 1_000_000 % 60:02d}.{us % 1_000_000:06d}"
        extra = {"out_time_ms": str(us), "out_time": clock, "dup_frames": "0", "drop_frames": "0"}  # ms = us in ffmpeg
        return {**pairs, **{k: v for k, v in extra.items() if k not in pairs}}


def _apply_to(values: dict[str, Any]) -> None:
    """-to TIME becomes -t (TIME - start); -t wins when both are given, as in FFmpeg."""
    end = values.pop("to", None)
    if end is None or "t" in values:
        return
    start = values.get("ss", 0.0)
    if end <= start:
        raise UsageError(f"-to {end:g} is not after -ss {start:g}: give an end time after the start")
    values["t"] = end - start


MAP_SPEC = re.compile(r"(-)?0(?::([va])(?::0)?)?(\?)?")


def _apply_maps(specs: list[str] | None, values: dict[str, Any]) -> None:
    """FFmpeg's -map for the streams this tool has: input 0's first video and first audio stream (and a
    -filter_complex output label). With -map, only what is mapped is kept: no audio map means no audio."""
    if not specs:
        return
    video = audio = False
    for spec in specs:
        if spec.startswith("[") and spec.endswith("]") and "filter_complex" in values:
            video = True
            continue
        found = MAP_SPEC.fullmatch(spec)
        if found is None:
            raise UsageError(f"-map {spec}: m3cvcav maps input 0's first video (0:v) and first audio (0:a) stream, "
                             "or a -filter_complex output ([label]); it has one input and no other streams")
        negative, kind, _ = found.groups()
        if kind in (None, "v"):
            video = not negative
        if kind in (None, "a"):
            audio = not negative
    if not video:
        raise UsageError("-map: the video must be mapped (add -map 0:v): m3cvcav codes video")
    if not audio:
        values["audio"] = False


def parse_tags(items: list[str]) -> dict[str, str]:
    """-metadata KEY=VALUE (repeated) as a dict; an empty VALUE drops KEY, as in FFmpeg."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-metadata {item!r}: give KEY=VALUE, e.g. -metadata title=\"My film\"")
        tags[key.strip()] = value
    return tags


def _remux(src: Any, dst: str, values: dict[str, Any], given: dict[str, str], label: str) -> int:
    """``-c copy``: an m3cvc stream into the other container (or the same), packets as they are."""
    from m3cvcav.bitstream.containers import is_stream
    from m3cvcav.core.atomic import check_output

    from .remux import remux

    if isinstance(src, str) and not is_stream(src):
        raise UsageError(f"-c copy: {src} is not an m3cvc stream, so m3cvcav has nothing to copy: ffmpeg -c copy "
                         "remuxes other videos; -c m3cvc encodes it")
    allowed = {"format", "overwrite", "audio", "tags", "audio_codec"}
    extra = [given[name] for name in values if name not in allowed]
    if extra or values.get("audio_codec") not in (None, "copy"):
        flags = " ".join(extra) or f"-c:a {values['audio_codec']}"
        raise UsageError(f"{flags} with -c copy: nothing is decoded, so nothing can be cut, filtered or re-encoded; "
                         "drop -c copy to decode, or the options to copy")
    fmt = values.get("format")
    if dst != "-" and fmt != "null":
        from .api import check_stream_container

        if fmt is None and Path(dst).suffix.lower() not in STREAM_SUFFIXES:
            raise UsageError(f"-c copy keeps the m3cvc stream, which is written as .mkv or .m3cv: rename {dst} (or "
                             f"give -f mkv|m3cv); to decode into {dst}, drop -c copy")
        check_stream_container(dst, fmt, "-f mkv|m3cv")
        check_output(dst, values.get("overwrite"))
    target: Any = dst
    if fmt == "null":
        from m3cvcav.bitstream.containers import PipeSink

        target, fmt = PipeSink(keep=False), "mkv"
    elif dst == "-":
        target, fmt = sys.stdout.buffer, fmt or "m3cv"
    result = remux(src, target, format=fmt, audio=values.get("audio", True), tags=values.get("tags"))
    log.info("%s -> %s: %d frames, %d segments copied: %s", label, dst, result.frames, result.segments,
             result.summary())
    return 0


def _encoding(src: str, dst: str, codec: str | None, fmt: str | None) -> bool:
    """Encode when asked for m3cvc or writing .m3cv; decode when the input is an m3cvc stream."""
    from m3cvcav.bitstream.containers import is_stream

    if codec in M3CVC_CODECS or Path(dst).suffix.lower() == ".m3cv" or fmt == "m3cv":
        return True
    if src == "-":  # a pipe cannot be sniffed: an m3cvc container output means encode, anything else decode
        return Path(dst).suffix.lower() == ".mkv"
    if os.path.isfile(src):
        if is_stream(src):
            return False
        if not _plays_as_video(src):
            raise _unreadable(src)
    # a video FFmpeg reads (a file, an image sequence or a URL)
    if Path(dst).suffix.lower() == ".mkv" and codec is None:
        return True
    raise UsageError(f"{src} is not an m3cvc stream: add -c m3cvc to encode it (decoding needs an .m3cv/.mkv made "
                     "by m3cvcav)")


def _unreadable(src: str) -> Exception:
    """The error for a file that is neither an m3cvc stream nor a video FFmpeg decodes: damaged when it looks like a
    stream (its magic, nearly, or the m3cvc FourCC near the start), else not a video."""
    from m3cvcav.bitstream.containers import EBML_MAGIC, open_reader, sniff
    from m3cvcav.core.errors import BitstreamError, M3cvError
    from m3cvcav.filters.demux import matroska_cut_short

    with open(src, "rb") as f:
        head = f.read(4096)
    near = {name: sum(bin(a ^ b).count("1") for a, b in zip(head[:4], magic)) <= 2
            for name, magic in (("Matroska", EBML_MAGIC), (".m3cv", b"M3CV"))}
    kind = next((name for name, close in near.items() if close), "Matroska" if b"M3CV" in head else None)
    if kind is None:
        return InputError(f"cannot read {src}: it is neither an m3cvc stream nor a video FFmpeg decodes (is it a "
                          "media file?)")
    cut = matroska_cut_short(src) if kind == "Matroska" else None
    if cut is not None:
        return BitstreamError(f"{src} holds no video data: it ends at byte {cut[0]} of the {cut[1]} its Matroska "
                              "header declares (truncated?)")
    if sniff(head) is None:
        reason = f"its first bytes ({head[:4].hex()}) are not the {kind} magic"
    else:
        try:
            open_reader(src).close()
            reason = "its video track cannot be read"
        except M3cvError as err:
            reason = str(err)
    return BitstreamError(f"{src} looks like an m3cvc stream ({kind}) but is damaged and cannot be read: {reason}")


def _plays_as_video(src: str) -> bool:
    """True when FFmpeg decodes a video frame of ``src`` (a real video, not an m3cvc track)."""
    import av

    try:
        with av.open(src, metadata_errors="replace") as container:
            if not container.streams.video or container.streams.video[0].codec_context.codec is None:
                return False
            return next(container.decode(video=0), None) is not None
    except (av.error.FFmpegError, ValueError, OSError, StopIteration, AttributeError, TypeError):
        return False
