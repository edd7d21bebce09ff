"""Encoder-side motion: estimate where each pixel of a frame lies in a reference keyframe (DIS optical flow on the
sources, a RANSAC homography for the global model, per-cell means of what the homography leaves for the grid) and
choose what to transmit by rate and distortion: J = D + λ·R with D = 1 − SSIM of the prediction (the fast proxy of
MS-SSIM, measured on luma at a working size) and R the estimated bits of the coded residuals."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from m3cvcav.bitstream.motion import (CORNER_UNIT, CORNERS, GRID_UNIT, NONE, TRANSLATION, WEIGHT_MAX, RefMotion,
                                      predict_corners)

from .prediction import Warper, corner_points, to_uint8

WORK_SIZE = 384  # longer side of the analysis resolution
WEIGHTS = (0, 4, 8, 12)  # blend weights (of 16) the encoder tries: never the next keyframe alone (no repeated frames)


def luma(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BT.709 luma of an RGB image at (width, height), float32."""
    small = image if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float32 luma images (Gaussian window σ = 1.5, as Wang et al.)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def value_bits(values) -> float:
    """Estimated bits of residuals under the layer's tables: ~1 bit for a zero, more with magnitude."""
    return float(sum(1.0 + 2.0 * math.log2(1 + abs(int(v))) for v in values))


@dataclass
class Choice:
    """One reference's chosen motion for one frame, its warped work-size prediction and its distortion."""

    motion: RefMotion
    prediction: np.ndarray  # work-size RGB float32
    valid: np.ndarray
    distortion: float
    bits: float


