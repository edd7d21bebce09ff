"""The options of an encode or a decode, declared once: the command line's flags and usage (``cli_transcode``), the
API's keyword checks (``api``) and the option list of docs/cli.md are all generated from ``OPTIONS``, as FFmpeg's
``-h`` reads its option tables. Graph nodes declare theirs in their own ``OPTIONS`` (``-h filter=NAME``)."""
from __future__ import annotations

import argparse
from typing import Any

from m3cvcav.bitstream.units import MODES
from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import LEVELS
from m3cvcav.engines.interfaces import BACKENDS
from m3cvcav.filters.options import Option

ENCODE, DECODE = "encode", "decode"
BITRATE_HINT = "give a positive number of bits per second, e.g. 20k"

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
    Option("ss", float, 0.0, "start at this time (audio too)", range=(0, 1e9), flags=("-ss",), metavar="SEC",
           hint="give a start time of 0 or more seconds"),
    Option("t", float, None, "stop after this duration (audio too)", range=(1e-6, 1e9), flags=("-t",),
           metavar="SEC", hint="give a positive duration in seconds (leave it out to read to the end)"),
    Option("frames", int, 0, "stop after N frames (audio too)", range=(0, 1 << 40), flags=("-frames:v", "-vframes"),
           metavar="N", hint="give a positive number of frames"),
    Option("size", str, None, "scale to this size", flags=("-s",), metavar="WxH"),
    Option("rate", str, None, "frame rate", flags=("-r",), metavar="FPS"),
    Option("bitrate", float, None, "encode: video bitrate target (rate control); decode: the output encoder's "
           "bitrate", range=(1, 1e12), flags=("-b:v", "-b"), metavar="RATE", hint=BITRATE_HINT),
    Option("q", int, None, "a fixed quality level 0..15 (default 4) instead of -b:v", range=(0, 15),
           flags=("-q", "-q:v"), metavar="N", use=ENCODE, hint="give a quality level from 0 to 15"),
    Option("crf", float, None, "the output encoder's CRF", flags=("-crf",), metavar="N", use=DECODE),
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
    Option("profile", str, None, "codec profile: lite (default, CPU) or m3cvc (diffusion models, GPU); a decode "
           "uses the stream's", flags=("-profile",), metavar="NAME"),
    Option("engine", str, "auto", "where the networks run (auto: the best present)", choices=BACKENDS,
           flags=("-engine",), metavar="NAME"),
    Option("mode", str, "it2v", "it2v (keyframe tokens + text) or tt2v (text only; needs -profile m3cvc)",
           choices=MODES, flags=("-mode",), metavar="MODE", hint="give it2v (keyframe tokens + text) or "
           "tt2v (text only)"),
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
    Option("loglevel", str, "info", "|".join(LEVELS), choices=tuple(LEVELS), flags=("-loglevel", "-v"),
           metavar="LEVEL", api=False),
    Option("hide_banner", bool, False, "accepted for FFmpeg compatibility", flags=("-hide_banner",), switch=True,
           api=False),
)
BY_FLAG: dict[str, Option] = {flag: option for option in OPTIONS for flag in option.flags}
BY_NAME: dict[str, Option] = {}
for _option in OPTIONS:
    BY_NAME.setdefault(_option.name, _option)


def check(direction: str, **given: Any) -> dict[str, Any]:
    """The API's keywords checked and converted by their options (None: not given, left as is); an option of the
    other direction is a UsageError."""
    out = {}
    for name, value in given.items():
        option = BY_NAME[name]
        if option.use and option.use != direction and value is not None:
            raise UsageError(wrong_direction(option, direction))
        out[name] = value if value is None else option.parse(value)
    return out


def wrong_direction(option: Option, direction: str) -> str:
    """The message for an option of the other direction (``-crf`` in an encode, ``-q`` in a decode)."""
    this = "an encode" if option.use == ENCODE else "a decode"
    return f"{option.flags[0]} is an option of {this} ({option.help}): drop it from this {direction}"


def usage_lines() -> list[str]:
    """One help line per option: its flags, value name and help (``-h``)."""
    lines, seen = [], set()
    for option in OPTIONS:
        key = (option.name, option.switch)
        if key in seen:
            continue
        seen.add(key)
        flags = ", ".join(option.flags)
        text = f"{option.use}: {option.help}" if option.use else option.help
        if option.choices and not all(choice in option.help for choice in option.choices):
            text += f": {'|'.join(option.choices)}"
        lines.append(f"  {(flags + ' ' + option.metavar).strip():<40} {text}")
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
