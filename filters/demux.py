"""demux: the decoder graph's source. Reads an m3cvc stream (.mkv or .m3cv, ``bitstream.containers``): its sequence
header, tags and segments (damaged ones as ``CorruptSegment``, concealed by ``generate``). Its audio is the reader's
(``reader.audio_input()``), cut by ``trim`` and muxed by the sink."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from m3cvcav.bitstream.containers import StreamReader, open_reader
from m3cvcav.bitstream.units import CorruptSegment, Segment, SequenceHeader

from .node import Node


class Demux(Node):
    """The segments of ``src`` (a path, ``-`` for stdin, or a binary file object), counted in ``segments_read``."""

    NAME = "demux"
    HELP = "read the segments of an m3cvc stream (.mkv or .m3cv)"
    GRAPH = False

    def __init__(self, src: str | os.PathLike | BinaryIO):
        super().__init__()
        self.reader: StreamReader = open_reader(sys.stdin.buffer if str(src) == "-" else src)
        self.header: SequenceHeader = self.reader.header
        self.tags: dict[str, str] = dict(self.reader.tags)
        self.segments_read = 0

    def run(self, items: Iterable[Any] = ()) -> Iterator[Segment | CorruptSegment]:
        for segment in self.reader.segments():
            self.segments_read += 1
            yield segment

    def close(self) -> None:
        self.reader.close()
