"""The FFmpeg-like main command: ``python -m m3cvcav [options] -i INPUT [options] OUTPUT``.

Encodes when the output codec is m3cvc (``-c m3cvc``, or an ``.m3cv``/``.mkv`` output of a plain video), decodes when the
input is an m3cvc stream (to any format PyAV writes, ``-f yuv4mpegpipe -`` for a pipe).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m3cvcav.bitstream.containers import check_container
from m3cvcav.core.errors import OutputError, UsageError
from m3cvcav.core.log import get_logger

from .options import BY_FLAG, DECODE, ENCODE, usage_lines, wrong_direction

log = get_logger(__name__)

USAGE = """usage: python -m m3cvcav [options] -i INPUT [options] OUTPUT
       python -m m3cvcav probe|edit|play|engines|train|bench ...   (each takes -h)
       python -m m3cvcav -h filter=NAME   (a graph node's options, or where an FFmpeg filter's are)
encode:  python -m m3cvcav -i in.mp4 -c m3cvc [-b:v 20k | -q N] [-mode it2v|tt2v] [-vf ...] out.mkv|out.m3cv
decode:  python -m m3cvcav -i out.mkv [-mode it2v|tt2v] [-c:v libx264 -crf 20 -preset fast -pix_fmt yuv420p] back.mp4
pipe:    python -m m3cvcav -i out.mkv -f yuv4mpegpipe - | ffplay -
"""

def usage() -> str:
    """-h: the usage above, every option of the one table (``m3cvcav.options``), and the graph nodes from theirs."""
    from m3cvcav.filters import pipeline
    from m3cvcav.filters.node import REGISTRY

    lines = [USAGE.rstrip("\n"), "options:", *usage_lines(), f"  {'-version':<40} print the version",
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
        return REGISTRY[name].help() + "\n"
    if name in av.filter.filters_available:
        return (f"{name}: FFmpeg filter: {av.filter.Filter(name).description}\n"
                f"  its options: ffmpeg -h filter={name} (m3cvcav runs it through PyAV's libavfilter)\n")
    nodes = ", ".join(sorted(REGISTRY))
    raise UsageError(f"-h filter={name}: no such filter; nodes: {nodes}; FFmpeg filters: those of PyAV's libavfilter "
                     "(av.filter.filters_available)")


M3CVC_CODECS = ("m3cvc", "m3cv")


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
            args.values[option.name] = option.parse(value)
            args.given[option.name] = arg
            continue
        if arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}; valid options: {' '.join(BY_FLAG)}")
        if args.output is not None:
            raise UsageError(f"more than one output ({args.output}, {arg}): m3cvcav writes one output")
        args.output = arg
        i += 1
    return args


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        if len(argv) == 2 and argv[1].startswith("filter="):
            print(filter_help(argv[1].split("=", 1)[1]), end="")
            return 0
        if len(argv) > 1:
            raise UsageError(f"-h {' '.join(argv[1:])}: use -h alone or -h filter=NAME")
        print(usage(), end="")
        return 0 if argv else 2
    args = parse_args(argv)
    if len(args.inputs) != 1:
        raise UsageError("give exactly one input with -i (e.g. -i in.mp4)")
    if args.output is None:
        raise UsageError("no output file given: add one after the options (e.g. out.mkv, or - with -f)")
    from m3cvcav import api
    from m3cvcav.core.atomic import check_output
    from m3cvcav.filters.progress import Reporter, Stats

    values = dict(args.values)
    src, dst = args.inputs[0], args.output
    codec = values.pop("codec", None)
    values.pop("loglevel", None)  # set by __main__ before anything runs
    values.pop("hide_banner", None)
    stats_line, progress_file = values.pop("stats", None), values.pop("progress_file", None)
    if progress_file not in (None, "pipe:1", "-") and not Path(progress_file).resolve().parent.is_dir():
        raise OutputError(f"-progress {progress_file}: its folder does not exist; create it or write to pipe:1")
    reporter: Reporter | None = None

    def progress(stats: Stats) -> None:
        nonlocal reporter
        if reporter is None:
            reporter = Reporter(stats, line=stats_line, progress=progress_file)
        reporter()

    direction = ENCODE if _encoding(src, dst, codec, values.get("format")) else DECODE
    for name, flag in args.given.items():
        if BY_FLAG[flag].use not in ("", direction):
            raise UsageError(wrong_direction(BY_FLAG[flag], direction))
    if "workers" not in values and "cluster" not in values and \
            any(name in values for name in ("resume", "chunk_min", "chunk_max")):
        raise UsageError("-resume/-chunk_min/-chunk_max apply to chunked jobs: add -workers N or -cluster local")
    if dst != "-":
        if direction == ENCODE:
            check_container(dst, values.get("format"), "-f mkv|m3cv")
        check_output(dst, values.get("overwrite"))
    if direction == ENCODE:
        result = api.encode(src, dst, progress=progress, **values)
        summary = f"{result.frames} frames, {result.segments} segments: {result.summary()}"
    else:
        result = api.decode(src, dst, codec=codec, progress=progress, **values)
        summary = (f"{result.frames} frames decoded from {result.segments} segments: {result.summary()}"
                   + (f", {result.corrupt} corrupt segment(s) concealed" if result.corrupt else ""))
    if reporter is not None:
        reporter(final=True)
    log.info("%s -> %s: %s", src, dst, summary)
    return 0


def _encoding(src: str, dst: str, codec: str | None, fmt: str | None) -> bool:
    """Encode when asked for m3cvc or writing .m3cv; decode when the input is an m3cvc stream."""
    from m3cvcav.bitstream.containers import is_stream

    if codec in M3CVC_CODECS or Path(dst).suffix.lower() == ".m3cv" or fmt == "m3cv":
        return True
    if src == "-":  # a pipe cannot be sniffed: an m3cvc container output means encode, anything else decode
        return Path(dst).suffix.lower() == ".mkv"
    if not os.path.exists(src):
        return True  # the encoder's source reports the missing input
    if is_stream(src):
        return False
    if Path(dst).suffix.lower() == ".mkv" and codec is None:
        return True
    raise UsageError(f"{src} is not an m3cvc stream: add -c m3cvc to encode it (decoding needs an .m3cv/.mkv made "
                     "by m3cvcav)")
