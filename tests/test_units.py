"""Unit payloads of docs/bitstream.md: round trips, exact bytes, bounds, versioning, corruption."""
from __future__ import annotations

from fractions import Fraction

import brotli
import numpy as np
import pytest

from m3cvcav.bitstream import units as U
from m3cvcav.bitstream.framing import iter_units, pack_unit
from m3cvcav.engines.interfaces import GenerationParams, ModelRef
from m3cvcav.core.errors import BitstreamError, UnsupportedVersionError


def seq_header(**kw) -> U.SequenceHeader:
    base = dict(width=640, height=360, fps=Fraction(24000, 1001), time_base=Fraction(1, 90000),
                color=U.ColorDescription(9, 16, 9, True), profile_id=3,
                models=[ModelRef(7, bytes(range(32))), ModelRef(70000, b"\xab" * 32)])
    base.update(kw)
    return U.SequenceHeader(**base)


def full_segment() -> U.Segment:
    rng = np.random.default_rng(1)
    return U.Segment(
        U.SegmentHeader(index=5, first_pts=-3, frame_count=4, keyframe_pos=2, flags=U.SCENE_CUT),
        tokens=U.KeyframeTokens(12, 3, (2, 9, 16), (288, 512), bytes(rng.integers(0, 256, 300, dtype=np.uint8))),
        frame_text="a rabbit in a meadow, été", clip_text="camera pans left",
        base=U.BaseLayer((128, 72), [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (200, 3, 150, 1)], 2),
        params=GenerationParams(seed=4242, steps=4, scheduler_id=2, mode="tt2v"),
        frame_pts=[-3, 0, 7, 8])


def test_sequence_header_roundtrip_and_exact_bytes():
    h = seq_header()
    data = U.encode_sequence_header(h)
    back, size = U.decode_sequence_header(data + b"trailing")
    assert size == len(data) and back == h
    small = U.SequenceHeader(320, 240, Fraction(25), Fraction(1, 25))
    payload = U.encode_sequence_header_payload(small)
    # version 2.0 | 320 = c0 02 | 240 = f0 01 | 25/1 | 1/25 | BT.709 limited | profile 0 | 0 models
    assert payload == bytes([2, 0, 0xC0, 0x02, 0xF0, 0x01, 25, 1, 1, 25, 1, 1, 1, 0, 0, 0])


def test_newer_minor_decodes_other_majors_refused():
    payload = U.encode_sequence_header_payload(seq_header())
    newer_minor = bytes([2, 7]) + payload[2:] + b"future fields"
    assert U.decode_sequence_header_payload(newer_minor).version == (2, 7)
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        U.decode_sequence_header_payload(bytes([3, 0]) + payload[2:])
    with pytest.raises(UnsupportedVersionError, match=r"stream is m3cvc 1\.1; this decoder reads 2\.x"):
        U.decode_sequence_header_payload(bytes([1, 1]) + payload[2:])
    with pytest.raises(BitstreamError):
        U.decode_sequence_header_payload(bytes([0, 0]) + payload[2:])


def test_sequence_header_bounds():
    with pytest.raises(BitstreamError):
        U.encode_sequence_header(seq_header(width=20000))
    bad = bytearray(U.encode_sequence_header_payload(seq_header(models=[])))
    bad[-1] = 17  # model_count over 16
    with pytest.raises(BitstreamError, match="model_count"):
        U.decode_sequence_header_payload(bytes(bad))
    with pytest.raises(BitstreamError, match="not an m3cvc"):
        U.decode_sequence_header(pack_unit(0x02, b"x"))


def test_segment_roundtrip_full_and_minimal():
    seg = full_segment()
    assert U.decode_segment(U.encode_segment(seg)) == seg
    minimal = U.Segment(U.SegmentHeader(0, 0, 1))
    data = U.encode_segment(minimal)
    assert data == pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 1, 0, 0]))
    assert U.decode_segment(data) == minimal


