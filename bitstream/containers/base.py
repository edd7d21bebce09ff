"""What both containers share: atomic output, the writer/reader base classes, segment decoding with corruption reports."""
from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from m3cvcav.core.atomic import AtomicPath
from m3cvcav.core.errors import BitstreamError, OutputError
from m3cvcav.core.log import get_logger

from ..units import CorruptSegment, Segment, SequenceHeader, decode_segment, encode_segment, peek_segment_header

log = get_logger(__name__)


class PipeSink(io.RawIOBase):
    """A write-only, non-seekable output: what a pipe looks like to a writer (no index or patched sizes). Keeps what
    is written in ``data``, or with ``keep=False`` nothing (FFmpeg's ``-f null``: the writer still counts the
    bytes)."""

    def __init__(self, keep: bool = True):
        super().__init__()
        self.keep = keep
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.keep:
            self.data += data
        return len(data)


class AtomicOutput:
    """A path written through :class:`m3cvcav.core.atomic.AtomicPath` (renamed on ``commit()``), or a caller's binary
    stream written as is. ``written`` counts the bytes handed to ``write``."""

    def __init__(self, dst: str | Path | BinaryIO):
        if isinstance(dst, (str, Path)):
            self.path: Path | None = Path(dst)
            self._atomic: AtomicPath | None = AtomicPath(self.path)
            self.tmp: Path | None = self._atomic.tmp
            self.file: BinaryIO = self._atomic.open()
        else:
            self.path = self.tmp = self._atomic = None
            self.file = dst
        self.written = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.written += len(data)

    @property
    def seekable(self) -> bool:
        try:
            return self.file.seekable()
        except (AttributeError, OSError, ValueError):
            return False

    def commit(self) -> None:
        if self._atomic is None:
            self.file.flush()
            return
        try:
            self.file.close()
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {err.strerror}; check the folder and free space") from None
        self._atomic.commit()

    def abort(self) -> None:
        if self._atomic is not None:
            try:
                self.file.close()
            except OSError:
                pass  # a full disk fails the close too; removing the file is what matters
            self._atomic.abort()


class StreamWriter(ABC):
    """Writes a sequence header then segments (and, in Matroska, audio) to one container."""

    container = ""

    def __init__(self, out: AtomicOutput, header: SequenceHeader, tags: dict[str, str] | None):
        self.out, self.header, self.tags = out, header, dict(tags or {})
        self._closed = False
        self.video_bytes = 0  # bytes of the video track's packets so far: what ffprobe -show_packets sums for it

    @property
    def bytes_written(self) -> int:
        """Bytes of the whole output so far (headers, video, audio, subtitles, index)."""
        return self.out.written

    @abstractmethod
    def write_packet(self, packet: bytes, segment: Segment | None = None) -> None:
        """Append one segment packet (docs/bitstream.md §6) as it is, as ivfenc's ``write_packet``; ``segment`` is
        the packet parsed, when the caller has it (Matroska reads its timestamps and texts; else it parses them)."""

    def write_segment(self, segment: Segment) -> None:
        """Serialise ``segment`` and append it."""
        self.write_packet(encode_segment(segment), segment)

    carries_audio = False  # whether the container has audio tracks (Matroska) or not (.m3cv)

    @staticmethod
    def takes_audio(codec: str, config: bytes | None = None) -> bool:
        """Whether this container carries packets of ``codec`` with codec configuration ``config`` as they are."""
        return False

    def add_audio(self, codec) -> int:
        """An audio track for packets of ``codec`` (a PyAV codec context); -1, with a warning, in a container
        without audio."""
        log.warning("the %s container carries no audio: the audio track is dropped (use .mkv to keep it)",
                    self.container)
        return -1

    def write_audio(self, packet, track: int) -> None:
        """Audio packets of a container without audio are dropped (``add_audio`` warned)."""

    def _finish(self) -> None:
        """Write whatever the container needs at the end."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
        except BaseException:
            self.out.abort()
            raise
        self.out.commit()

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self.out.abort()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class StreamReader(ABC):
    """Reads the sequence header, tags and segments of one container."""

    container = ""
    header: SequenceHeader
    header_unit: bytes  # the framed SEQUENCE_HEADER unit as stored
    tags: dict[str, str]
    has_audio = False
    path: Path | None = None
    video_bytes = 0  # bytes of the video track's packets read so far (what ffprobe -show_packets sums)
    track_bytes: dict[str, int] = {}  # bytes per track kind read so far (Matroska: audio, subtitle too)

    @abstractmethod
    def packets(self) -> Iterator[bytes | CorruptSegment]:
        """The raw segment packets (docs/bitstream.md §6) in stream order; damaged ones as CorruptSegment."""

    def segments(self) -> Iterator[Segment | CorruptSegment]:
        for packet in self.packets():
            yield packet if isinstance(packet, CorruptSegment) else decode_packet(packet)

    def audio_input(self):
        """The stream's audio as a PyAV input container (``.streams.audio[0]``, ``demux``), or None when it has
        none (or is not a file); the caller closes it."""
        if not self.has_audio or self.path is None:
            return None
        import av

        container = av.open(str(self.path))
        if container.streams.audio:
            return container
        container.close()
        return None

    def close(self) -> None:
        """Release the input."""

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_packet(packet: bytes) -> Segment | CorruptSegment:
    """Decode one segment packet, or report it as corrupt (with what its header unit still says)."""
    try:
        return decode_segment(packet)
    except BitstreamError as err:
        head = peek_segment_header(packet)
        log.warning("corrupt segment%s: %s; it will be concealed", f" {head.index}" if head else "", err)
        if head is None:
            return CorruptSegment(-1, None, 0, str(err))
        return CorruptSegment(head.index, head.first_pts, head.frame_count, str(err))
