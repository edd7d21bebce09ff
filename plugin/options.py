"""The options of an encode or a decode, declared once: the command line's flags and usage (``cli_transcode``), the
API's keyword checks (``api``) and the option list of docs/cli.md are all generated from ``OPTIONS``, as FFmpeg's
``-h`` reads its option tables. Graph nodes declare theirs in their own ``OPTIONS`` (``-h filter=NAME``)."""
from __future__ import annotations

import argparse
import re
import shutil
import textwrap
from dataclasses import dataclass
from typing import Any

from m3cvcav.bitstream.units import MODES
from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import LEVELS
from m3cvcav.engines.interfaces import BACKENDS
from m3cvcav.filters.options import Option

ENCODE, DECODE = "encode", "decode"
BITRATE_HINT = "give a positive number of bits per second, e.g. 20k"
TIME_SYNTAX = "seconds (1.5, 500ms, 250us) or [HH:]MM:SS[.frac]"
CRF_MAX = 63  # libvpx, libaom, SVT-AV1; libx264/libx265 stop at 51 (the sink checks those)
# FFmpeg's -loglevel numbers (libavutil/log.h) -> its names
LEVEL_NUMBERS = {-8: "quiet", 0: "panic", 8: "fatal", 16: "error", 24: "warning", 32: "info", 40: "verbose",
                 48: "debug", 56: "trace"}
_CLOCK = re.compile(r"(-)?(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")
_SECONDS = re.compile(r"(-)?(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?")


def parse_time(text: str) -> float:
    """Seconds from FFmpeg's time duration syntax: ``[-][HH:]MM:SS[.m...]`` or ``[-]S+[.m...][s|ms|us]``
    (ffmpeg-utils(1), "Time duration"); ValueError for anything else."""
    text = text.strip()
    clock = _CLOCK.fullmatch(text)
    if clock:
        sign, hours, minutes, seconds = clock.groups()
        if int(minutes) > 59 or float(seconds) >= 60:
            raise ValueError(f"{text!r} has minutes or seconds over 59")
        value = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        return -value if sign else value
    plain = _SECONDS.fullmatch(text)
    if plain:
        sign, number, unit = plain.groups()
        value = float(number) * {"s": 1.0, None: 1.0, "ms": 1e-3, "us": 1e-6}[unit]
        return -value if sign else value
    raise ValueError(f"{text!r} is not a time")


def loglevel_name(text: str) -> str:
    """FFmpeg's -loglevel value as one of ``core.log.LEVELS``: a name, or a number (``-v 40`` is verbose: the
    highest level at or below it), with FFmpeg's ``repeat+``/``level+`` flags dropped (they change nothing here)."""
    value = str(text).strip().split("+")[-1]
    try:
        number = int(value)
    except ValueError:
        return value
    return LEVEL_NUMBERS[max((n for n in LEVEL_NUMBERS if n <= number), default=-8)]


@dataclass(frozen=True)
class TimeOption(Option):
    """A time: a number of seconds (the API), or FFmpeg's time syntax (:func:`parse_time`)."""

    def _parse(self, value: Any) -> Any:
        return super()._parse(parse_time(value) if isinstance(value, str) else value)


@dataclass(frozen=True)
class LevelOption(Option):
    """-loglevel: a name or one of FFmpeg's numbers (:func:`loglevel_name`)."""

    def _parse(self, value: Any) -> Any:
        return super()._parse(loglevel_name(value))