def test_segment_unit_order_and_text_compression():
    data = U.encode_segment(full_segment())
    types = [u.unit_type for u in iter_units(data)]
    assert types == [U.SEGMENT_HEADER, U.GEN_PARAMS, U.KEYFRAME_TOKENS, U.TEXT, U.FRAME_PTS, U.BASE]
    text = next(u for u in iter_units(data) if u.unit_type == U.TEXT)
    frame = "a rabbit in a meadow, été".encode()
    assert brotli.decompress(text.payload) == bytes([len(frame)]) + frame + full_segment().clip_text.encode()


@pytest.mark.parametrize("frame, clip", [("", "only the clip"), ("only the frame", ""), ("é" * 70, "ü")])
def test_text_unit_carries_both_descriptions(frame, clip):
    seg = U.Segment(U.SegmentHeader(0, 0, 1), frame_text=frame, clip_text=clip)
    data = U.encode_segment(seg)
    assert [u.unit_type for u in iter_units(data)] == [U.SEGMENT_HEADER, U.TEXT]
    assert U.decode_segment(data) == seg
    assert U.decode_text(U.text_payload(frame, clip)) == (frame, clip)


def test_text_unit_smaller_than_two_streams():
    frame, clip = "a large white rabbit stands in a green meadow", "the camera pans slowly right over the meadow"
    apart = sum(len(brotli.compress(t.encode(), quality=11, lgwin=16)) for t in (frame, clip))
    assert len(U.text_payload(frame, clip)) < apart


def test_cfr_pts_integer_formula():
    h = seq_header()  # 24000/1001 fps in 1/90000: 3753.75 ticks per frame
    assert U.frame_pts_cfr(10, 5, h) == [10, 10 + 3753, 10 + 7507, 10 + 11261, 10 + 15015]
    seg = U.Segment(U.SegmentHeader(0, 0, 3))
    assert seg.pts(U.SequenceHeader(8, 8, Fraction(25), Fraction(1, 1000))) == [0, 40, 80]


def test_unknown_units_and_padding_skipped():
    seg = full_segment()
    data = U.encode_segment(seg) + pack_unit(0x42, b"from the future") + pack_unit(U.PADDING, bytes(10))
    assert U.decode_segment(data) == seg


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC"),
    (lambda d: pack_unit(U.TEXT, brotli.compress(b"\x01x")) + d, "not a segment header"),
    (lambda d: d + pack_unit(U.TEXT, brotli.compress(b"\x05again")), "twice"),
    (lambda d: d + pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 1, 0, 0])), "twice"),
    (lambda d: d[:-3], "truncated"),
])
def test_corrupt_segments_raise(mutate, match):
    data = U.encode_segment(U.Segment(U.SegmentHeader(1, 0, 2), frame_text="hello"))
    with pytest.raises(BitstreamError, match=match):
        U.decode_segment(mutate(data))


def test_text_rules():
    head = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 1, 0, 0]))
    cases = {
        brotli.compress(b"\x00\xff\xfe not utf-8"): "clip text: .*UTF-8",
        brotli.compress(b"\x02\xff\xfe not utf-8"): "frame text: .*UTF-8",
        brotli.compress(b"\x00" + b"a" * (U.MAX_TEXT_BYTES + 1), quality=1): "clip text of",
        brotli.compress(b"\x00" + b"a" * U.MAX_TEXT_PLAIN, quality=1): "beyond",
        brotli.compress(b"\x80\x80\x08"): "frame_text_length",
        brotli.compress(b"\x09short"): "frame_text is missing",
        brotli.compress(b"\x00nul\x00"): "NUL",
        brotli.compress(b"\x01hello")[:-2]: "incomplete|Brotli",
        b"\x00garbage": "Brotli",
    }
    for payload, match in cases.items():
        with pytest.raises(BitstreamError, match=match):
            U.decode_segment(head + pack_unit(U.TEXT, payload))
    bomb = brotli.compress(bytes(16 << 20), quality=1)  # 16 MiB of zeros in a few bytes: rejected without inflating it all
    with pytest.raises(BitstreamError, match="beyond"):
        U.decode_text(bomb)


