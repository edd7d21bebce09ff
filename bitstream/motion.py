"""The motion layer: the MOTION unit of kind 2 (docs/bitstream.md §5.5) — per frame of a segment, the motion of each
reference (the segment's keyframe, and the next segment's keyframe when the segment is bidirectional) and the weight
that blends the two predictions.

Each reference's motion is a global model (none, translation, or the four frame corners' displacements, which define
a homography: AV1's global motion / MPEG-4 GMC warp points) plus an optional coarse grid of vectors. Values are
predicted from the previous frames of the same reference and the residuals are coded with the rANS core under
parametric integer tables (``bitstream.symbols``), so parsing is integer-exact and bounded on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from m3cvcav.core.errors import BitstreamError

from . import symbols
from .framing import write_leb128

KIND = 2  # MOTION unit kind of this layer (kind 1 was the unused 1.0 grid; readers skip unknown kinds)
NONE, TRANSLATION, CORNERS = 0, 1, 2  # global model of one reference
CORNER_UNIT = 8  # corner displacements in 1/8 pixel
GRID_UNIT = 4  # grid vectors in 1/4 pixel
WEIGHT_MAX = 16  # blend weight of the next keyframe's prediction, in 1/16
MAX_GRID_CELLS = 4096  # per frame and reference
MAX_VALUE = 1 << 24  # any decoded displacement, in its unit
MAX_FRAMES = 65535


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
    every grid in the unit, (0, 0) when none has one; ``anchor``: in a segment whose keyframe is predicted (an inter
    keyframe, a refresh), the keyframe's motion to the previous segment's keyframe."""

    frames: list[FrameMotion]
    bidirectional: bool = False
    grid_shape: tuple[int, int] = (0, 0)
    anchor: RefMotion | None = None


