"""The unit payloads of docs/bitstream.md (§4–§6): dataclasses, segment packets and the sequence header.

Everything here is integer-exact. Readers enforce the bounds of docs/bitstream.md §10 before allocating anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import brotli

from m3cvcav.core.errors import BitstreamError, UnsupportedVersionError

from .framing import MAX_UNIT_PAYLOAD, iter_units, pack_unit, read_leb128, unzigzag, write_leb128, zigzag

VERSION = (2, 1)  # 2.1: GEN_PARAMS carries the encoder's conditioning of the generators (keyframe strength, clip)
FIRST_VERSION = (2, 0)  # 2.0: every frame's pixels in the AV1 base layer (BASE units); what lite writes

SEQUENCE_HEADER = 0x01
SEGMENT_HEADER = 0x02
KEYFRAME_TOKENS = 0x03
TEXT = 0x04
GEN_PARAMS = 0x07
FRAME_PTS = 0x08
BASE = 0x0A
PADDING = 0x7F
ONCE_PER_SEGMENT = (GEN_PARAMS, KEYFRAME_TOKENS, TEXT, FRAME_PTS)


@dataclass(frozen=True)
class ModelRef:
    """What the sequence header records of a model the decoder needs: a stable numeric id and the weights' sha256."""

    model_id: int  # stable, assigned in the profile, never derived from ordering
    sha256: bytes  # 32 bytes: sha256 over the weight files (see engines.registry for how multi-file models hash)
    name: str = ""  # human-readable, not in the bitstream


@dataclass
class GenerationParams:
    seed: int = 0
    steps: int = 0
    scheduler_id: int = 0
    mode: str = "it2v"  # "it2v" (keyframe image + text) or "tt2v" (text only)
    # 2.1, both set or neither (neither: the profile's defaults): the encoder's conditioning of the generators
    keyframe_strength: int | None = None  # 0: the keyframe is the base picture; 1..255: img2img at k/255 of the schedule
    clip_diffusion: bool | None = None  # False: the frames are the base pictures; True: the clip generator makes them

    @property
    def conditioned(self) -> bool:
        """Whether the encoder conditioned the generators (2.1); else the profile's defaults apply."""
        return self.keyframe_strength is not None


U32_MAX = (1 << 32) - 1
MAX_DIMENSION = 16384
MAX_MODELS = 16
MAX_SEGMENT_FRAMES = 65536
MAX_TOKENS = 1 << 20
MAX_TEXT_BYTES = 65536
MAX_TEXT_PLAIN = 2 * MAX_TEXT_BYTES + 3  # decompressed TEXT payload: uleb(≤ 65 536) + two texts
MAX_STEPS = 1000
MAX_ENHANCEMENT = 255
MAX_TEMPORAL_UNIT = MAX_UNIT_PAYLOAD // 2  # one frame's AV1 temporal unit
BASE_UNIT_BYTES = 1 << 16  # an encoder starts a new BASE unit past this many bytes (finer concealment)
SCENE_CUT = 0x01
MODES = ("it2v", "tt2v")


@dataclass(frozen=True)
class ColorDescription:
    """ITU-T H.273 code points and range flag; defaults are BT.709 limited range."""

    primaries: int = 1
    transfer: int = 1
    matrix: int = 1
    full_range: bool = False


@dataclass
class SequenceHeader:
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    color: ColorDescription = field(default_factory=ColorDescription)
    profile_id: int = 0
    models: list[ModelRef] = field(default_factory=list)
    version: tuple[int, int] = FIRST_VERSION  # encoders write the lowest version whose features they use


@dataclass
class SegmentHeader:
    index: int
    first_pts: int
    frame_count: int
    keyframe_pos: int = 0
    flags: int = 0


@dataclass
class KeyframeTokens:
    codebook_id: int
    rate_point: int
    shape: tuple[int, int, int]  # (levels, grid_h, grid_w)
    image_size: tuple[int, int]  # (height, width) of the source keyframe
    payload: bytes  # entropy-coded indices, docs/entropy.md


