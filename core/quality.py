"""Picture quality measures. PSNR (8-bit, capped at ``PSNR_CAP`` for identical pictures): the one PSNR of the tree
(the benchmarks and the enhancer's training report it). MS-SSIM (Wang et al. 2003, five scales, 11-tap Gaussian
σ = 1.5, the standard exponents) on BT.709 luma, with OpenCV filters: the encoder's own measure, what it compares
candidates with (coded size, enhancement variant), never what feeds the bitstream's decoder; ``bench rd`` measures
MS-SSIM with its own reference implementation (pytorch-msssim, RGB)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PSNR_CAP = 100.0  # dB, for identical pictures (and anything closer)
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit arrays of one shape (any planes or channels), at most ``PSNR_CAP``."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * np.log10(255.0 ** 2 / mse))


def luma(image: np.ndarray) -> np.ndarray:
    """BT.709 luma of an RGB picture, float32 0..255."""
    return image.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def _ssim_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean SSIM, mean contrast-structure term) of two luma planes."""
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a * mu_a
    var_b = _blur(b * b) - mu_b * mu_b
    cov = _blur(a * b) - mu_a * mu_b
    cs = (2 * cov + _C2) / (var_a + var_b + _C2)
    lum = (2 * mu_a * mu_b + _C1) / (mu_a * mu_a + mu_b * mu_b + _C1)
    return float((lum * cs).mean()), float(cs.mean())


def ms_ssim(reference: np.ndarray, picture: np.ndarray) -> float:
    """MS-SSIM of two RGB pictures of one size (as many scales as the size allows, weights renormalised)."""
    a, b = luma(reference), luma(picture)
    scales = max(1, min(len(WEIGHTS), int(np.log2(max(min(a.shape) / 11, 1))) + 1))
    weights = np.array(WEIGHTS[:scales]) / sum(WEIGHTS[:scales])
    value = 1.0
    for i, w in enumerate(weights):
        ssim, cs = _ssim_terms(a, b)
        value *= max(ssim if i == scales - 1 else cs, 1e-6) ** w
        if i < scales - 1:
            a, b = cv2.pyrDown(a), cv2.pyrDown(b)
    return float(value)


def mean_ms_ssim(references: Sequence[np.ndarray], pictures: Sequence[np.ndarray]) -> float:
    return float(np.mean([ms_ssim(r, p) for r, p in zip(references, pictures)]))
