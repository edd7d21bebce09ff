"""``-c copy`` between m3cvc containers (``.mkv`` <-> ``.m3cv``): the segment packets are copied byte for byte into
the other container, as ``ffmpeg -c copy`` remuxes, with the tags and (into Matroska) the audio track; nothing is
decoded, so no model is loaded."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from m3cvcav.bitstream.containers import StreamReader, StreamWriter, open_reader, open_writer
from m3cvcav.bitstream.units import CorruptSegment
from m3cvcav.core.errors import BitstreamError
from m3cvcav.core.log import get_logger
from m3cvcav.filters.result import Result

from .chunks import packet_frames

log = get_logger(__name__)


@contextlib.contextmanager
def copying(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike, *, container: str | None = None,
            tags: dict[str, str] | None = None, audio: bool = True) -> Iterator[tuple[StreamReader, StreamWriter]]:
    """(reader of ``src``, writer of ``dst``) for a copy of a stream: its header, its tags with ``tags`` over them
    (``_merged``) and its audio already queued into the writer (Matroska interleaves it with the segments written in
    the block); the writer is closed when the block ends, aborted (nothing left) when it raises, and the inputs are
    closed either way."""
    reader = open_reader(sys.stdin.buffer if str(src) == "-" else src)
    audio_in = None
    try:
        writer = open_writer(dst, reader.header, container=container, tags=_merged(reader.tags, tags))
        try:
            audio_in = copy_audio(reader, writer) if audio else None
            yield reader, writer
            writer.close()
        except BaseException:
            writer.abort()
            raise
    finally:
        reader.close()
        if audio_in is not None:
            audio_in.close()


def remux(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike, *, format: str | None = None,
          audio: bool = True, tags: dict[str, str] | None = None) -> Result:
    """Copy the stream ``src`` into ``dst`` (its container from ``format`` or the name); damaged segments are left
    out with a warning (they cannot be framed again). The caller has checked ``dst``'s name and overwrite rule."""
    with copying(src, dst, container=format, tags=tags, audio=audio) as (reader, writer):
        frames, segments, dropped = _copy_segments(reader, writer)
        if not segments:
            raise BitstreamError(f"{src} holds no intact segment: nothing was copied, nothing was written")
    if dropped:
        log.warning("%d damaged segment(s) of %s were not copied", dropped, src)
    duration = frames / float(reader.header.fps)
    return Result(frames, segments, writer.video_bytes, duration, dropped, total_bytes=writer.bytes_written)


def _merged(old: dict[str, str], new: dict[str, str] | None) -> dict[str, str]:
    """The stream's tags with ``new`` over them (an empty value drops the key, as FFmpeg's ``-metadata KEY=``)."""
    out = {**old, **(new or {})}
    return {k: v for k, v in out.items() if v != ""}


def copy_audio(reader, writer) -> Any:
    """Add the stream's audio track to ``writer`` and queue its packets (Matroska interleaves them with the video);
    the open input, for the caller to close once the writer is done, or None when there is no audio."""
    audio_in = reader.audio_input()
    if audio_in is None:
        if reader.has_audio:
            log.warning("the audio of a Matroska stream read from a pipe is not copied: give the file's path")
        return None
    stream = audio_in.streams.audio[0]
    track = writer.add_audio(stream.codec_context)  # the packets as they are: a stream's audio is what it carries
    if track >= 0:
        for packet in audio_in.demux(stream):
            if packet.size and packet.pts is not None:
                writer.write_audio(packet, track)
    return audio_in


def _copy_segments(reader, writer) -> tuple[int, int, int]:
    """(frames, segments, damaged segments left out) after copying every intact packet as it is."""
    frames = segments = dropped = 0
    for packet in reader.packets():
        if isinstance(packet, CorruptSegment):
            dropped += 1
            continue
        writer.write_packet(bytes(packet))
        frames += packet_frames(packet)
        segments += 1
    return frames, segments, dropped