def grid_shape(width: int, height: int, cell: int) -> tuple[int, int]:
    """(rows, cols) of a grid of ``cell``-pixel cells over a width × height frame."""
    return max(1, -(-height // cell)), max(1, -(-width // cell))


class _Values:
    """Decoder side: the unit's three decoded streams (modes, corner residuals, grid residuals), read in order."""

    def __init__(self, streams: list[np.ndarray]) -> None:
        self.streams, self.pos = streams, [0, 0, 0]

    def take(self, stream: int, n: int = 1) -> np.ndarray:
        i = self.pos[stream]
        if i + n > len(self.streams[stream]):
            raise BitstreamError("motion: a stream ended early; the stream is corrupt")
        self.pos[stream] = i + n
        return self.streams[stream][i:i + n]


def predict_corners(history: list[RefMotion]) -> list[int]:
    """Prediction of a reference's corners from its last two frames: linear extrapolation when both had a model."""
    if not history or history[-1].model == NONE:
        return [0] * 8
    last = list(history[-1].corners)
    if len(history) >= 2 and history[-2].model != NONE:
        return [2 * a - b for a, b in zip(last, history[-2].corners)]
    return last


def _walk(motion: SegmentMotion, visit) -> None:
    """Visit every coded value in the normative order (docs/bitstream.md §5.5), keeping each reference's history."""
    if motion.anchor is not None:
        visit("anchor", motion.anchor, [])
    history: dict[str, list[RefMotion]] = {"prev": [], "next": []}
    for frame in motion.frames:
        refs = [("prev", frame.prev)] + ([("next", frame.next)] if motion.bidirectional else [])
        for name, ref in refs:
            visit(name, ref, history[name])
            history[name].append(ref)


def encode_motion(motion: SegmentMotion) -> bytes:
    """The MOTION payload (kind 2) of one segment."""
    rows, cols = motion.grid_shape
    if not (0 if motion.anchor else 1) <= len(motion.frames) <= MAX_FRAMES or rows * cols > MAX_GRID_CELLS \
            or (rows == 0) != (cols == 0):
        raise BitstreamError(f"motion of {len(motion.frames)} frames with a {rows}x{cols} grid is outside the "
                             "limits of docs/bitstream.md §5.5")
    modes: list[int] = []
    corners: list[int] = []
    grids: list[np.ndarray] = []

    def visit(name: str, ref: RefMotion, history: list[RefMotion]) -> None:
        if ref is None or ref.model not in (NONE, TRANSLATION, CORNERS):
            raise BitstreamError(f"frame motion of reference {name} is missing or has an unknown model")
        has_grid = ref.grid is not None
        if has_grid and (rows == 0 or ref.grid.shape != (rows, cols, 2)):
            raise BitstreamError(f"motion grid {None if ref.grid is None else ref.grid.shape} does not match the "
                                 f"unit's {rows}x{cols}")
        modes.append(ref.model * 2 + int(has_grid))
        predicted = predict_corners(history)
        if ref.model == TRANSLATION:
            if any(ref.corners[i] != ref.corners[i % 2] for i in range(8)):
                raise BitstreamError("a translation moves all four corners alike")
            corners.extend(ref.corners[i] - predicted[i] for i in range(2))
        elif ref.model == CORNERS:
            corners.extend(ref.corners[i] - predicted[i] for i in range(8))
        if has_grid:
            grids.append((ref.grid.astype(np.int64) - _last_grid(history, rows, cols)).ravel())

    _walk(motion, visit)
    if motion.bidirectional:
        if not all(0 <= f.weight <= WEIGHT_MAX for f in motion.frames):
            raise BitstreamError(f"a blend weight is outside 0..{WEIGHT_MAX}")
        modes.extend(f.weight for f in motion.frames)
    out = bytearray(write_leb128(KIND) + write_leb128(len(motion.frames)))
    out += bytes((int(motion.bidirectional) | (2 if motion.anchor is not None else 0),))
    out += write_leb128(rows) + write_leb128(cols)
    grid_values = np.concatenate(grids) if grids else np.zeros(0, np.int64)
    return bytes(out + symbols.pack([np.asarray(modes), symbols.signed(corners), symbols.signed(grid_values)]))


def _last_grid(history: list[RefMotion], rows: int, cols: int) -> np.ndarray:
    """The grid that predicts this frame's: the previous frame's (same reference), else zeros."""
    if history and history[-1].grid is not None:
        return history[-1].grid.astype(np.int64)
    return np.zeros((rows, cols, 2), np.int64)


def decode_motion(payload: bytes, frame_count: int) -> SegmentMotion | None:
    """Parse a MOTION payload for a segment of ``frame_count`` frames; None for a kind this decoder does not know."""
    from .units import _Reader  # the bounded field reader shared by every unit

    r = _Reader(payload, "motion")
    kind = r.uleb("kind")
    if kind != KIND:
        return None
    count = r.uleb("frames", 0, MAX_FRAMES)
    if count != frame_count - 1:
        raise r.fail(f"{count} frames of motion for a segment of {frame_count} frames")
    flags = r.u8("flags")
    bidirectional, anchored = bool(flags & 1), bool(flags & 2)
    if count == 0 and not anchored:
        raise r.fail("a unit with no frame and no anchor")
    rows, cols = r.uleb("grid_rows", 0, MAX_GRID_CELLS), r.uleb("grid_cols", 0, MAX_GRID_CELLS)
    if rows * cols > MAX_GRID_CELLS or (rows == 0) != (cols == 0):
        raise r.fail(f"a {rows}x{cols} grid is over {MAX_GRID_CELLS} cells")
    refs = count * (2 if bidirectional else 1) + int(anchored)
    streams = symbols.unpack(r, (refs + (count if bidirectional else 0), refs * 8, refs * rows * cols * 2))
    values = _Values([streams[0], symbols.unsigned(streams[1]), symbols.unsigned(streams[2])])
    motion = SegmentMotion([FrameMotion() for _ in range(count)], bidirectional, (rows, cols))
    if anchored:
        motion.anchor = _decode_ref(values, [], rows, cols)
    history: dict[str, list[RefMotion]] = {"prev": [], "next": []}
    for frame in motion.frames:
        frame.prev = _decode_ref(values, history["prev"], rows, cols)
        history["prev"].append(frame.prev)
        if bidirectional:
            frame.next = _decode_ref(values, history["next"], rows, cols)
            history["next"].append(frame.next)
    if bidirectional:
        for frame in motion.frames:
            frame.weight = int(values.take(0)[0])
            if frame.weight > WEIGHT_MAX:
                raise BitstreamError(f"motion: blend weight {frame.weight} over {WEIGHT_MAX}; the stream is corrupt")
    if values.pos != [len(v) for v in values.streams]:
        raise BitstreamError("motion: unread values; the stream is corrupt")
    return motion


def _decode_ref(values: _Values, history: list[RefMotion], rows: int, cols: int) -> RefMotion:
    """One reference's motion for one frame, in the order ``encode_motion`` wrote it."""
    code = int(values.take(0)[0])
    model, has_grid = code // 2, bool(code & 1)
    if model > CORNERS or (has_grid and rows == 0):
        raise BitstreamError(f"motion: mode {code} is invalid here; the stream is corrupt")
    predicted = predict_corners(history)
    corners = [0] * 8
    if model == TRANSLATION:
        dx, dy = (predicted[i] + int(v) for i, v in enumerate(values.take(1, 2)))
        corners = [dx, dy] * 4
    elif model == CORNERS:
        corners = [predicted[i] + int(v) for i, v in enumerate(values.take(1, 8))]
    grid = None
    if has_grid:
        grid = _last_grid(history, rows, cols) + values.take(2, rows * cols * 2).reshape(rows, cols, 2)
        if int(np.abs(grid).max()) > MAX_VALUE:
            raise BitstreamError(f"motion: a grid vector over ±{MAX_VALUE}; the stream is corrupt")
        grid = grid.astype(np.int32)
    if any(abs(c) > MAX_VALUE for c in corners):
        raise BitstreamError(f"motion: a corner displacement over ±{MAX_VALUE}; the stream is corrupt")
    return RefMotion(model, tuple(corners), grid)