@dataclass
class BaseLayer:
    """A segment's pixels (§5.10): one closed AV1 sequence at the coded ``size`` (width, height), a temporal unit
    per frame (``bitstream.av1``), and the decoder-side ``enhancement`` the encoder chose (0: bicubic).
    ``complete`` is False when a reader dropped the units from a damaged BASE unit on: ``units`` then holds the
    frames before the damage."""

    size: tuple[int, int]
    units: list[bytes]
    enhancement: int = 0
    complete: bool = True

    @property
    def bytes(self) -> int:
        return sum(len(u) for u in self.units)


@dataclass
class Segment:
    header: SegmentHeader
    tokens: KeyframeTokens | None = None
    frame_text: str = ""
    clip_text: str = ""
    base: BaseLayer | None = None  # every frame's pixels; None in a text-only (tt2v) stream
    params: GenerationParams | None = None
    frame_pts: list[int] | None = None  # per-frame pts for VFR; None = constant rate from first_pts

    def pts(self, seq: SequenceHeader) -> list[int]:
        """The pts of every frame (docs/bitstream.md §5.2)."""
        if self.frame_pts is not None:
            return list(self.frame_pts)
        return frame_pts_cfr(self.header.first_pts, self.header.frame_count, seq)


@dataclass
class CorruptSegment:
    """A segment the reader could not decode; index/first_pts/frame_count are -1/None/0 when unknown."""

    index: int
    first_pts: int | None
    frame_count: int
    reason: str


