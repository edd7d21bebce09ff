"""The FFmpeg-like main command: ``python -m m3cvcav [options] -i INPUT [options] OUTPUT``.

Encodes when the output codec is m3cvc (``-c m3cvc``, or an ``.m3cv``/``.mkv`` output of a plain video), decodes when the
input is an m3cvc stream (to any format PyAV writes, ``-f yuv4mpegpipe -`` for a pipe).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from m3cvcav.bitstream.containers import CONTAINERS
from m3cvcav.core.errors import UsageError
from m3cvcav.filters.options import parse_number

USAGE = """usage: python -m m3cvcav [options] -i INPUT [options] OUTPUT
       python -m m3cvcav probe|edit|play|engines|train|bench ...   (each takes -h)
       python -m m3cvcav -h filter=NAME   (a graph node's options, or where an FFmpeg filter's are)
encode:  python -m m3cvcav -i in.mp4 -c m3cvc [-b:v 20k | -q N] [-mode it2v|tt2v] [-vf ...] out.mkv|out.m3cv
decode:  python -m m3cvcav -i out.mkv [-mode it2v|tt2v] [-c:v libx264 -crf 20 -preset fast -pix_fmt yuv420p] back.mp4
pipe:    python -m m3cvcav -i out.mkv -f yuv4mpegpipe - | ffplay -
"""

# field -> (value name, help) of the options below, in the order --help lists them
OPTION_HELP: dict[str, tuple[str, str]] = {
    "inputs": ("IN", "input: a video (encode) or an m3cvc .mkv/.m3cv (decode); - for stdin"),
    "codec": ("CODEC", "video codec: m3cvc to encode; the output encoder of a decode (libx264, ...)"),
    "format": ("FORMAT", "output format (m3cv|mkv to encode; any PyAV muxer to decode, e.g. yuv4mpegpipe)"),
    "vf": ("GRAPH", "filter chain: FFmpeg filters, then the graph nodes below"),
    "filter_complex": ("GRAPH", "filter graph with [labels] (one video in, one out)"),
    "ss": ("SEC", "start at this time (audio too)"),
    "t": ("SEC", "stop after this duration (audio too)"),
    "frames": ("N", "stop after N frames (audio too)"),
    "size": ("WxH", "scale to this size"),
    "rate": ("FPS", "frame rate"),
    "bitrate": ("RATE", "encode: video bitrate target (rate control); decode: the output encoder's bitrate"),
    "q": ("N", "encode: a fixed quality level 0..15 (default 4) instead of -b:v"),
    "crf": ("N", "decode: the output encoder's CRF"),
    "preset": ("P", "decode: the output encoder's preset"),
    "pix_fmt": ("F", "decode: the output pixel format"),
    "audio_codec": ("CODEC", "audio: copy or an encoder (libopus, aac, flac, ...); encode default libopus 24k"),
    "audio_bitrate": ("RATE", "audio bitrate (encode default 24k: the video takes a few kbit/s)"),
    "channels": ("N", "audio channels (encode default: at most 2)"),
    "sample_rate": ("HZ", "audio sample rate"),
    "no_audio": ("", "no audio"),
    "profile": ("NAME", "codec profile: lite (default, CPU) or m3cvc (diffusion models, GPU)"),
    "engine": ("NAME", "backend: auto|torch|onnxruntime|tensorrt"),
    "mode": ("MODE", "it2v (keyframe tokens + text) or tt2v (text only; needs -profile m3cvc)"),
    "offload": ("", "m3cvc: models go to the GPU only while they run (less GPU memory, slower)"),
    "workers": ("N", "encode/decode in chunks on N worker processes (0: one per core; docs/parallel.md)"),
    "cluster": ("URL", "chunks on local|auto|ray://HOST:PORT"),
    "resume": ("DIR", "encode: keep finished chunks in DIR; rerun to continue"),
    "chunk_min": ("N", "shortest chunk in frames"),
    "chunk_max": ("N", "longest chunk in frames"),
    "overwrite": ("", "overwrite the output"),
    "no_overwrite": ("", "never overwrite the output"),
    "stats": ("", "print the progress line (default on a terminal)"),
    "nostats": ("", "no progress line"),
    "progress": ("FILE", "FFmpeg -progress key=value blocks to FILE or pipe:1"),
    "loglevel": ("LEVEL", "quiet|panic|fatal|error|warning|info|verbose|debug"),
    "hide_banner": ("", "accepted for FFmpeg compatibility"),
}


def usage() -> str:
    """--help: the usage above, every option of OPTIONS with its help, and the graph nodes from their option tables."""
    from m3cvcav.filters import pipeline
    from m3cvcav.filters.node import REGISTRY

    names: dict[str, list[str]] = {}
    for flag, (name, _) in OPTIONS.items():
        names.setdefault(name, []).append(flag)
    lines = [USAGE.rstrip("\n"), "options:"]
    for name, (value, text) in OPTION_HELP.items():
        flags = ", ".join(names.get(name, []))
        lines.append(f"  {(flags + ' ' + value).strip():<40} {text}")
    lines += [f"  {'-version':<40} print the version", "graph nodes (in -vf/-filter_complex after "
              "FFmpeg filters; -h filter=NAME for each option's help):"]
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

    if name in REGISTRY and REGISTRY[name].OPTIONS is not None and name not in ("source",):
        return REGISTRY[name].help() + "\n"
    if name in av.filter.filters_available:
        return (f"{name}: FFmpeg filter: {av.filter.Filter(name).description}\n"
                f"  its options: ffmpeg -h filter={name} (m3cvcav runs it through PyAV's libavfilter)\n")
    nodes = ", ".join(sorted(n for n in REGISTRY if n != "source"))
    raise UsageError(f"-h filter={name}: no such filter; nodes: {nodes}; FFmpeg filters: those of PyAV's libavfilter "
                     "(av.filter.filters_available)")


# option -> (field, takes a value)
OPTIONS: dict[str, tuple[str, bool]] = {
    "-i": ("inputs", True),
    "-c": ("codec", True), "-c:v": ("codec", True), "-codec": ("codec", True), "-codec:v": ("codec", True),
    "-vcodec": ("codec", True),
    "-f": ("format", True),
    "-vf": ("vf", True), "-filter:v": ("vf", True), "-filter_complex": ("filter_complex", True),
    "-ss": ("ss", True), "-t": ("t", True), "-frames:v": ("frames", True), "-vframes": ("frames", True),
    "-s": ("size", True), "-r": ("rate", True),
    "-b:v": ("bitrate", True), "-b": ("bitrate", True), "-q": ("q", True), "-q:v": ("q", True),
    "-crf": ("crf", True), "-preset": ("preset", True), "-pix_fmt": ("pix_fmt", True),
    "-profile": ("profile", True), "-engine": ("engine", True), "-mode": ("mode", True),
    "-progress": ("progress", True), "-loglevel": ("loglevel", True), "-v": ("loglevel", True),
    "-workers": ("workers", True), "-cluster": ("cluster", True), "-resume": ("resume", True),
    "-chunk_min": ("chunk_min", True), "-chunk_max": ("chunk_max", True),
    "-c:a": ("audio_codec", True), "-acodec": ("audio_codec", True), "-codec:a": ("audio_codec", True),
    "-b:a": ("audio_bitrate", True), "-ab": ("audio_bitrate", True), "-ac": ("channels", True),
    "-ar": ("sample_rate", True),
    "-offload": ("offload", False), "-y": ("overwrite", False), "-n": ("no_overwrite", False), "-an": ("no_audio", False),
    "-stats": ("stats", False), "-nostats": ("nostats", False), "-hide_banner": ("hide_banner", False),
}
M3CVC_CODECS = ("m3cvc", "m3cv")


@dataclass
class Args:
    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def get(self, name: str, default=None):
        return self.values.get(name, default)

    def number(self, name: str, kind: type, default=None):
        if name not in self.values:
            return default
        try:
            return parse_number(self.values[name], kind)
        except ValueError:
            flag = next(k for k, (v, _) in OPTIONS.items() if v == name)
            raise UsageError(f"{flag} {self.values[name]!r}: expected a {kind.__name__}") from None


def parse_args(argv: list[str]) -> Args:
    """Parse FFmpeg-style arguments; an unknown option is a UsageError that lists the valid ones."""
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in OPTIONS:
            name, takes = OPTIONS[arg]
            if takes:
                if i + 1 >= len(argv):
                    raise UsageError(f"option {arg} needs a value (see python -m m3cvcav -h)")
                if name == "inputs":
                    args.inputs.append(argv[i + 1])
                else:
                    args.values[name] = argv[i + 1]
                i += 2
                continue
            args.flags.add(name)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}; valid options: {' '.join(OPTIONS)}")
        else:
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
    if "overwrite" in args.flags and "no_overwrite" in args.flags:
        raise UsageError("-y and -n contradict each other: give one")
    overwrite = True if "overwrite" in args.flags else False if "no_overwrite" in args.flags else None
    from m3cvcav import api
    from m3cvcav.filters.progress import Reporter, Stats
    from m3cvcav.filters.sink import check_output

    src, dst = args.inputs[0], args.output
    codec = args.get("codec")
    stats_line = False if "nostats" in args.flags else True if "stats" in args.flags else None
    reporter: Reporter | None = None

    def progress(stats: Stats) -> None:
        nonlocal reporter
        if reporter is None:
            reporter = Reporter(stats, line=stats_line, progress=args.get("progress"))
        reporter()

    common = dict(vf=args.get("vf"), filter_complex=args.get("filter_complex"), size=args.get("size"),
                  rate=args.get("rate"), engine=args.get("engine", "auto"), overwrite=overwrite,
                  format=args.get("format"), audio="no_audio" not in args.flags, progress=progress,
                  frames=args.number("frames", int, 0), mode=args.get("mode", "it2v"),
                  offload="offload" in args.flags, ss=args.number("ss", float, 0.0), t=args.number("t", float, None),
                  audio_codec=args.get("audio_codec"), audio_bitrate=args.get("audio_bitrate"),
                  channels=args.number("channels", int, None), sample_rate=args.number("sample_rate", int, None))
    if "workers" in args.values or "cluster" in args.values:  # chunked / run-parallel (docs/parallel.md)
        common.update(workers=args.number("workers", int, 0), cluster=args.get("cluster"),
                      chunk_max=args.number("chunk_max", int, 0))
    elif any(name in args.values for name in ("resume", "chunk_min", "chunk_max")):
        raise UsageError("-resume/-chunk_min/-chunk_max apply to chunked jobs: add -workers N or -cluster local")
    if _encoding(src, dst, codec, args.get("format")):
        for flag in ("crf", "preset", "pix_fmt"):
            if flag in args.values:
                raise UsageError(f"-{flag} sets the output encoder of a decode; m3cvc encodes take -b:v or -q")
        if dst != "-":
            if args.get("format") is None and Path(dst).suffix.lower() not in CONTAINERS:
                raise UsageError(f"output {dst}: m3cvc streams are written as .mkv (or .mka/.webm) or .m3cv; rename "
                                 "it or add -f mkv|m3cv")
            check_output(dst, overwrite)
        result = api.encode(src, dst, bitrate=args.get("bitrate"), q=args.number("q", int, None),
                            profile=args.get("profile", "lite"), **common,
                            **({"resume": args.get("resume"), "chunk_min": args.number("chunk_min", int, 0)}
                               if "workers" in common else {}))
        summary = f"{result.frames} frames, {result.segments} segments: {result.summary()}"
    else:
        if "q" in args.values:
            raise UsageError("-q picks the quality level of an encode; a decode's output encoder takes -crf or -b:v")
        if dst != "-":
            check_output(dst, overwrite)
        result = api.decode(src, dst, codec=codec, crf=args.number("crf", float, None), preset=args.get("preset"),
                            pix_fmt=args.get("pix_fmt"), bitrate=args.get("bitrate"), profile=args.get("profile"),
                            **common)
        summary = (f"{result.frames} frames decoded from {result.segments} segments: {result.summary()}"
                   + (f", {result.corrupt} corrupt segment(s) concealed" if result.corrupt else ""))
    if reporter is not None:
        reporter(final=True)
    from m3cvcav.core.log import get_logger

    get_logger("cli").info("%s -> %s: %s", src, dst, summary)
    return 0


def _encoding(src: str, dst: str, codec: str | None, fmt: str | None) -> bool:
    """Encode when asked for m3cvc or writing .m3cv; decode when the input is an m3cvc stream."""
    from m3cvcav.api import is_m3cvc

    if codec in M3CVC_CODECS or Path(dst).suffix.lower() == ".m3cv" or fmt == "m3cv":
        return True
    if src == "-":  # a pipe cannot be sniffed: an m3cvc container output means encode, anything else decode
        return Path(dst).suffix.lower() == ".mkv"
    if not os.path.exists(src):
        return True  # the encoder's source reports the missing input
    if is_m3cvc(src):
        return False
    if Path(dst).suffix.lower() == ".mkv" and codec is None:
        return True
    raise UsageError(f"{src} is not an m3cvc stream: add -c m3cvc to encode it (decoding needs an .m3cv/.mkv made "
                     "by m3cvcav)")
