"""``python -m m3cvcav edit FILE --segment N [--frame-text T] [--clip-text T] -o OUT``: rewrite a segment's
descriptions (M3-CVC's controllability) without re-encoding its tokens; every other segment, the header, the tags and
the audio are copied as they are."""
from __future__ import annotations

import argparse
from dataclasses import replace

import av

from m3cvcav.bitstream.containers import open_reader, open_writer
from m3cvcav.bitstream.units import CorruptSegment, decode_segment, encode_segment
from m3cvcav.errors import BitstreamError, UsageError
from m3cvcav.filters.sink import check_output
from m3cvcav.log import get_logger

log = get_logger("edit")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"edit: {message} (see python -m m3cvcav edit -h)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m m3cvcav edit", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("file", help="an m3cvc stream (.mkv or .m3cv)")
    p.add_argument("--segment", type=int, required=True, help="index of the segment to edit (see `probe`)")
    p.add_argument("--frame-text", help="new frame-level description D^F of its keyframe")
    p.add_argument("--clip-text", help="new clip-level description D^C of the segment")
    p.add_argument("-o", "--output", required=True, help="output path (same container as the input)")
    p.add_argument("-y", action="store_true", help="overwrite the output")
    return p


def edit(src: str, dst: str, segment: int, frame_text: str | None = None, clip_text: str | None = None,
         overwrite: bool = False) -> None:
    """Copy ``src`` to ``dst`` with segment ``segment``'s texts replaced; raises UsageError when it does not exist."""
    if frame_text is None and clip_text is None:
        raise UsageError("edit: give --frame-text and/or --clip-text")
    check_output(dst, overwrite)
    reader = open_reader(src)
    audio_in = None
    writer = open_writer(dst, reader.header, container="mkv" if reader.container == "matroska" else reader.container,
                         tags=reader.tags)
    try:
        if reader.has_audio and reader.path is not None:
            audio_in = av.open(str(reader.path))
            if writer.add_audio(audio_in.streams.audio[0]) >= 0:
                for packet in audio_in.demux(audio_in.streams.audio[0]):
                    if packet.size and packet.pts is not None:
                        writer.write_audio(packet)
        count, found = 0, False
        for packet in reader.packets():
            if isinstance(packet, CorruptSegment):
                raise BitstreamError(f"segment {packet.index} of {src} is corrupt ({packet.reason}): it cannot be "
                                     "copied unchanged")
            seg = decode_segment(packet)
            if encode_segment(seg) != bytes(packet):
                raise BitstreamError(f"segment {seg.header.index} of {src} is not in canonical form: it cannot be "
                                     "copied byte for byte")
            if seg.header.index == segment:
                found = True
                seg = replace(seg, frame_text=seg.frame_text if frame_text is None else frame_text,
                              clip_text=seg.clip_text if clip_text is None else clip_text)
            writer.write_segment(seg)
            count += 1
        if not found:
            raise UsageError(f"edit: {src} has no segment {segment}; it has segments 0..{count - 1}")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
        if audio_in is not None:
            audio_in.close()
    log.info("%s -> %s: segment %d rewritten, %d segments copied", src, dst, segment, count - 1)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    edit(args.file, args.output, args.segment, args.frame_text, args.clip_text, args.y)
    return 0