def frame_pts_cfr(first_pts: int, count: int, seq: SequenceHeader) -> list[int]:
    """pts_i = first_pts + (i · fps_den · tb_den) // (fps_num · tb_num)."""
    num = seq.fps.denominator * seq.time_base.denominator
    den = seq.fps.numerator * seq.time_base.numerator
    return [first_pts + (i * num) // den for i in range(count)]


# -- field coding ---------------------------------------------------------------------------------------------------

def _sleb(value: int) -> bytes:
    if not -(1 << 62) < value < (1 << 62):
        raise BitstreamError(f"signed value {value} is outside ±2^62")
    return write_leb128(zigzag(value))


class _Reader:
    """Bounded field reader over one unit payload."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def fail(self, msg: str) -> BitstreamError:
        return BitstreamError(f"{self.what}: {msg}; the stream is corrupt")

    def uleb(self, name: str, lo: int = 0, hi: int = U32_MAX) -> int:
        try:
            value, self.pos = read_leb128(self.data, self.pos, 5)
        except BitstreamError as err:
            raise self.fail(f"field {name}: {err}") from None
        if not lo <= value <= hi:
            raise self.fail(f"field {name}={value} is outside {lo}..{hi}")
        return value

    def sleb(self, name: str) -> int:
        try:
            z, self.pos = read_leb128(self.data, self.pos, 10)
        except BitstreamError as err:
            raise self.fail(f"field {name}: {err}") from None
        if z >= 1 << 63:
            raise self.fail(f"field {name} is outside ±2^62")
        return unzigzag(z)

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise self.fail(f"field {name} is missing (payload too short)")
        self.pos += 1
        return self.data[self.pos - 1]

    def raw(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"field {name} is missing (payload too short)")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def rest(self) -> bytes:
        out, self.pos = self.data[self.pos:], len(self.data)
        return out


# -- sequence header ------------------------------------------------------------------------------------------------

def encode_sequence_header_payload(h: SequenceHeader) -> bytes:
    """The SEQUENCE_HEADER payload (§5.1)."""
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        raise BitstreamError(f"size {h.width}x{h.height} is outside 1..{MAX_DIMENSION}; scale the input down")
    fields = (h.fps.numerator, h.fps.denominator, h.time_base.numerator, h.time_base.denominator)
    if not all(1 <= v <= U32_MAX for v in fields):
        raise BitstreamError(f"frame rate {h.fps} / time base {h.time_base} must be positive rationals of 32-bit terms")
    if len(h.models) > MAX_MODELS:
        raise BitstreamError(f"{len(h.models)} models exceed the limit of {MAX_MODELS}")
    c = h.color
    if not all(0 <= v <= 255 for v in (c.primaries, c.transfer, c.matrix, *h.version)) \
            or not 0 <= h.profile_id <= 65535:
        raise BitstreamError(f"colour code points {c}, version {h.version} or profile id {h.profile_id} are out of "
                             "range (0..255 each; profile 0..65535)")
    out = bytearray((h.version[0], h.version[1]))
    for v in (h.width, h.height, *fields):
        out += write_leb128(v)
    out += bytes((c.primaries, c.transfer, c.matrix, 1 if c.full_range else 0))
    out += write_leb128(h.profile_id) + write_leb128(len(h.models))
    for m in h.models:
        if len(m.sha256) != 32 or not 0 <= m.model_id <= U32_MAX:
            raise BitstreamError(f"model {m.model_id}: needs a 32-bit id and a 32-byte sha256")
        out += write_leb128(m.model_id) + bytes(m.sha256)
    return bytes(out)


def decode_sequence_header_payload(data: bytes) -> SequenceHeader:
    r = _Reader(data, "sequence header")
    major, minor = r.u8("version_major"), r.u8("version_minor")
    if major == 0:
        raise r.fail("version_major 0 is invalid")
    if major != VERSION[0]:
        advice = "upgrade m3cvcav" if major > VERSION[0] else \
            "decode it with the m3cvcav release that wrote it (pixels moved to an AV1 base in 2.0)"
        raise UnsupportedVersionError(f"stream is m3cvc {major}.{minor}; this decoder reads {VERSION[0]}.x: {advice}")
    width = r.uleb("width", 1, MAX_DIMENSION)
    height = r.uleb("height", 1, MAX_DIMENSION)
    fps = Fraction(r.uleb("fps_num", 1), r.uleb("fps_den", 1))
    tb = Fraction(r.uleb("tb_num", 1), r.uleb("tb_den", 1))
    prim, trc, mat, flags = (r.u8(n) for n in ("colour_primaries", "transfer", "matrix", "colour_flags"))
    profile_id = r.uleb("profile_id", 0, 65535)
    count = r.uleb("model_count", 0, MAX_MODELS)
    models = [ModelRef(r.uleb("model_id"), r.raw(32, "sha256")) for _ in range(count)]
    return SequenceHeader(width, height, fps, tb, ColorDescription(prim, trc, mat, bool(flags & 1)), profile_id,
                          models, (major, minor))


def encode_sequence_header(h: SequenceHeader) -> bytes:
    """The framed SEQUENCE_HEADER unit, as containers store it."""
    return pack_unit(SEQUENCE_HEADER, encode_sequence_header_payload(h))


def decode_sequence_header(data: bytes) -> tuple[SequenceHeader, int]:
    """Parse the framed SEQUENCE_HEADER unit at the start of ``data``; returns (header, unit size)."""
    try:
        unit = next(iter_units(data))
    except StopIteration:
        raise BitstreamError("no sequence header: the data is empty") from None
    if unit.unit_type != SEQUENCE_HEADER:
        raise BitstreamError(f"expected a sequence header unit, found unit type {unit.unit_type:#04x}; "
                             "this is not an m3cvc stream")
    if not unit.crc_ok:
        raise BitstreamError("the sequence header fails its CRC; the stream is corrupt")
    return decode_sequence_header_payload(unit.payload), unit.size


# -- segment units --------------------------------------------------------------------------------------------------

def _text_bytes(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_TEXT_BYTES or "\x00" in text:
        raise BitstreamError(f"{what} of {len(raw)} bytes is over {MAX_TEXT_BYTES} or contains NUL; shorten it")
    return raw


def text_plaintext(frame_text: str, clip_text: str) -> bytes:
    """What the TEXT unit compresses (§5.4): ``uleb(len(D^F)) | D^F | D^C`` (UTF-8)."""
    frame = _text_bytes(frame_text, "frame description")
    return write_leb128(len(frame)) + frame + _text_bytes(clip_text, "clip description")


def text_payload(frame_text: str, clip_text: str) -> bytes:
    """The TEXT payload (§5.4): one Brotli stream of ``text_plaintext``."""
    return brotli.compress(text_plaintext(frame_text, clip_text), mode=brotli.MODE_TEXT, quality=11, lgwin=16)


def _utf8(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError(f"{what}: text is not valid UTF-8; the stream is corrupt") from None
    if "\x00" in text:
        raise BitstreamError(f"{what}: text contains NUL; the stream is corrupt")
    return text


def decode_text(payload: bytes) -> tuple[str, str]:
    """Bounded Brotli + strict UTF-8 decode of a TEXT unit (§5.4): (frame text D^F, clip text D^C)."""
    d = brotli.Decompressor()
    try:
        out = d.process(payload, output_buffer_limit=MAX_TEXT_PLAIN + 1)
    except brotli.error as err:
        raise BitstreamError(f"text: invalid Brotli data ({err}); the stream is corrupt") from None
    if len(out) > MAX_TEXT_PLAIN or not d.can_accept_more_data():
        raise BitstreamError(f"text: expands beyond {MAX_TEXT_PLAIN} bytes; the stream is corrupt")
    if not d.is_finished():
        raise BitstreamError("text: Brotli stream is incomplete or followed by extra bytes; the stream is corrupt")
    r = _Reader(out, "text")
    frame = r.raw(r.uleb("frame_text_length", 0, MAX_TEXT_BYTES), "frame_text")
    clip = r.rest()
    if len(clip) > MAX_TEXT_BYTES:
        raise r.fail(f"clip text of {len(clip)} bytes is over {MAX_TEXT_BYTES}")
    return _utf8(frame, "frame text"), _utf8(clip, "clip text")


def token_descriptor(t: KeyframeTokens) -> bytes:
    levels, gh, gw = t.shape
    if not (1 <= levels <= 16 and 1 <= gh <= 1024 and 1 <= gw <= 1024 and levels * gh * gw <= MAX_TOKENS):
        raise BitstreamError(f"token grid {t.shape} is over the limits (16, 1024, 1024; 2^20 tokens)")
    if not all(1 <= v <= MAX_DIMENSION for v in t.image_size) or not 0 <= t.rate_point <= 255 \
            or not 0 <= t.codebook_id <= U32_MAX:
        raise BitstreamError(f"keyframe size {t.image_size}, rate point {t.rate_point} or codebook id "
                             f"{t.codebook_id} is out of range")
    return b"".join(write_leb128(v) for v in (t.codebook_id, t.rate_point, levels, gh, gw, *t.image_size))


def _decode_tokens(payload: bytes) -> tuple[KeyframeTokens, int]:
    r = _Reader(payload, "keyframe tokens")
    codebook, rate = r.uleb("codebook_id"), r.uleb("rate_point", 0, 255)
    shape = (r.uleb("levels", 1, 16), r.uleb("grid_h", 1, 1024), r.uleb("grid_w", 1, 1024))
    if shape[0] * shape[1] * shape[2] > MAX_TOKENS:
        raise r.fail(f"token grid {shape} holds more than {MAX_TOKENS} tokens")
    size = (r.uleb("image_h", 1, MAX_DIMENSION), r.uleb("image_w", 1, MAX_DIMENSION))
    descriptor = r.pos
    return KeyframeTokens(codebook, rate, shape, size, r.rest()), descriptor


def token_descriptor_size(payload: bytes) -> int:
    """Bytes of the descriptor fields at the start of a KEYFRAME_TOKENS payload (for layer accounting)."""
    return _decode_tokens(payload)[1]


def _params_payload(p: GenerationParams) -> bytes:
    if p.mode not in MODES or not 0 <= p.steps <= MAX_STEPS or not 0 <= p.scheduler_id <= 255 \
            or not 0 <= p.seed <= U32_MAX or (p.keyframe_strength is None) != (p.clip_diffusion is None) \
            or not 0 <= (p.keyframe_strength or 0) <= 255:
        raise BitstreamError(f"generation params {p} are out of range (seed 32-bit, steps ≤ {MAX_STEPS}, "
                             "scheduler 0..255, mode it2v|tt2v, keyframe strength 0..255 set with clip diffusion)")
    out = write_leb128(p.seed) + write_leb128(p.steps) + write_leb128(p.scheduler_id) + bytes((MODES.index(p.mode),))
    if p.conditioned:
        out += bytes((int(bool(p.clip_diffusion)), p.keyframe_strength))
    return out


def _decode_params(payload: bytes) -> GenerationParams:
    r = _Reader(payload, "generation params")
    seed, steps, sched = r.uleb("seed"), r.uleb("steps", 0, MAX_STEPS), r.uleb("scheduler_id", 0, 255)
    mode = r.u8("mode")
    if mode >= len(MODES):
        raise r.fail(f"mode {mode} is not 0 (it2v) or 1 (tt2v)")
    params = GenerationParams(seed=seed, steps=steps, scheduler_id=sched, mode=MODES[mode])
    if r.pos < len(payload):  # 2.1: the conditioning (later minors may add fields after it)
        flags = r.u8("conditioning")
        params.clip_diffusion, params.keyframe_strength = bool(flags & 1), r.u8("keyframe_strength")
    return params


def _pts_payload(pts: list[int], header: SegmentHeader) -> bytes:
    if len(pts) != header.frame_count or pts[0] != header.first_pts or any(b <= a for a, b in zip(pts, pts[1:])):
        raise BitstreamError("frame_pts must hold frame_count strictly increasing values starting at first_pts")
    return write_leb128(len(pts)) + _sleb(pts[0]) + b"".join(write_leb128(b - a) for a, b in zip(pts, pts[1:]))


def _decode_pts(payload: bytes, header: SegmentHeader) -> list[int]:
    r = _Reader(payload, "frame pts")
    count = r.uleb("count", 1, MAX_SEGMENT_FRAMES)
    if count != header.frame_count:
        raise r.fail(f"{count} timestamps for {header.frame_count} frames")
    pts = [r.sleb("pts_0")]
    if pts[0] != header.first_pts:
        raise r.fail(f"pts_0 {pts[0]} differs from first_pts {header.first_pts}")
    for _ in range(count - 1):
        pts.append(pts[-1] + r.uleb("pts_delta", 1))
    return pts


def _header_payload(h: SegmentHeader) -> bytes:
    if not (0 <= h.index <= U32_MAX and 1 <= h.frame_count <= MAX_SEGMENT_FRAMES
            and 0 <= h.keyframe_pos < h.frame_count and 0 <= h.flags <= U32_MAX):
        raise BitstreamError(f"segment header {h} is out of range (1..{MAX_SEGMENT_FRAMES} frames, "
                             "keyframe inside the segment)")
    return write_leb128(h.index) + _sleb(h.first_pts) + write_leb128(h.frame_count) \
        + write_leb128(h.keyframe_pos) + write_leb128(h.flags)


def decode_segment_header(payload: bytes) -> SegmentHeader:
    r = _Reader(payload, "segment header")
    index, first_pts = r.uleb("index"), r.sleb("first_pts")
    count = r.uleb("frame_count", 1, MAX_SEGMENT_FRAMES)
    return SegmentHeader(index, first_pts, count, r.uleb("keyframe_pos", 0, count - 1), r.uleb("flags"))


def encode_segment(segment: Segment) -> bytes:
    """The segment packet (§6): its units in the normative order."""
    h = segment.header
    units = [pack_unit(SEGMENT_HEADER, _header_payload(h))]
    if segment.params is not None:
        units.append(pack_unit(GEN_PARAMS, _params_payload(segment.params)))
    if segment.tokens is not None:
        units.append(pack_unit(KEYFRAME_TOKENS, token_descriptor(segment.tokens) + bytes(segment.tokens.payload)))
    if segment.frame_text or segment.clip_text:
        units.append(pack_unit(TEXT, text_payload(segment.frame_text, segment.clip_text)))
    if segment.frame_pts is not None:
        units.append(pack_unit(FRAME_PTS, _pts_payload(list(segment.frame_pts), h)))
    if segment.base is not None:
        units.append(encode_base(segment.base, h.frame_count))
    return b"".join(units)


def encode_base(base: BaseLayer, frame_count: int) -> bytes:
    """A segment's BASE units, framed: the end of its packet (§6)."""
    return b"".join(pack_unit(BASE, payload) for payload in base_payloads(base, frame_count))


def peek_segment_header(data: bytes) -> SegmentHeader | None:
    """The segment header of a packet when its first unit is intact, else None (for corrupt-segment reports)."""
    try:
        unit = next(iter_units(data))
        if unit.unit_type == SEGMENT_HEADER and unit.crc_ok:
            return decode_segment_header(unit.payload)
    except (BitstreamError, StopIteration):
        pass
    return None


def base_payloads(base: BaseLayer, frame_count: int, unit_bytes: int = BASE_UNIT_BYTES) -> list[bytes]:
    """The BASE payloads of a segment's base (§5.10): runs of temporal units, a new unit once one holds
    ``unit_bytes``."""
    width, height = base.size
    if len(base.units) != frame_count or not (2 <= width <= MAX_DIMENSION and 2 <= height <= MAX_DIMENSION) \
            or width % 2 or height % 2 or not 0 <= base.enhancement <= MAX_ENHANCEMENT:
        raise BitstreamError(f"base layer of {len(base.units)} frames at {width}x{height}, enhancement "
                             f"{base.enhancement}, for a segment of {frame_count}: out of range")
    if any(not 1 <= len(u) <= MAX_TEMPORAL_UNIT for u in base.units):
        raise BitstreamError("a base temporal unit is empty or over 8 MiB")
    runs, start, size = [], 0, 0
    for i, tu in enumerate(base.units):
        size += len(tu)
        if size >= unit_bytes or i == len(base.units) - 1:
            runs.append((start, i + 1))
            start, size = i + 1, 0
    head = write_leb128(width) + write_leb128(height) + write_leb128(base.enhancement)
    return [head + write_leb128(a) + write_leb128(b - a)
            + b"".join(write_leb128(len(tu)) + tu for tu in base.units[a:b]) for a, b in runs]


def _decode_base(payload: bytes, frame_count: int, base: BaseLayer | None) -> BaseLayer:
    """Add one BASE unit's temporal units to the segment's ``base`` (None before its first)."""
    r = _Reader(payload, "base")
    size = (r.uleb("width", 2, MAX_DIMENSION), r.uleb("height", 2, MAX_DIMENSION))
    enhancement = r.uleb("enhancement", 0, MAX_ENHANCEMENT)
    first = r.uleb("first_frame", 0, frame_count - 1)
    count = r.uleb("count", 1, frame_count - first)
    if size[0] % 2 or size[1] % 2:
        raise r.fail(f"coded size {size[0]}x{size[1]} is not even")
    if base is None:
        base = BaseLayer(size, [], enhancement)
    if (size, enhancement) != (base.size, base.enhancement) or first != len(base.units):
        raise r.fail(f"unit for frames {first}.. at {size[0]}x{size[1]} does not continue the segment's base "
                     f"({len(base.units)} frames at {base.size[0]}x{base.size[1]})")
    for _ in range(count):
        base.units.append(r.raw(r.uleb("unit_size", 1, MAX_TEMPORAL_UNIT), "temporal unit"))
    if r.pos != len(payload):
        raise r.fail(f"{len(payload) - r.pos} bytes after the last temporal unit")
    return base


def decode_segment(data: bytes) -> Segment:
    """Parse one segment packet; raises BitstreamError on a CRC failure or any violation of docs/bitstream.md, except
    that a BASE unit failing its CRC ends the segment's base there (``base.complete`` False: the decoder conceals
    the frames from it on)."""
    seen: set[int] = set()
    segment: Segment | None = None
    damaged = False
    for unit in iter_units(data):
        if not unit.crc_ok and unit.unit_type == BASE and segment is not None:
            damaged = True
            continue
        if not unit.crc_ok:
            raise BitstreamError(f"unit type {unit.unit_type:#04x} at offset {unit.offset} fails its CRC")
        t, p = unit.unit_type, unit.payload
        if segment is None:
            if t != SEGMENT_HEADER:
                raise BitstreamError(f"segment starts with unit type {t:#04x}, not a segment header")
            segment = Segment(decode_segment_header(p))
            continue
        if t == SEGMENT_HEADER or (t in ONCE_PER_SEGMENT and t in seen):
            raise BitstreamError(f"segment {segment.header.index} holds unit type {t:#04x} twice")
        seen.add(t)
        if t == KEYFRAME_TOKENS:
            segment.tokens = _decode_tokens(p)[0]
        elif t == TEXT:
            segment.frame_text, segment.clip_text = decode_text(p)
        elif t == BASE and not damaged:
            segment.base = _decode_base(p, segment.header.frame_count, segment.base)
        elif t == GEN_PARAMS:
            segment.params = _decode_params(p)
        elif t == FRAME_PTS:
            segment.frame_pts = _decode_pts(p, segment.header)
    if segment is None:
        raise BitstreamError("empty segment packet")
    if segment.base is not None and len(segment.base.units) != segment.header.frame_count and not damaged:
        raise BitstreamError(f"segment {segment.header.index}: the base holds {len(segment.base.units)} of "
                             f"{segment.header.frame_count} frames")
    if damaged:
        segment.base = segment.base or BaseLayer((0, 0), [])  # damaged from its first unit: no size known
        segment.base.complete = False
    return segment