def test_field_bounds_on_read():
    head = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 1, 0, 0]))
    too_many_tokens = bytes([0, 0, 16, 0x80, 0x08, 0x80, 0x08, 1, 1])  # 16 x 1024 x 1024 tokens
    with pytest.raises(BitstreamError, match="tokens"):
        U.decode_segment(head + pack_unit(U.KEYFRAME_TOKENS, too_many_tokens))
    with pytest.raises(BitstreamError, match="keyframe_pos"):
        U.decode_segment(pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 2, 2, 0])))
    with pytest.raises(BitstreamError, match="frame_count"):
        U.decode_segment(pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 0, 0, 0])))
    with pytest.raises(BitstreamError, match="mode"):
        U.decode_segment(head + pack_unit(U.GEN_PARAMS, bytes([1, 1, 1, 9])))
    three = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 3, 0, 0]))
    with pytest.raises(BitstreamError, match="count=4"):  # 16x16, enhancement 0, from frame 0: 4 frames of 3
        U.decode_segment(three + pack_unit(U.BASE, bytes([16, 16, 0, 0, 4])))
    with pytest.raises(BitstreamError, match="not even"):
        U.decode_segment(three + pack_unit(U.BASE, bytes([15, 16, 0, 0, 3, 1, 9, 1, 9, 1, 9])))
    with pytest.raises(BitstreamError, match="holds 2 of 3 frames"):
        U.decode_segment(three + pack_unit(U.BASE, bytes([16, 16, 0, 0, 2, 1, 9, 1, 9])))
    with pytest.raises(BitstreamError, match="after the last temporal unit"):
        U.decode_segment(three + pack_unit(U.BASE, bytes([16, 16, 0, 0, 3, 1, 9, 1, 9, 1, 9, 0])))
    with pytest.raises(BitstreamError, match="does not continue"):  # the second unit skips a frame
        U.decode_segment(three + pack_unit(U.BASE, bytes([16, 16, 0, 0, 1, 1, 9]))
                         + pack_unit(U.BASE, bytes([16, 16, 0, 2, 1, 1, 9])))
    with pytest.raises(BitstreamError, match="timestamps"):
        U.decode_segment(head + pack_unit(U.FRAME_PTS, bytes([2, 0, 1])))


def test_base_splits_into_units_and_a_damaged_unit_ends_the_base_there():
    units = [bytes([i]) * 40 for i in range(1, 6)]
    seg = U.Segment(U.SegmentHeader(0, 0, 5), base=U.BaseLayer((32, 18), units))
    payloads = U.base_payloads(seg.base, 5, unit_bytes=80)  # a new BASE unit once one holds 80 bytes
    assert len(payloads) == 3
    data = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 5, 0, 0])) + b"".join(pack_unit(U.BASE, p) for p in payloads)
    assert U.decode_segment(data) == seg
    second = [u for u in iter_units(data) if u.unit_type == U.BASE][1]
    damaged = bytearray(data)
    damaged[second.offset + 10] ^= 0xFF
    back = U.decode_segment(bytes(damaged))
    assert not back.base.complete and back.base.units == units[:2]  # the frames before the damage
    with pytest.raises(BitstreamError, match="fails its CRC"):  # any other unit damaged: the segment is corrupt
        U.decode_segment(bytes(damaged[:5]) + bytes([damaged[5] ^ 1]) + bytes(damaged[6:]))


def test_units_of_1x_layers_are_skipped():
    head = pack_unit(U.SEGMENT_HEADER, bytes([0, 0, 1, 0, 0]))
    assert U.decode_segment(head + pack_unit(0x06, bytes([2, 0, 2, 0, 0])) + pack_unit(0x05, b"\x01")) \
        == U.Segment(U.SegmentHeader(0, 0, 1))


