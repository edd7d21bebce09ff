"""``python -m m3cvcav edit FILE --segment N [--frame-text T] [--clip-text T] -o OUT``: rewrite a segment's
descriptions (M3-CVC's controllability) without re-encoding its pictures; every other segment, the header, the tags and
the audio are copied as they are."""
from __future__ import annotations

import argparse
from dataclasses import replace

from m3cvcav.bitstream.containers import check_container
from m3cvcav.bitstream.containers.tags import PROFILE as PROFILE_TAG
from m3cvcav.bitstream.units import CorruptSegment, decode_segment, encode_segment, text_plaintext
from m3cvcav.core.atomic import check_output
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.core.log import get_logger

from .options import ArgumentParser, description
from .remux import copying

log = get_logger(__name__)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m m3cvcav edit", description=description(__doc__))
    p.add_argument("file", help="an m3cvc stream (.mkv or .m3cv)")
    p.add_argument("--segment", type=int, required=True, help="index of the segment to edit (see probe)")
    p.add_argument("--frame-text", help="new frame-level description D^F of its keyframe")
    p.add_argument("--clip-text", help="new clip-level description D^C of the segment")
    p.add_argument("-o", "--output", required=True, help="output path: .mkv or .m3cv (the container follows the name)")
    p.add_argument("-y", action="store_true", help="overwrite the output")
    return p


def edit(src: str, dst: str, segment: int, frame_text: str | None = None, clip_text: str | None = None,
         overwrite: bool = False) -> None:
    """Copy ``src`` to ``dst`` with segment ``segment``'s texts replaced; raises UsageError when it does not exist."""
    if frame_text is None and clip_text is None:
        raise UsageError("edit: give --frame-text and/or --clip-text")
    try:
        text_plaintext(frame_text or "", clip_text or "")  # the TEXT unit's own limits (size, no NUL)
    except BitstreamError as err:
        raise UsageError(f"edit: {err} (--frame-text / --clip-text)") from None
    if segment < 0:
        raise UsageError(f"edit: --segment {segment}: segments are numbered from 0 (see probe)")
    check_container(dst, None, None)
    check_output(dst, overwrite)
    with copying(src, dst) as (reader, writer):
        _say_if_texts_are_unused(reader)
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
                writer.write_segment(replace(seg, frame_text=seg.frame_text if frame_text is None else frame_text,
                                             clip_text=seg.clip_text if clip_text is None else clip_text))
            else:
                writer.write_packet(bytes(packet), seg)  # unchanged: the bytes as read
            count += 1
        if not found:
            raise UsageError(f"edit: {src} has no segment {segment}; it has segments 0..{count - 1}")
    log.info("%s -> %s: segment %d rewritten, %d segments copied", src, dst, segment, count - 1)


def _say_if_texts_are_unused(reader) -> None:
    """The lite profile's decoder draws its pictures from the base layer only: say so, since the edit then changes no
    picture (the texts are still stored, shown by probe and as subtitles)."""
    from m3cvcav.engines.registry import load_profile

    name = reader.tags.get(PROFILE_TAG)
    if name == "lite" or (name is None and reader.header.profile_id == load_profile("lite").profile_id):
        log.warning("this stream uses the lite profile, whose decoder does not read the texts: the new text is "
                    "stored (probe, subtitles) but the pictures do not change; m3cvc streams generate from it")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    edit(args.file, args.output, args.segment, args.frame_text, args.clip_text, args.y)
    return 0
