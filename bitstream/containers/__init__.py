"""Containers of m3cvc streams: ``.m3cv`` (docs/bitstream.md §7) and Matroska (§8).

``open_writer`` picks the container from ``container`` or the output's extension; ``open_reader`` from the magic bytes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from m3cvcav.core.errors import BitstreamError, InputError, M3cvError, UsageError

from ..units import SequenceHeader
from .base import AtomicOutput, PipeSink, StreamReader, StreamWriter

CONTAINERS = {".m3cv": "m3cv", ".mkv": "matroska", ".mka": "matroska"}  # not .webm: WebM takes VP8/VP9/AV1 only
EBML_MAGIC = b"\x1a\x45\xdf\xa3"

__all__ = ["open_writer", "open_reader", "check_container", "frame_overhead", "sniff", "is_stream", "StreamWriter",
           "StreamReader", "PipeSink", "CONTAINERS"]


def sniff(magic: bytes) -> str | None:
    """The container of a stream's first four bytes: "m3cv", "matroska" (any EBML file), or None."""
    return {b"M3CV": "m3cv", EBML_MAGIC: "matroska"}.get(bytes(magic[:4]))


def is_stream(src: str | os.PathLike | BinaryIO) -> bool:
    """True when ``src`` is a file holding an m3cvc stream (.m3cv, or Matroska with an m3cvc track)."""
    if not isinstance(src, (str, os.PathLike)) or str(src) == "-" or not Path(src).is_file():
        return False
    with open(src, "rb") as f:
        kind = sniff(f.read(4))
    if kind != "matroska":
        return kind == "m3cv"
    try:
        open_reader(src).close()
        return True
    except M3cvError:
        return False


def _container_for(dst: str | Path | BinaryIO, container: str | None,
                   flag: str | None = "format='mkv'|'m3cv'") -> str:
    if container is not None:
        name = {"mkv": "matroska", "matroska": "matroska", "m3cv": "m3cv"}.get(container.lower())
        if name is None:
            raise UsageError(f"unknown container {container!r}: use m3cv or mkv")
        return name
    if isinstance(dst, (str, Path)) and Path(dst).suffix.lower() in CONTAINERS:
        return CONTAINERS[Path(dst).suffix.lower()]
    name = f"output {dst}" if isinstance(dst, (str, Path)) else "a stream output"
    how = f"rename it or name the container ({flag})" if flag else "rename it"
    raise UsageError(f"{name}: m3cvc streams are written as .mkv or .m3cv; {how}")


def frame_overhead(container: str) -> int:
    """Video bytes a container adds for each frame after a segment's first: what ``ffprobe -show_packets`` counts
    beyond the segment packets (Matroska: a 1-byte block per frame, §8; .m3cv: none)."""
    if container == "matroska":
        from .mkv import CONTINUATION

        return len(CONTINUATION)
    return 0


def check_container(dst: str | os.PathLike | BinaryIO, container: str | None,
                    flag: str | None = "format='mkv'|'m3cv'") -> str:
    """The container ``open_writer`` will use for ``dst``; UsageError, before anything is loaded, when there is none
    (``flag``: how the caller names the container, ``-f mkv|m3cv`` on the command line; None: it cannot)."""
    return _container_for(os.fspath(dst) if isinstance(dst, os.PathLike) else dst, container, flag)


def open_writer(dst: str | Path | BinaryIO, header: SequenceHeader, *, container: str | None = None,
                tags: dict[str, str] | None = None) -> StreamWriter:
    """A writer for ``dst`` (a path, written via a temp file renamed on ``close()``, or a binary stream)."""
    name = _container_for(dst, container)
    out = AtomicOutput(dst)
    try:
        if name == "m3cv":
            from .m3cv import M3cvWriter
            return M3cvWriter(out, header, tags)
        from .mkv import MkvWriter
        return MkvWriter(out, header, tags)
    except BaseException:
        out.abort()
        raise


def open_reader(src: str | os.PathLike | BinaryIO) -> StreamReader:
    """A reader for an m3cvc stream in either container (path or binary stream; streams need no seeking for .m3cv)."""
    if isinstance(src, (str, os.PathLike)):
        path: Path | None = Path(src)
        try:
            f: BinaryIO = open(path, "rb")
        except OSError as err:
            raise InputError(f"cannot open {path}: {err.strerror}; check the path") from None
    else:
        path, f = None, src
    try:
        magic = f.read(4)
        kind = sniff(magic)
        if kind == "m3cv":
            from .m3cv import M3cvReader
            return M3cvReader(f, path, magic)
        if kind == "matroska":
            from .mkv_reader import MkvReader
            return MkvReader(f, path, magic)
        raise BitstreamError(f"{path or 'input'} is not an m3cvc stream (neither .m3cv nor Matroska); check the file")
    except BaseException:
        if path is not None:
            f.close()
        raise
