"""demux: the decoder graph's source. Reads an m3cvc stream (.mkv or .m3cv, ``bitstream.containers``): its sequence
header, tags and segments (damaged ones as ``CorruptSegment``, concealed by ``generate``). Its audio is the reader's
(``reader.audio_input()``), cut by ``trim`` and muxed by the sink. A stream with no segment at all is an error (the
file holds no video data); a Matroska file shorter than its header declares is read to its end with a warning."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from m3cvcav.bitstream.containers import StreamReader, open_reader
from m3cvcav.bitstream.units import CorruptSegment, Segment, SequenceHeader
from m3cvcav.core.errors import BitstreamError, UsageError
from m3cvcav.core.log import get_logger

from .node import Node

log = get_logger(__name__)

EBML_ID, SEGMENT_ID = 0x1A45DFA3, 0x18538067


class Demux(Node):
    """The segments of ``src`` (a path, ``-`` for stdin, or a binary file object), counted in ``segments_read``;
    they are read once."""

    NAME = "demux"
    HELP = "read the segments of an m3cvc stream (.mkv or .m3cv)"
    GRAPH = False

    def __init__(self, src: str | os.PathLike | BinaryIO):
        super().__init__()
        self.reader: StreamReader = open_reader(sys.stdin.buffer if str(src) == "-" else src)
        self.header: SequenceHeader = self.reader.header
        self.tags: dict[str, str] = dict(self.reader.tags)
        self.segments_read = 0
        self._started = False

    def run(self, items: Iterable[Any] = ()) -> Iterator[Segment | CorruptSegment]:
        if self._started:
            raise UsageError("this stream was already read once (decode()/frames() read it from start to end): open "
                             "it again, e.g. m3cvcav.open(path), to decode it again")
        self._started = True
        for segment in self.reader.segments():
            self.segments_read += 1
            yield segment
        name = self.reader.path or "the input"
        if not self.segments_read:
            raise BitstreamError(f"{name} holds no video data: the file ends before its first segment (truncated?)")
        cut = matroska_cut_short(self.reader.path) if self.reader.container == "matroska" else None
        if cut is not None:
            log.warning("%s ends at byte %d of the %d its Matroska header declares: it was cut short; every "
                        "complete segment was decoded, what came after (video, audio or index) is missing", name, *cut)

    def close(self) -> None:
        self.reader.close()


def matroska_cut_short(path: str | os.PathLike | None) -> tuple[int, int] | None:
    """(file size, size declared) of a Matroska file whose Segment element declares more bytes than the file has;
    None when it is complete, its Segment size is unknown (written to a pipe), or it is not a file."""
    if path is None or not Path(path).is_file():
        return None
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = _element(f)
        if head is None or head[0] != EBML_ID or head[1] < 0:
            return None
        f.seek(head[1], 1)
        segment = _element(f)
        if segment is None or segment[0] != SEGMENT_ID or segment[1] < 0:
            return None
        declared = f.tell() + segment[1]
    return (size, declared) if declared > size else None


def _element(f: BinaryIO) -> tuple[int, int] | None:
    """(id, data size; -1 when unknown) of the EBML element at the file position, or None at the end."""
    element_id = _vint(f, keep_marker=True)
    data_size = _vint(f, keep_marker=False) if element_id is not None else None
    return None if data_size is None else (element_id, data_size)


def _vint(f: BinaryIO, keep_marker: bool) -> int | None:
    """One EBML variable-length integer (RFC 8794 §4); None at the end of the file or on a bad first byte."""
    first = f.read(1)
    if not first or first[0] == 0:
        return None
    width = 8 - first[0].bit_length() + 1
    rest = f.read(width - 1)
    if len(rest) != width - 1:
        return None
    value = int.from_bytes(first + rest, "big")
    if keep_marker:
        return value
    value &= (1 << (7 * width)) - 1
    return -1 if value == (1 << (7 * width)) - 1 else value