OPTIONS: tuple[Option, ...] = (
    Option("input", str, None, "input: a video (encode) or an m3cvc .mkv/.m3cv (decode); - for stdin",
           flags=("-i",), metavar="IN", api=False),
    Option("codec", str, None, "video codec: m3cvc to encode; the output encoder of a decode (libx264, ...)",
           flags=("-c", "-c:v", "-codec", "-codec:v", "-vcodec"), metavar="CODEC"),
    Option("format", str, None, "output format (m3cv|mkv to encode; any PyAV muxer to decode, e.g. yuv4mpegpipe)",
           flags=("-f",), metavar="FORMAT"),
    Option("vf", str, None, "filter chain: FFmpeg filters, then the graph nodes below", flags=("-vf", "-filter:v"),
           metavar="GRAPH"),
    Option("filter_complex", str, None, "filter graph with [labels] (one video in, one out)",
           flags=("-filter_complex",), metavar="GRAPH"),
    TimeOption("ss", float, 0.0, "start at this time (audio too)", range=(0, 1e9), flags=("-ss",),
               metavar="TIME", hint=f"give a start time of 0 or more: {TIME_SYNTAX}"),
    TimeOption("t", float, None, "stop after this duration (audio too)", range=(1e-6, 1e9), flags=("-t",),
               metavar="TIME", hint=f"give a positive duration: {TIME_SYNTAX} (leave it out to read to the end)"),
    TimeOption("to", float, None, "stop at this time (audio too; -t wins when both are given, as in FFmpeg)",
               range=(1e-6, 1e9), flags=("-to",), metavar="TIME", api=False,
               hint=f"give a positive end time: {TIME_SYNTAX}"),
    Option("frames", int, 0, "stop after N frames (audio too)", range=(0, 1 << 40), flags=("-frames:v", "-vframes"),
           metavar="N", hint="give a positive number of frames"),
    Option("size", str, None, "scale to this size", flags=("-s",), metavar="WxH"),
    Option("rate", str, None, "frame rate", flags=("-r",), metavar="FPS"),
    Option("bitrate", float, None, "encode: video bitrate target (rate control); decode: the output encoder's "
           "bitrate", range=(1, 1e12), flags=("-b:v", "-b"), metavar="RATE", hint=BITRATE_HINT),
    Option("q", int, None, "a fixed quality level 0..15 (default 4) instead of -b:v", range=(0, 15),
           flags=("-q", "-q:v"), metavar="N", use=ENCODE, hint="give a quality level from 0 to 15"),
    Option("crf", float, None, "the output encoder's CRF", range=(0, CRF_MAX), flags=("-crf",), metavar="N",
           use=DECODE, hint=f"give a CRF from 0 to {CRF_MAX} (libx264 and libx265: 0 to 51)"),
    Option("preset", str, None, "the output encoder's preset", flags=("-preset",), metavar="P", use=DECODE),
    Option("pix_fmt", str, None, "the output pixel format", flags=("-pix_fmt",), metavar="F", use=DECODE),
    Option("audio_codec", str, None, "audio: copy or an encoder (libopus, aac, flac, ...); encode default libopus 24k",
           flags=("-c:a", "-acodec", "-codec:a"), metavar="CODEC"),
    Option("audio_bitrate", float, None, "audio bitrate (encode default 24k: the video takes a few kbit/s)",
           range=(1, 1e9), flags=("-b:a", "-ab"), metavar="RATE", hint=BITRATE_HINT),
    Option("channels", int, None, "audio channels (encode default: at most 2)", range=(1, 64), flags=("-ac",),
           metavar="N"),
    Option("sample_rate", int, None, "audio sample rate", range=(1, 10 ** 6), flags=("-ar",), metavar="HZ"),
    Option("audio", bool, True, "no audio", flags=("-an",), switch=False),
    Option("map", str, None, "streams to keep: 0 (all), 0:v, 0:a, 0:a? (repeatable; -map -0:a drops the audio)",
           flags=("-map",), metavar="SPEC", api=False),
    Option("tags", str, None, "a global tag of the output, KEY=VALUE (repeatable; an empty VALUE drops KEY)",
           flags=("-metadata",), metavar="KEY=VALUE"),
    Option("fps", float, 25.0, "frame rate of an image sequence input (f_%04d.png; default 25) and of the "
           "API's arrays", range=(1e-3, 1000), flags=("-framerate",), metavar="FPS", use=ENCODE,
           hint="give a positive frame rate, e.g. 25 or 30000/1001 as 29.97"),
    Option("profile", str, None, "codec profile: lite (default, CPU) or m3cvc (diffusion models, GPU); a decode "
           "uses the stream's", flags=("-profile",), metavar="NAME"),
    Option("engine", str, "auto", "where the networks run (auto: the best present)", choices=BACKENDS,
           flags=("-engine",), metavar="NAME"),
    Option("mode", str, "it2v", "it2v (pictures + text) or tt2v (text only; needs -profile m3cvc)",
           choices=MODES, flags=("-mode",), metavar="MODE", hint="give it2v (pictures + text) or "
           "tt2v (text only)"),
    Option("enhance", str, "auto", "the decoder's enhancement of the base: auto (the variant the encoder chose for "
           "each segment) or none (bicubic upscale)", choices=("auto", "none"), flags=("-enhance",), metavar="E",
           use=DECODE),
    Option("offload", bool, False, "m3cvc: models go to the GPU only while they run (less GPU memory, slower)",
           flags=("-offload",), switch=True),
    Option("workers", int, None, "encode/decode in chunks on N worker processes (0: one per core; docs/parallel.md)",
           range=(0, 4096), flags=("-workers",), metavar="N"),
    Option("cluster", str, None, "chunks on local|auto|ray://HOST:PORT", flags=("-cluster",), metavar="URL"),
    Option("resume", str, None, "keep finished chunks in DIR; rerun to continue", flags=("-resume",),
           metavar="DIR", use=ENCODE),
    Option("chunk_min", int, 0, "shortest chunk in frames (with -workers/-cluster)", range=(0, 1 << 31),
           flags=("-chunk_min",), metavar="N", use=ENCODE),
    Option("chunk_max", int, 0, "longest chunk in frames (with -workers/-cluster)", range=(0, 1 << 31),
           flags=("-chunk_max",), metavar="N"),
    Option("overwrite", bool, None, "overwrite the output", flags=("-y",), switch=True),
    Option("overwrite", bool, None, "never overwrite the output", flags=("-n",), switch=False),
    Option("stats", bool, None, "print the progress line (default on a terminal)", flags=("-stats",), switch=True,
           api=False),
    Option("stats", bool, None, "no progress line", flags=("-nostats",), switch=False, api=False),
    Option("progress_file", str, None, "FFmpeg -progress key=value blocks to FILE or pipe:1", flags=("-progress",),
           metavar="FILE", api=False),
    LevelOption("loglevel", str, "info", "|".join(LEVELS) + " or FFmpeg's numbers (-v 40: verbose)",
                choices=tuple(LEVELS), flags=("-loglevel", "-v"), metavar="LEVEL", api=False),
    Option("hide_banner", bool, False, "accepted for FFmpeg compatibility", flags=("-hide_banner",), switch=True,
           api=False),
    Option("nostdin", bool, False, "accepted for FFmpeg compatibility (stdin is read only for -i -)",
           flags=("-nostdin",), switch=True, api=False),
    Option("subtitles", bool, False, "accepted for FFmpeg compatibility: an input's subtitle streams are never "
           "copied (an encoded .mkv carries the stream's own descriptions)", flags=("-sn",), switch=True, api=False),
)
REPEATABLE = ("map", "tags")  # options that may be given several times: their values are collected in a list

