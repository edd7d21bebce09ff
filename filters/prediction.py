"""Motion-compensated prediction from the motion layer (``bitstream.motion``): the decoder's picture of every frame
between keyframes, and what the encoder measures its decisions against.

A reference's motion maps each pixel of the frame to a position in the reference: the homography that moves the
frame's four corner pixels by the transmitted displacements, plus the grid of vectors upsampled bilinearly. The two
references of a bidirectional frame are blended by the transmitted weight, each where its samples fall inside the
reference (content that has left one keyframe's view comes from the other).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from m3cvcav.bitstream.motion import CORNER_UNIT, GRID_UNIT, NONE, WEIGHT_MAX, FrameMotion, RefMotion

INTERPOLATION = cv2.INTER_LINEAR


def homography(corners: tuple[int, ...] | np.ndarray, width: int, height: int) -> np.ndarray:
    """3×3 matrix mapping frame pixels to reference pixels from the corner displacements (in 1/8 px)."""
    src = corner_points(width, height)
    dst = src + np.asarray(corners, np.float64).reshape(4, 2) / CORNER_UNIT
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def corner_points(width: int, height: int) -> np.ndarray:
    """The four corner pixel centres in coding order: top-left, top-right, bottom-left, bottom-right."""
    return np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float64)


@dataclass
class Warper:
    """Warps references of one frame size; keeps the pixel grid so each warp allocates only its maps."""

    width: int
    height: int

    def __post_init__(self) -> None:
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        self._xs, self._ys = xs, ys
        self._ones = np.ones((self.height, self.width), np.float32)

    def maps(self, ref: RefMotion) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y): where each frame pixel lies in the reference."""
        if ref.model == NONE:
            mx, my = self._xs.copy(), self._ys.copy()
        else:
            m = homography(ref.corners, self.width, self.height)
            den = m[2, 0] * self._xs + m[2, 1] * self._ys + m[2, 2]
            mx = ((m[0, 0] * self._xs + m[0, 1] * self._ys + m[0, 2]) / den).astype(np.float32)
            my = ((m[1, 0] * self._xs + m[1, 1] * self._ys + m[1, 2]) / den).astype(np.float32)
        if ref.grid is not None:
            field = cv2.resize(ref.grid.astype(np.float32) / GRID_UNIT, (self.width, self.height),
                               interpolation=cv2.INTER_LINEAR)
            mx += field[..., 0]
            my += field[..., 1]
        return mx, my

    def warp(self, image: np.ndarray, ref: RefMotion) -> tuple[np.ndarray, np.ndarray]:
        """(prediction as float32, validity in [0, 1]: 1 where the sample lies inside the reference)."""
        if ref.model == NONE and ref.grid is None:
            return image.astype(np.float32), self._ones
        if ref.grid is None:
            m = homography(ref.corners, self.width, self.height)
            size = (self.width, self.height)
            flags = INTERPOLATION | cv2.WARP_INVERSE_MAP
            out = cv2.warpPerspective(image, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpPerspective(self._ones, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            return out.astype(np.float32), valid
        mx, my = self.maps(ref)
        out = cv2.remap(image, mx, my, INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.remap(self._ones, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(np.float32), valid

    def blend(self, prev: tuple[np.ndarray, np.ndarray], nxt: tuple[np.ndarray, np.ndarray] | None,
              weight: int) -> np.ndarray:
        """The frame from its warped references (float32 prediction, validity) and the next keyframe's weight."""
        if nxt is None or weight == 0:
            return to_uint8(prev[0])
        if weight == WEIGHT_MAX:
            return to_uint8(nxt[0])
        w = weight / WEIGHT_MAX
        wp = (1.0 - w) * (prev[1] + 1e-3)
        wn = w * (nxt[1] + 1e-3)
        mix = (wp[..., None] * prev[0] + wn[..., None] * nxt[0]) / (wp + wn)[..., None]
        return to_uint8(mix)

    def predict(self, motion: FrameMotion, prev_key: np.ndarray, next_key: np.ndarray | None) -> np.ndarray:
        """One frame from the decoded keyframes and its transmitted motion."""
        p = self.warp(prev_key, motion.prev)
        n = self.warp(next_key, motion.next) if next_key is not None and motion.next is not None else None
        return self.blend(p, n, motion.weight if n is not None else 0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
