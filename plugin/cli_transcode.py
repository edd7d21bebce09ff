"""The FFmpeg-like main command: ``python -m m3cvcav [options] -i INPUT [options] OUTPUT``.

Encodes when the output codec is m3cvc (``-c m3cvc``, or an ``.m3cv``/``.mkv`` output of a plain video), decodes when the
input is an m3cvc stream (to any format PyAV writes, ``-f yuv4mpegpipe -`` for a pipe).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from m3cvcav.errors import UsageError
from m3cvcav.filters.options import parse_number

USAGE = """usage: python -m m3cvcav [options] -i INPUT [options] OUTPUT
       python -m m3cvcav probe|edit|play|engines|train|bench ...
encode:  python -m m3cvcav -i in.mp4 -c m3cvc [-b:v 20k | -q N] [-mode it2v|tt2v] [-vf ...] out.mkv|out.m3cv
decode:  python -m m3cvcav -i out.mkv [-mode it2v|tt2v] [-c:v libx264 -crf 20 -preset fast -pix_fmt yuv420p] back.mp4
pipe:    python -m m3cvcav -i out.mkv -f yuv4mpegpipe - | ffplay -
options: -i IN  -c/-c:v CODEC  -f FORMAT  -vf GRAPH  -filter_complex GRAPH  -ss SEC  -t SEC  -frames:v N  -s WxH
         -r FPS  -b:v RATE  -q N  -crf N  -preset P  -pix_fmt F  -profile NAME  -engine auto|torch|onnxruntime|tensorrt
         -mode it2v|tt2v (CMVC: keyframe tokens + text, or text only; tt2v needs -profile m3cvc)
         -offload (m3cvc: models go to the GPU only while they run; less GPU memory, slower)
         -y  -n  -an  -stats  -nostats  -progress FILE|pipe:1  -loglevel LEVEL  -version
parallel: -workers N (0: one per core)  -cluster local|auto|ray://HOST:PORT  -chunk_min N  -chunk_max N (frames)
          -resume WORKDIR (encode: keep finished chunks there; rerun to continue)   see docs/parallel.md
graph nodes (in -vf after FFmpeg filters): select=threshold:l1:l2:min:max:cut:samples  describe=frame:clip  tokenize=q
"""

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
        print(USAGE, end="")
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
                  offload="offload" in args.flags)
    if "workers" in args.values or "cluster" in args.values:  # chunked / run-parallel (docs/parallel.md)
        common.update(workers=args.number("workers", int, 0), cluster=args.get("cluster"),
                      chunk_max=args.number("chunk_max", int, 0))
    elif any(name in args.values for name in ("resume", "chunk_min", "chunk_max")):
        raise UsageError("-resume/-chunk_min/-chunk_max apply to chunked jobs: add -workers N or -cluster local")
    if _encoding(src, dst, codec, args.get("format")):
        for flag in ("crf", "preset", "pix_fmt"):
            if flag in args.values:
                raise UsageError(f"-{flag} sets the output encoder of a decode; m3cvc encodes take -b:v or -q")
        result = api.encode(src, dst, ss=args.number("ss", float, 0.0), t=args.number("t", float, 0.0),
                            bitrate=args.get("bitrate"), q=args.number("q", int, None),
                            profile=args.get("profile", "lite"), **common,
                            **({"resume": args.get("resume"), "chunk_min": args.number("chunk_min", int, 0)}
                               if "workers" in common else {}))
        summary = (f"{result.frames} frames, {result.segments} segments, {result.bytes} bytes "
                   f"({result.bitrate / 1000:.2f} kbit/s)")
    else:
        if "ss" in args.values or "t" in args.values or "q" in args.values:
            raise UsageError("-ss/-t/-q apply when encoding; to decode part of a stream use -frames:v")
        result = api.decode(src, dst, codec=codec, crf=args.number("crf", float, None), preset=args.get("preset"),
                            pix_fmt=args.get("pix_fmt"), bitrate=args.get("bitrate"), profile=args.get("profile"),
                            **common)
        summary = f"{result.frames} frames decoded" + (f", {result.corrupt} corrupt segment(s) concealed"
                                                        if result.corrupt else "")
    if reporter is not None:
        reporter(final=True)
    from m3cvcav.log import get_logger

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