# FFmpeg options this tool does not take, each with the reason and the nearest equivalent (docs/cli.md, "Coming from
# FFmpeg"): the parser answers them with this line instead of "unknown option".
ABSENT: dict[str, str] = {
    "-vn": "m3cvcav codes video and cannot drop it; for the audio alone use ffmpeg -i IN -vn -c:a copy OUT",
    "-dn": "m3cvcav writes no data streams; nothing to drop",
    "-af": "audio filters are not run: the audio is copied or re-encoded (-c:a, -b:a, -ac, -ar)",
    "-filter:a": "audio filters are not run: the audio is copied or re-encoded (-c:a, -b:a, -ac, -ar)",
    "-c:s": "subtitles are the stream's own descriptions (written by the encoder; probe shows them)",
    "-scodec": "subtitles are the stream's own descriptions (written by the encoder; probe shows them)",
    "-g": "segments start at scene changes: -vf select=threshold:max=N caps a segment at N frames",
    "-keyint_min": "segments start at scene changes: -vf select=threshold tunes where",
    "-bf": "m3cvc has no B-frames to set",
    "-maxrate": "rate control aims at the average rate: -b:v (or a fixed level: -q)",
    "-minrate": "rate control aims at the average rate: -b:v (or a fixed level: -q)",
    "-bufsize": "rate control aims at the average rate: -b:v (or a fixed level: -q)",
    "-pass": "rate control needs one pass: -b:v",
    "-tune": "the nearest is the quality level -q 0..15 (or -b:v)",
    "-threads": "parallel work is chunked: -workers N (docs/parallel.md)",
    "-hwaccel": "where the networks run is -engine auto|tensorrt|onnxruntime|torch",
    "-sseof": "give the start from the beginning: -ss TIME",
}
ABSENT_PREFIXES = {"-metadata:": "only global tags are written: -metadata KEY=VALUE"}


def absent(flag: str) -> str | None:
    """Why an FFmpeg option ``flag`` is not taken here and what is nearest, or None when it is unknown to us too."""
    if flag in ABSENT:
        return ABSENT[flag]
    return next((why for prefix, why in ABSENT_PREFIXES.items() if flag.startswith(prefix)), None)
