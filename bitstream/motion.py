"""The motion layer: the MOTION unit of kind 2 (docs/bitstream.md §5.5) — per frame of a segment, the motion of each
reference (the segment's keyframe, and the next segment's keyframe when the segment is bidirectional) and the weight
that blends the two predictions.

Each reference's motion is a global model (none, translation, or the four frame corners' displacements, which define
a homography: AV1's global motion / MPEG-4 GMC warp points) plus an optional coarse grid of vectors. Values are
predicted from the previous frames of the same reference and the residuals are coded with the rANS core under
parametric integer tables, so parsing is integer-exact and bounded on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from m3cvcav.errors import BitstreamError, M3cvError

from .entropy import decode_symbols, encode_symbols, quantize
from .framing import read_leb128, unzigzag, write_leb128, zigzag

KIND = 2  # MOTION unit kind of this layer (kind 1 was the unused 1.0 grid; readers skip unknown kinds)
NONE, TRANSLATION, CORNERS = 0, 1, 2  # global model of one reference
CORNER_UNIT = 8  # corner displacements in 1/8 pixel
GRID_UNIT = 4  # grid vectors in 1/4 pixel
WEIGHT_MAX = 16  # blend weight of the next keyframe's prediction, in 1/16
MAX_GRID_CELLS = 4096  # per frame and reference
MAX_VALUE = 1 << 24  # any decoded displacement, in its unit
MAX_FRAMES = 65535
ALPHABET = 32  # symbols of a residual stream; the last one escapes to a LEB128 value in the tail
PRECISION = 12
_STREAMS = 3  # modes, global residuals, grid residuals


@dataclass
class RefMotion:
    """Motion of one reference for one frame: ``model`` (NONE/TRANSLATION/CORNERS), ``corners`` (8 ints: dx, dy of the
    top-left, top-right, bottom-left, bottom-right corners in 1/8 px; for TRANSLATION all four are equal) and ``grid``
    ((rows, cols, 2) int32 in 1/4 px, or None). It maps a pixel of the frame to where it is in the reference."""

    model: int = NONE
    corners: tuple[int, ...] = (0,) * 8
    grid: np.ndarray | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefMotion) and self.model == other.model and self.corners == other.corners and (
            (self.grid is None and other.grid is None)
            or (self.grid is not None and other.grid is not None and np.array_equal(self.grid, other.grid)))


@dataclass
class FrameMotion:
    """Frame ``i`` (1-based within the segment; frame 0 is the keyframe): ``prev`` (motion to the segment's keyframe),
    ``next`` (to the next segment's keyframe, bidirectional segments only) and ``weight`` (of the next keyframe's
    prediction, 0..16)."""

    prev: RefMotion = field(default_factory=RefMotion)
    next: RefMotion | None = None
    weight: int = 0


@dataclass
class SegmentMotion:
    """The MOTION unit of one segment: one FrameMotion per frame after the keyframe; ``grid_shape`` (rows, cols) of
    every grid in the unit, (0, 0) when none has one."""

    frames: list[FrameMotion]
    bidirectional: bool = False
    grid_shape: tuple[int, int] = (0, 0)


def grid_shape(width: int, height: int, cell: int) -> tuple[int, int]:
    """(rows, cols) of a grid of ``cell``-pixel cells over a width × height frame."""
    return max(1, -(-height // cell)), max(1, -(-width // cell))


def table(decay: int) -> np.ndarray:
    """The integer frequency table (sum 2^12) of a residual stream: weights w_0 = 2^40, w_{s+1} = (w_s · decay) >> 8
    (decay 1..255), each at least 1, quantised with ``entropy.quantize``."""
    if not 1 <= decay <= 255:
        raise BitstreamError(f"motion table decay {decay} is outside 1..255")
    weights, w = [], 1 << 40
    for _ in range(ALPHABET):
        weights.append(max(w, 1))
        w = (w * decay) >> 8
    return quantize(np.array(weights, dtype=np.int64), PRECISION)


_TABLES = [None] + [table(d) for d in range(1, 256)]


def _ideal_bits(symbols: np.ndarray, decay: int) -> float:
    freqs = _TABLES[decay].astype(np.float64)
    counts = np.bincount(symbols, minlength=ALPHABET)
    return float(-(counts * np.log2(freqs / (1 << PRECISION))).sum())


# -- values <-> symbols ---------------------------------------------------------------------------------------------

class _Streams:
    """Encoder side: the three symbol streams plus the escape tail."""

    def __init__(self) -> None:
        self.symbols: list[list[int]] = [[] for _ in range(_STREAMS)]
        self.tail = bytearray()

    def put(self, stream: int, value: int, signed: bool = True) -> None:
        u = zigzag(value) if signed else value
        if u >= ALPHABET - 1:
            self.symbols[stream].append(ALPHABET - 1)
            self.tail += write_leb128(u - (ALPHABET - 1))
        else:
            self.symbols[stream].append(u)


class _Parsed:
    """Decoder side: decoded symbol streams and the escape tail, read in coding order."""

    def __init__(self, symbols: list[np.ndarray], tail: bytes) -> None:
        self.symbols, self.tail = symbols, tail
        self.pos = [0] * _STREAMS
        self.tail_pos = 0

    def get(self, stream: int, signed: bool = True) -> int:
        i = self.pos[stream]
        if i >= len(self.symbols[stream]):
            raise BitstreamError("motion: a symbol stream ended early; the stream is corrupt")
        self.pos[stream] = i + 1
        u = int(self.symbols[stream][i])
        if u == ALPHABET - 1:
            try:
                extra, self.tail_pos = read_leb128(self.tail, self.tail_pos, 5)
            except BitstreamError as err:
                raise BitstreamError(f"motion: escape value: {err}; the stream is corrupt") from None
            u += extra
        value = unzigzag(u) if signed else u
        if abs(value) > MAX_VALUE:
            raise BitstreamError(f"motion: value {value} over ±{MAX_VALUE}; the stream is corrupt")
        return value


def _predict_corners(history: list[RefMotion]) -> list[int]:
    """Prediction of a reference's corners from its last two frames: linear extrapolation when both had a model."""
    if not history or history[-1].model == NONE:
        return [0] * 8
    last = list(history[-1].corners)
    if len(history) >= 2 and history[-2].model != NONE:
        return [2 * a - b for a, b in zip(last, history[-2].corners)]
    return last


def _walk(motion: SegmentMotion, visit) -> None:
    """Visit every coded value in the normative order (docs/bitstream.md §5.5.3), keeping each reference's history."""
    history: dict[str, list[RefMotion]] = {"prev": [], "next": []}
    for frame in motion.frames:
        refs = [("prev", frame.prev)] + ([("next", frame.next)] if motion.bidirectional else [])
        for name, ref in refs:
            visit(name, ref, history[name])
            history[name].append(ref)


def encode_motion(motion: SegmentMotion) -> bytes:
    """The MOTION payload (kind 2) of one segment."""
    rows, cols = motion.grid_shape
    if not 0 < len(motion.frames) <= MAX_FRAMES or rows * cols > MAX_GRID_CELLS or (rows == 0) != (cols == 0):
        raise BitstreamError(f"motion of {len(motion.frames)} frames with a {rows}x{cols} grid is outside the "
                             "limits of docs/bitstream.md §5.5")
    s = _Streams()

    def visit(name: str, ref: RefMotion, history: list[RefMotion]) -> None:
        if ref is None or ref.model not in (NONE, TRANSLATION, CORNERS):
            raise BitstreamError(f"frame motion of reference {name} is missing or has an unknown model")
        has_grid = ref.grid is not None
        if has_grid and (rows == 0 or ref.grid.shape != (rows, cols, 2)):
            raise BitstreamError(f"motion grid {None if ref.grid is None else ref.grid.shape} does not match the "
                                 f"unit's {rows}x{cols}")
        s.put(0, ref.model * 2 + int(has_grid), signed=False)
        predicted = _predict_corners(history)
        if ref.model == TRANSLATION:
            if any(ref.corners[i] != ref.corners[i % 2] for i in range(8)):
                raise BitstreamError("a translation moves all four corners alike")
            for i in range(2):
                s.put(1, ref.corners[i] - predicted[i])
        elif ref.model == CORNERS:
            for i in range(8):
                s.put(1, ref.corners[i] - predicted[i])
        if has_grid:
            base = _last_grid(history, rows, cols)
            for value in (ref.grid.astype(np.int64) - base).ravel().tolist():
                s.put(2, int(value))

    _walk(motion, visit)
    for frame in motion.frames:
        if motion.bidirectional:
            if not 0 <= frame.weight <= WEIGHT_MAX:
                raise BitstreamError(f"blend weight {frame.weight} is outside 0..{WEIGHT_MAX}")
            s.put(0, frame.weight, signed=False)
    out = bytearray(write_leb128(KIND) + write_leb128(len(motion.frames)))
    out += bytes((1 if motion.bidirectional else 0,)) + write_leb128(rows) + write_leb128(cols)
    for symbols in s.symbols:
        array = np.asarray(symbols, dtype=np.int64)
        decay = min(range(1, 256), key=lambda d: _ideal_bits(array, d)) if array.size else 128
        data = encode_symbols(array, _TABLES[decay]) if array.size else b""
        out += bytes((decay,)) + write_leb128(array.size) + write_leb128(len(data)) + data
    return bytes(out + s.tail)


def _last_grid(history: list[RefMotion], rows: int, cols: int) -> np.ndarray:
    for ref in reversed(history):
        if ref.grid is not None:
            return ref.grid.astype(np.int64)
        break  # only the previous frame's grid predicts
    return np.zeros((rows, cols, 2), np.int64)


def decode_motion(payload: bytes, frame_count: int) -> SegmentMotion | None:
    """Parse a MOTION payload for a segment of ``frame_count`` frames; None for a kind this decoder does not know."""
    from .units import _Reader  # the bounded field reader shared by every unit

    r = _Reader(payload, "motion")
    kind = r.uleb("kind")
    if kind != KIND:
        return None
    count = r.uleb("frames", 1, MAX_FRAMES)
    if count != frame_count - 1:
        raise r.fail(f"{count} frames of motion for a segment of {frame_count} frames")
    bidirectional = bool(r.u8("flags") & 1)
    rows, cols = r.uleb("grid_rows", 0, MAX_GRID_CELLS), r.uleb("grid_cols", 0, MAX_GRID_CELLS)
    if rows * cols > MAX_GRID_CELLS or (rows == 0) != (cols == 0):
        raise r.fail(f"a {rows}x{cols} grid is over {MAX_GRID_CELLS} cells")
    refs = count * (2 if bidirectional else 1)
    limits = (refs + (count if bidirectional else 0), refs * 8, refs * rows * cols * 2)
    symbols = []
    for stream, limit in enumerate(limits):
        decay = r.u8("decay")
        if decay == 0:
            raise r.fail("a table decay of 0")
        n = r.uleb("symbols", 0, limit)
        data = r.raw(r.uleb("bytes", 0, len(payload)), "rANS data")
        try:
            symbols.append(decode_symbols(data, n, _TABLES[decay]) if n else np.zeros(0, np.int64))
        except M3cvError as err:
            raise r.fail(f"stream {stream}: {err}") from None
    parsed = _Parsed(symbols, r.rest())
    motion = SegmentMotion([FrameMotion() for _ in range(count)], bidirectional, (rows, cols))
    history: dict[str, list[RefMotion]] = {"prev": [], "next": []}
    for frame in motion.frames:
        frame.prev = _decode_ref(parsed, history["prev"], rows, cols)
        history["prev"].append(frame.prev)
        if bidirectional:
            frame.next = _decode_ref(parsed, history["next"], rows, cols)
            history["next"].append(frame.next)
    if bidirectional:
        for frame in motion.frames:
            frame.weight = parsed.get(0, signed=False)
            if frame.weight > WEIGHT_MAX:
                raise BitstreamError(f"motion: blend weight {frame.weight} over {WEIGHT_MAX}; the stream is corrupt")
    if any(p != len(s) for p, s in zip(parsed.pos, symbols)) or parsed.tail_pos != len(parsed.tail):
        raise BitstreamError("motion: unread symbols or tail bytes; the stream is corrupt")
    return motion


def _decode_ref(parsed: _Parsed, history: list[RefMotion], rows: int, cols: int) -> RefMotion:
    """One reference's motion for one frame, in the order ``encode_motion`` wrote it."""
    code = parsed.get(0, signed=False)
    model, has_grid = code // 2, bool(code & 1)
    if model > CORNERS or (has_grid and rows == 0):
        raise BitstreamError(f"motion: mode {code} is invalid here; the stream is corrupt")
    predicted = _predict_corners(history)
    corners = [0] * 8
    if model == TRANSLATION:
        dx, dy = (predicted[i] + parsed.get(1) for i in range(2))
        corners = [dx, dy] * 4
    elif model == CORNERS:
        corners = [predicted[i] + parsed.get(1) for i in range(8)]
    grid = None
    if has_grid:
        residual = np.array([parsed.get(2) for _ in range(rows * cols * 2)], np.int64).reshape(rows, cols, 2)
        grid = _last_grid(history, rows, cols) + residual
        if int(np.abs(grid).max()) > MAX_VALUE:
            raise BitstreamError(f"motion: a grid vector over ±{MAX_VALUE}; the stream is corrupt")
        grid = grid.astype(np.int32)
    if any(abs(c) > MAX_VALUE for c in corners):
        raise BitstreamError(f"motion: a corner displacement over ±{MAX_VALUE}; the stream is corrupt")
    return RefMotion(model, tuple(corners), grid)
