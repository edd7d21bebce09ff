"""A small EBML writer (RFC 8794) with the Matroska element ids the mkv writer uses.

No maintained EBML writer on PyPI covers Matroska muxing with private FourCCs, Cues and SeekHead, and PyAV's muxer
refuses the private FourCC, so elements are built here: an element is its id bytes, a minimal data-size vint, its data.
"""
from __future__ import annotations

import struct

# EBML header
EBML, EBML_VERSION, EBML_READ_VERSION, EBML_MAX_ID_LENGTH, EBML_MAX_SIZE_LENGTH = (
    0x1A45DFA3, 0x4286, 0x42F7, 0x42F2, 0x42F3)
DOC_TYPE, DOC_TYPE_VERSION, DOC_TYPE_READ_VERSION = 0x4282, 0x4287, 0x4285
# Matroska
SEGMENT = 0x18538067
SEEK_HEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
INFO, TIMESTAMP_SCALE, DURATION, MUXING_APP, WRITING_APP = 0x1549A966, 0x2AD7B1, 0x4489, 0x4D80, 0x5741
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID, TRACK_TYPE = 0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83
FLAG_LACING, CODEC_ID, CODEC_PRIVATE, DEFAULT_DURATION, LANGUAGE, NAME = 0x9C, 0x86, 0x63A2, 0x23E383, 0x22B59C, 0x536E
CODEC_DELAY, SEEK_PRE_ROLL = 0x56AA, 0x56BB
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
COLOUR, MATRIX_COEFFICIENTS, RANGE, TRANSFER_CHARACTERISTICS, PRIMARIES = 0x55B0, 0x55B1, 0x55B9, 0x55BA, 0x55BB
AUDIO, SAMPLING_FREQUENCY, CHANNELS = 0xE1, 0xB5, 0x9F
CLUSTER, TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK, BLOCK_DURATION = 0x1F43B675, 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
CUES, CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS, CUE_TRACK, CUE_CLUSTER_POSITION = (
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1)
TAGS, TAG, TARGETS, TARGET_TYPE_VALUE, SIMPLE_TAG, TAG_NAME, TAG_STRING = (
    0x1254C367, 0x7373, 0x63C0, 0x68CA, 0x67C8, 0x45A3, 0x4487)

VOID = 0xEC
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"  # an 8-byte data size of "unknown" (a Segment still being written)

TRACK_VIDEO, TRACK_AUDIO, TRACK_SUBTITLE = 1, 2, 0x11


def encode_id(element_id: int) -> bytes:
    """Element ids are written as they are specified (their length marker is part of the value)."""
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def encode_size(size: int, width: int | None = None) -> bytes:
    """Data size as an EBML vint: minimal, or exactly ``width`` bytes (1..8); all-ones values are avoided."""
    if width is None:
        width = 1
        while size >= (1 << (7 * width)) - 1:
            width += 1
    if not 1 <= width <= 8 or size >= (1 << (7 * width)) - 1:
        raise ValueError(f"size {size} does not fit an EBML vint of {width} bytes")
    return ((1 << (7 * width)) | size).to_bytes(width, "big")


def element(element_id: int, data: bytes) -> bytes:
    return encode_id(element_id) + encode_size(len(data)) + data


def master(element_id: int, *children: bytes) -> bytes:
    return element(element_id, b"".join(children))


def void(total: int) -> bytes:
    """A Void element of exactly ``total`` bytes (at least 2): space reserved for an element patched later."""
    if total < 2:
        raise ValueError(f"a Void element needs at least 2 bytes, not {total}")
    width = 1 if total - 2 < 127 else 8
    return encode_id(VOID) + encode_size(total - 1 - width, width) + bytes(total - 1 - width)


def uint(element_id: int, value: int, width: int | None = None) -> bytes:
    """Unsigned integer element, minimal length (at least 1 byte) or a fixed ``width`` (for values patched later)."""
    n = width or max(1, (value.bit_length() + 7) // 8)
    return element(element_id, value.to_bytes(n, "big"))


def double(element_id: int, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def string(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("utf-8"))


def ebml_header(doc_type: str = "matroska") -> bytes:
    return master(EBML, uint(EBML_VERSION, 1), uint(EBML_READ_VERSION, 1), uint(EBML_MAX_ID_LENGTH, 4),
                  uint(EBML_MAX_SIZE_LENGTH, 8), string(DOC_TYPE, doc_type), uint(DOC_TYPE_VERSION, 4),
                  uint(DOC_TYPE_READ_VERSION, 2))


def block_payload(track: int, relative_ms: int, flags: int, data: bytes) -> bytes:
    """Body of a (Simple)Block: track vint, int16 timestamp relative to the cluster, flags, frame data."""
    if not -32768 <= relative_ms <= 32767:
        raise ValueError(f"block timestamp {relative_ms} ms is outside the cluster's int16 range")
    return encode_size(track) + struct.pack(">hB", relative_ms, flags) + data