BY_FLAG: dict[str, Option] = {flag: option for option in OPTIONS for flag in option.flags}
BY_NAME: dict[str, Option] = {}
for _option in OPTIONS:
    BY_NAME.setdefault(_option.name, _option)


def check(direction: str, **given: Any) -> dict[str, Any]:
    """The API's keywords checked and converted by their options (None: not given, left as is); a bad value is a
    UsageError in the API's words (``q=16: give a quality level from 0 to 15``), an option of the other direction
    one too."""
    out = {}
    for name, value in given.items():
        option = BY_NAME[name]
        if option.use and option.use != direction and value is not None:
            raise UsageError(wrong_direction(option, direction))
        out[name] = value if value is None else api_value(option, value)
    return out


def api_value(option: Option, value: Any) -> Any:
    """``value`` converted and checked by ``option``; a bad one is a UsageError naming the API keyword."""
    try:
        return option._parse(value)
    except ValueError as err:
        raise UsageError(f"{option.name}={value!r}: {option.hint or err}") from None


def wrong_direction(option: Option, direction: str) -> str:
    """The message for an option of the other direction (``-crf`` in an encode, ``-q`` in a decode)."""
    this = "an encode" if option.use == ENCODE else "a decode"
    return f"{option.flags[0]} is an option of {this} ({option.help}): drop it from this {direction}"


HELP_COLUMN = 42  # where the help text of an option starts in -h


def help_width() -> int:
    """Columns of the -h pages: the terminal's (or $COLUMNS), within 80..120."""
    return min(max(shutil.get_terminal_size((100, 24)).columns, 80), 120)


def help_entry(name: str, text: str, width: int | None = None) -> list[str]:
    """``name`` and its ``text`` as -h lines: the text wrapped in its column (below a name too long for its own)."""
    width = width or help_width()
    body = textwrap.wrap(text, width - HELP_COLUMN, break_on_hyphens=False) or [""]
    indent = " " * HELP_COLUMN
    head = f"  {name}"
    if len(head) > HELP_COLUMN - 1:
        return [head] + [indent + line for line in body]
    return [f"{head:<{HELP_COLUMN}}{body[0]}"] + [indent + line for line in body[1:]]


def description(doc: str) -> str:
    """A module docstring as a command's -h description: its first paragraph, without the command line it opens
    with (``python -m m3cvcav NAME ...``: the usage line shows that) and without reStructuredText's backticks."""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    text = re.sub(r"^``[^`]*``:\s*", "", text).replace("``", "").replace("`", "")
    return text[:1].upper() + text[1:] if not text[1:2].isupper() else text  # rANS stays rANS


def usage_lines(direction: str | None = None) -> list[str]:
    """The help of each option: its flags, value name and help, wrapped to the terminal (``-h``); with
    ``direction`` (encode or decode), only the options that apply to it (``-h encoder=m3cvc``)."""
    lines, seen = [], set()
    for option in OPTIONS:
        key = (option.name, option.switch)
        if key in seen or (direction and option.use not in ("", direction)):
            continue
        seen.add(key)
        flags = ", ".join(option.flags)
        text = f"{option.use}: {option.help}" if option.use else option.help
        if option.choices and not all(choice in option.help for choice in option.choices):
            text += f": {'|'.join(option.choices)}"
        lines += help_entry((flags + " " + option.metavar).strip(), text)
    return lines


def markdown() -> str:
    """The option table of docs/cli.md."""
    rows = ["| option | API keyword | applies to | what it does |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        flags = ", ".join(f"`{f}{' ' + option.metavar if option.metavar else ''}`" for f in option.flags)
        keyword = f"`{option.name}={option.switch!r}`" if option.switch is not None and option.api else \
            f"`{option.name}`" if option.api else "(command line only)"
        extra = f" (one of {', '.join(option.choices)})" if option.choices and option.name != "loglevel" else ""
        rows.append(f"| {flags} | {keyword} | {option.use or 'both'} | {option.help}{extra} |")
    return "\n".join(rows) + "\n"


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the subcommands (probe, edit, engines, train): a bad argument is a one-line UsageError (exit 2)
    that points at the subcommand's help, not argparse's exit."""

    def error(self, message: str):
        name = self.prog.split("m3cvcav", 1)[-1].strip() or self.prog
        raise UsageError(f"{name}: {message} (see {self.prog} -h)")
