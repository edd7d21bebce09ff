"""``python -m m3cvcav base STREAM OUT``: the stream's AV1 base layer as a standard AV1 file (.webm, .mkv, .mp4 or
.ivf), copied without re-encoding, so that any player or browser plays the video without m3cvcav."""
from __future__ import annotations

import os
from fractions import Fraction

import av

from m3cvcav.bitstream import av1
from m3cvcav.bitstream.containers import is_stream, open_reader
from m3cvcav.bitstream.units import CorruptSegment, Segment
from m3cvcav.core.atomic import AtomicPath, check_output, output_errors
from m3cvcav.core.errors import BitstreamError, InputError, UsageError
from m3cvcav.core.log import get_logger

log = get_logger(__name__)
FORMATS = {".webm": "webm", ".mkv": "matroska", ".mp4": "mp4", ".ivf": "ivf"}
USAGE = f"""usage: python -m m3cvcav base [-y] STREAM OUT
Write the AV1 base layer of an m3cvc stream (.mkv or .m3cv) to OUT ({', '.join(FORMATS)}) without re-encoding: every
frame at the coded size the encoder chose, playable by any AV1 player (ffplay, mpv, browsers). Damaged segments are
left out (with a warning); a text-only (tt2v) stream has no base.
"""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "-help", "--help") for a in argv):
        print(USAGE, end="")
        return 0
    overwrite = "-y" in argv
    args = [a for a in argv if a != "-y"]
    if len(args) != 2 or any(a.startswith("-") for a in args):
        raise UsageError("usage: python -m m3cvcav base [-y] STREAM OUT (see base -h)")
    src, dst = args
    if not os.path.isfile(src):
        raise InputError(f"{src}: no such file: check the path")
    if not is_stream(src):
        raise InputError(f"{src} is not an m3cvc stream (.mkv/.m3cv made by m3cvcav)")
    ext = os.path.splitext(dst)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"output {dst}: write the base as {', '.join(FORMATS)}")
    check_output(dst, overwrite)
    frames = write_base(src, dst, FORMATS[ext])
    log.info("%s -> %s: %d AV1 frames copied", src, dst, frames)
    return 0


def write_base(src: str, dst: str, fmt: str) -> int:
    """Copy the base layer of ``src`` into ``dst`` (container ``fmt``), atomically; returns the frames written."""
    out = AtomicPath(dst)
    try:
        with output_errors(dst), open_reader(src) as reader:
            header = reader.header
            frames = _copy(reader.segments(), header, out.tmp, fmt)
    except BaseException:
        out.abort()
        raise
    out.commit()
    return frames


def _copy(segments, header, path, fmt: str) -> int:
    container = stream = None
    frames = skipped = 0
    try:
        for seg in segments:
            if isinstance(seg, CorruptSegment) or not isinstance(seg, Segment):
                skipped += 1
                continue
            if seg.base is None:
                continue
            if container is None:
                container, stream = _open(path, fmt, seg, header)
            elif seg.base.size != (stream.codec_context.width, stream.codec_context.height):
                log.warning("segment %d is coded at %dx%d, the file's track says %dx%d: players rescale at its "
                            "key frame", seg.header.index, *seg.base.size, stream.codec_context.width,
                            stream.codec_context.height)
            if not seg.base.complete:
                skipped += 1
            pts = seg.pts(header)
            for i, data in enumerate(seg.base.units):
                packet = av.Packet(data)
                packet.stream, packet.time_base = stream, header.time_base
                packet.pts = packet.dts = pts[i]
                packet.is_keyframe = i == 0
                container.mux(packet)
                frames += 1
        if container is None:
            raise BitstreamError("the stream holds no base layer (a text-only tt2v stream, or every segment is "
                                 "damaged): nothing to write")
    finally:
        if container is not None:
            container.close()
    if skipped:
        log.warning("%d damaged segment(s) left out or cut short", skipped)
    return frames


def _open(path, fmt: str, first: Segment, header):
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(av1.ENCODER, rate=Fraction(header.fps))
    stream.codec_context.width, stream.codec_context.height = first.base.size
    stream.codec_context.pix_fmt = "yuv420p"
    stream.codec_context.extradata = av1.sequence_header_obu(first.base.units[0])
    stream.time_base = header.time_base
    return container, stream
