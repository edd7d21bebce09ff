"""The .m3cv container: round trip, pipes, seek index, truncation, corruption, resync, atomic output."""
from __future__ import annotations

import logging
import os
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.containers import PipeSink, open_reader, open_writer
from m3cvcav.bitstream.containers.m3cv import MAGIC, pack_packet, read_seek_index
from m3cvcav.bitstream.crc import crc32c
from m3cvcav.bitstream.framing import write_leb128
from m3cvcav.engines.interfaces import GenerationParams
from m3cvcav.core.errors import BitstreamError, UnsupportedVersionError, UsageError
from streams import sequence_header, synthetic_segments


@pytest.fixture(scope="module")
def stream():
    segments = synthetic_segments(seconds=4, segment_frames=24)
    segments.append(U.Segment(U.SegmentHeader(len(segments), 96, 3), frame_text="vfr tail", frame_pts=[96, 97, 99],
                              base=U.BaseLayer((32, 18), [b"key", b"b", b"c"]),
                              params=GenerationParams(seed=9, steps=2, mode="tt2v")))
    return sequence_header(2), segments


def write(path, header, segments, **kw):
    with open_writer(path, header, **kw) as w:
        for s in segments:
            w.write_segment(s)


def test_roundtrip_and_seek_index(tmp_path, stream):
    header, segments = stream
    path = tmp_path / "a.m3cv"
    write(path, header, segments)
    data = path.read_bytes()
    assert data[:4] == MAGIC
    with open_reader(path) as r:
        assert r.container == "m3cv" and r.header == header and list(r.segments()) == segments
    index = read_seek_index(path)
    assert [pts for _, pts in index] == [s.header.first_pts for s in segments]
    for (offset, _), seg in zip(index, segments):  # each entry points at that segment's packet
        packet = pack_packet(U.encode_segment(seg), seg.header.first_pts, 1)
        assert data[offset:offset + len(packet)] == packet
    assert not list(tmp_path.glob("*.part"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private mode


def test_pipe_write_and_read(tmp_path, stream):
    header, segments = stream
    sink = PipeSink()
    write(sink, header, segments, container="m3cv")
    path = tmp_path / "p.m3cv"
    path.write_bytes(bytes(sink.data))
    with pytest.raises(BitstreamError, match="no seek index|no valid seek index"):
        read_seek_index(path)
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    try:
        with open_reader(proc.stdout) as r:
            assert not proc.stdout.seekable()
            assert list(r.segments()) == segments
    finally:
        proc.stdout.close()
        proc.wait()


def test_truncation_yields_every_complete_segment(tmp_path, stream, caplog):
    header, segments = stream
    sink = PipeSink()
    write(sink, header, segments, container="m3cv")
    data = bytes(sink.data)
    ends, pos = [], len(MAGIC) + len(U.encode_sequence_header(header))
    for seg in segments:
        pos += len(pack_packet(U.encode_segment(seg), seg.header.first_pts, 1))
        ends.append(pos)
    path = tmp_path / "cut.m3cv"
    rng = np.random.default_rng(0)
    for cut in sorted({*rng.integers(ends[0] - 40, len(data), 40).tolist(), *ends, ends[0] - 1}):
        path.write_bytes(data[:cut])
        with open_reader(path) as r:
            got = list(r.segments())
        assert got == segments[:sum(e <= cut for e in ends)], cut
    path.write_bytes(data[:10])
    with pytest.raises(BitstreamError):
        open_reader(path)


def test_corrupt_packet_is_reported_and_reading_continues(tmp_path, stream):
    header, segments = stream
    path = tmp_path / "c.m3cv"
    write(path, header, segments)
    data = bytearray(path.read_bytes())
    offsets = [o for o, _ in read_seek_index(path)]
    data[offsets[1] + 20] ^= 0x40  # inside segment 1's token payload
    path.write_bytes(bytes(data))
    with open_reader(path) as r:
        got = list(r.segments())
    assert isinstance(got[1], U.CorruptSegment) and (got[1].index, got[1].first_pts, got[1].frame_count) == (1, 24, 24)
    assert got[:1] + got[2:] == segments[:1] + segments[2:]


def test_damaged_size_field_resyncs(tmp_path, stream):
    header, segments = stream
    path = tmp_path / "s.m3cv"
    write(path, header, segments)
    data = bytearray(path.read_bytes())
    offsets = [o for o, _ in read_seek_index(path)]
    data[offsets[2]] = 0x05  # segment 2's size now says 5 bytes
    path.write_bytes(bytes(data))
    with open_reader(path) as r:
        got = list(r.segments())
    assert isinstance(got[2], U.CorruptSegment) and got[2].index == 2
    assert got[:2] + got[3:] == segments[:2] + segments[3:]


def test_packet_layout_and_header_check(tmp_path, stream):
    header, segments = stream
    payload = U.encode_segment(segments[1])
    packet = pack_packet(payload, 24, 1)
    head = write_leb128(len(payload)) + bytes([48, 1])  # size, pts 24 zig-zagged, flags KEY
    assert packet == head + bytes([crc32c(head) & 0xFF]) + payload
    path = tmp_path / "h.m3cv"
    write(path, header, segments)
    data = bytearray(path.read_bytes())
    offsets = [o for o, _ in read_seek_index(path)]
    data[offsets[1] + len(write_leb128(len(U.encode_segment(segments[1]))))] ^= 0x02  # segment 1's pts: check fails
    path.write_bytes(bytes(data))
    with open_reader(path) as r:
        got = list(r.segments())
    assert isinstance(got[1], U.CorruptSegment) and got[1].index == 1
    assert got[:1] + got[2:] == segments[:1] + segments[2:]


def test_unit_crc_failure_inside_intact_packet(tmp_path, stream):
    header, segments = stream
    bad = bytearray(U.encode_segment(segments[0]))
    bad[-1] ^= 1  # the last unit's CRC, re-wrapped in a packet whose header check is valid
    path = tmp_path / "u.m3cv"
    path.write_bytes(MAGIC + U.encode_sequence_header(header) + pack_packet(bytes(bad), 0, 1)
                     + pack_packet(U.encode_segment(segments[1]), 24, 1))
    with open_reader(path) as r:
        got = list(r.segments())
    assert isinstance(got[0], U.CorruptSegment) and "CRC" in got[0].reason and got[1] == segments[1]


def test_not_m3cvc_and_newer_major(tmp_path, stream):
    header, _ = stream
    path = tmp_path / "g.m3cv"
    path.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(BitstreamError, match="not an m3cvc"):
        open_reader(path)
    payload = bytearray(U.encode_sequence_header_payload(header))
    payload[0] = 3
    from m3cvcav.bitstream.framing import pack_unit
    path.write_bytes(MAGIC + pack_unit(U.SEQUENCE_HEADER, bytes(payload)))
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        open_reader(path)


def test_writer_is_atomic_and_drops_audio(tmp_path, stream, caplog):
    header, segments = stream
    path = tmp_path / "x.m3cv"
    with pytest.raises(RuntimeError):
        with open_writer(path, header) as w:
            w.write_segment(segments[0])
            raise RuntimeError("encoder failed")
    assert list(tmp_path.iterdir()) == []
    with caplog.at_level(logging.WARNING, logger="m3cvcav"):
        w = open_writer(path, header)
        assert w.add_audio(object()) == -1
        w.abort()
    assert "audio" in caplog.text and list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="container"):
        open_writer(tmp_path / "x.avi", header)
    with pytest.raises(BitstreamError):
        open_writer(tmp_path / "y.m3cv", U.SequenceHeader(0, 10, Fraction(24), Fraction(1, 24)))
    assert list(tmp_path.iterdir()) == []