def test_encoder_rejects_out_of_range():
    for bad in (dict(profile_id=70000), dict(color=U.ColorDescription(256, 1, 1))):
        with pytest.raises(BitstreamError, match="out of"):
            U.encode_sequence_header(seq_header(**bad))
    with pytest.raises(BitstreamError, match="codebook"):
        U.encode_segment(U.Segment(U.SegmentHeader(0, 0, 1), U.KeyframeTokens(1 << 33, 0, (1, 1, 1), (8, 8), b"")))
    with pytest.raises(BitstreamError):
        U.encode_segment(U.Segment(U.SegmentHeader(0, 0, 2, keyframe_pos=2)))
    with pytest.raises(BitstreamError):
        U.encode_segment(U.Segment(U.SegmentHeader(0, 0, 2), frame_pts=[0, 0]))
    with pytest.raises(BitstreamError):
        U.encode_segment(U.Segment(U.SegmentHeader(0, 0, 2), params=GenerationParams(mode="x")))
    for base in (U.BaseLayer((33, 18), [b"a", b"b"]), U.BaseLayer((32, 18), [b"a"]),
                 U.BaseLayer((32, 18), [b"a", b""]), U.BaseLayer((32, 18), [b"a", b"b"], 256)):
        with pytest.raises(BitstreamError, match="base"):
            U.encode_segment(U.Segment(U.SegmentHeader(0, 0, 2), base=base))


def test_gen_params_carry_the_encoders_conditioning():
    """2.1: GEN_PARAMS end with the conditioning (clip diffusion flag, keyframe strength), both or neither; a 2.0
    payload (without them) leaves the profile's defaults; later fields after them are ignored; the size does not
    depend on the values (the encoder counts it before choosing them)."""
    def params_of(segment):
        return U.decode_segment(U.encode_segment(segment)).params

    header = U.SegmentHeader(3, 0, 2)
    for strength, clip in ((0, False), (128, True), (255, False)):
        p = params_of(U.Segment(header, params=GenerationParams(seed=3, keyframe_strength=strength,
                                                                 clip_diffusion=clip)))
        assert (p.seed, p.keyframe_strength, p.clip_diffusion, p.conditioned) == (3, strength, clip, True)
    sizes = {len(U.encode_segment(U.Segment(header, params=GenerationParams(seed=3, keyframe_strength=k,
                                                                             clip_diffusion=c))))
             for k in (0, 1, 255) for c in (False, True)}
    assert len(sizes) == 1
    old = params_of(U.Segment(header, params=GenerationParams(seed=3)))  # what a 2.0 writer wrote
    assert old.keyframe_strength is None and old.clip_diffusion is None and not old.conditioned
    newer = U._params_payload(GenerationParams(seed=3, keyframe_strength=9, clip_diffusion=True)) + b"\x07\x07"
    assert U._decode_params(newer).keyframe_strength == 9  # a later minor's fields after them: ignored
    with pytest.raises(BitstreamError, match="keyframe_strength is missing"):
        U._decode_params(U._params_payload(GenerationParams(seed=3)) + b"\x01")
    with pytest.raises(BitstreamError, match="set with clip diffusion"):
        U.encode_segment(U.Segment(header, params=GenerationParams(keyframe_strength=4)))


def test_strength_follows_the_base_quality():
    from m3cvcav.filters.conditioning import BLURRED, MAX_STRENGTH, SHARP, quantise, strength_for

    qualities = np.linspace(0.5, 1.0, 51)
    strengths = [strength_for(q) for q in qualities]
    assert all(a >= b for a, b in zip(strengths, strengths[1:]))  # a better base is re-noised less
    assert strength_for(SHARP) == 0 and strength_for(BLURRED) == MAX_STRENGTH == strength_for(0.3)
    assert quantise(0) == 0 and quantise(1e-4) == 1 and quantise(0.5) == 128 and quantise(1.0) == 255