class MotionSearch:
    """Chooses the motion of frames of one size against references; ``lam`` converts bits to distortion."""

    def __init__(self, width: int, height: int, *, lam: float, grid_cell: int) -> None:
        self.width, self.height, self.lam = width, height, lam
        self.scale = min(1.0, WORK_SIZE / max(width, height))
        self.work = (max(16, round(width * self.scale)), max(16, round(height * self.scale)))
        self.sx, self.sy = self.work[0] / width, self.work[1] / height
        self.warper = Warper(*self.work)
        self.grid_shape = (max(1, -(-height // grid_cell)), max(1, -(-width // grid_cell))) if grid_cell else (0, 0)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        ys, xs = np.mgrid[0:self.work[1]:8, 0:self.work[0]:8]
        self._samples = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)

    # -- analysis -------------------------------------------------------------------------------------------------
    def analyse(self, image: np.ndarray) -> dict:
        """What the search needs of one source image: work-size RGB and luma."""
        rgb = cv2.resize(image, self.work, interpolation=cv2.INTER_AREA) if image.shape[1::-1] != self.work else image
        return {"rgb": rgb, "luma": luma(rgb, self.work), "gray": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}

    def flow(self, frame: dict, ref: dict) -> np.ndarray:
        """Work-size flow from the frame to the reference (where each frame pixel is in the reference)."""
        return self._dis.calc(frame["gray"], ref["gray"], None)

    def distortion(self, prediction: np.ndarray, frame: dict) -> float:
        return 1.0 - ssim(luma(to_uint8(prediction), self.work), frame["luma"])

    # -- candidates -----------------------------------------------------------------------------------------------
    def _to_full(self, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dx / self.sx, dy / self.sy

    def _global_candidates(self, flow: np.ndarray) -> list[RefMotion]:
        pts = self._samples
        moved = pts + flow[pts[:, 1].astype(int), pts[:, 0].astype(int)]
        dx, dy = self._to_full(np.median(moved[:, 0] - pts[:, 0]), np.median(moved[:, 1] - pts[:, 1]))
        t = (round(float(dx) * CORNER_UNIT), round(float(dy) * CORNER_UNIT))
        out = [RefMotion(NONE), RefMotion(TRANSLATION, t * 4)]
        m, _ = cv2.findHomography(pts, moved, cv2.RANSAC, 1.0, maxIters=400)
        if m is not None and np.isfinite(m).all():
            proj = cv2.perspectiveTransform(corner_points(*self.work)[None], m)[0]
            # corner displacement at work size → full size (the corner pixels of both sizes line up)
            full_src = corner_points(self.width, self.height)
            full_dst = proj * [(self.width - 1) / max(self.work[0] - 1, 1),
                               (self.height - 1) / max(self.work[1] - 1, 1)]
            disp = np.round((full_dst - full_src) * CORNER_UNIT).astype(int).ravel()
            if np.abs(disp).max() < 64 * CORNER_UNIT * max(self.width, self.height):
                out.append(RefMotion(CORNERS, tuple(int(v) for v in disp)))
        return out

    def _work_motion(self, motion: RefMotion) -> RefMotion:
        """The same motion at the work size (for measuring its prediction)."""
        if motion.model == NONE and motion.grid is None:
            return motion
        c = np.asarray(motion.corners, np.float64).reshape(4, 2)
        c = c * [(self.work[0] - 1) / max(self.width - 1, 1), (self.work[1] - 1) / max(self.height - 1, 1)]
        grid = None
        if motion.grid is not None:
            grid = motion.grid.astype(np.float64) * [self.sx, self.sy]
        return _FloatMotion(motion.model, c.ravel(), grid)

    def _grid(self, flow: np.ndarray, base: RefMotion) -> np.ndarray:
        """Per-cell mean of the flow the global model leaves, in 1/4 px of the full size."""
        rows, cols = self.grid_shape
        wm = self._work_motion(base)
        mx, my = self.warper.maps(wm)
        xs, ys = np.meshgrid(np.arange(self.work[0], dtype=np.float32), np.arange(self.work[1], dtype=np.float32))
        rx, ry = xs + flow[..., 0] - mx, ys + flow[..., 1] - my
        means = cv2.resize(np.dstack([rx, ry]), (cols, rows), interpolation=cv2.INTER_AREA)
        dx, dy = self._to_full(means[..., 0], means[..., 1])
        return np.rint(np.dstack([dx, dy]) * GRID_UNIT).astype(np.int32)

    def _bits(self, motion: RefMotion, history: list[RefMotion]) -> float:
        predicted = predict_corners(history)
        bits = 2.0
        if motion.model == TRANSLATION:
            bits += value_bits(motion.corners[i] - predicted[i] for i in range(2))
        elif motion.model == CORNERS:
            bits += value_bits(motion.corners[i] - predicted[i] for i in range(8))
        if motion.grid is not None:
            base = history[-1].grid if history and history[-1].grid is not None else 0
            bits += value_bits((motion.grid - base).ravel())
        return bits

    def _measure(self, motion: RefMotion, history: list[RefMotion], ref: dict, frame: dict) -> Choice:
        prediction, valid = self.warper.warp(ref["decoded"], self._work_motion(motion))
        bits = self._bits(motion, history)
        return Choice(motion, prediction, valid, self.distortion(prediction, frame), bits)

    def choose(self, frame: dict, ref: dict, history: list[RefMotion], moved: bool = False) -> Choice:
        """The reference motion with the lowest D + λ·R among no motion, translation, homography (± grid). When the
        source ``moved`` since the previous frame, a choice that would repeat the previous frame's picture is not
        taken (no frozen frames while the scene moves): the best one that moves is."""
        flow = self.flow(frame, ref)
        candidates = [self._measure(m, history, ref, frame) for m in self._global_candidates(flow)]
        best = min(candidates, key=self._cost)
        last = history[-1] if history else RefMotion()
        frozen = moved and same_picture(best.motion, last)
        if self.grid_shape != (0, 0) and (frozen or best.distortion > 0.5 * self._cost(best)):
            base = best.motion if best.motion.model != NONE else candidates[-1].motion
            gridded = RefMotion(base.model, base.corners, self._grid(flow, base))
            candidates.append(self._measure(gridded, history, ref, frame))
            best = min(candidates, key=self._cost)
        if moved and same_picture(best.motion, last):
            moving = [c for c in candidates if not same_picture(c.motion, last)]
            if moving:
                best = min(moving, key=self._cost)
        return best

    @staticmethod
    def moved(frame: dict, previous: dict) -> bool:
        """Whether the source changed visibly between two analysed frames (mean absolute luma difference at the work
        size over 1: about 1.5 at full size, where detail adds to it)."""
        return float(np.abs(frame["luma"] - previous["luma"]).mean()) > 1.0

    def _cost(self, c: Choice) -> float:
        return c.distortion + self.lam * c.bits

    def blend_weight(self, prev: Choice, nxt: Choice, frame: dict) -> tuple[int, float]:
        """The blend weight of the next keyframe (of 16) with the lowest distortion, and that distortion."""
        best = (0, prev.distortion)
        for w in WEIGHTS[1:]:
            d = prev.distortion if w == 0 else nxt.distortion if w == WEIGHT_MAX else self.distortion(
                self.warper.blend((prev.prediction, prev.valid), (nxt.prediction, nxt.valid), w), frame)
            if d + self.lam * 3 < best[1] + (self.lam * 3 if best[0] else 0):
                best = (w, d)
        return best


def same_picture(a: RefMotion, b: RefMotion) -> bool:
    """Whether two motions warp a reference to the same picture (a zero translation is no motion, a zero grid none)."""
    if a.corners != b.corners:
        return False
    ga = a.grid if a.grid is not None and a.grid.any() else None
    gb = b.grid if b.grid is not None and b.grid.any() else None
    return (ga is None and gb is None) or (ga is not None and gb is not None and np.array_equal(ga, gb))


class _FloatMotion(RefMotion):
    """A RefMotion whose corners (1/8 px) and grid (1/4 px) are floats at the work size (for the encoder's
    measurements only)."""

    def __init__(self, model: int, corners: np.ndarray, grid: np.ndarray | None) -> None:
        super().__init__(model, tuple(corners), grid)
