"""bench.rd VMAF (vmaf-torch, in process) against libvmaf's known behaviour, and the frozen-frame count.

libvmaf v0.6.1 scores identical frames whose motion feature is 0 (a still, or a clip's first frame) at 97.428043 and
identical moving frames at 100 (clipped); distortions lower the score, more of them lower it further.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from m3cvcav.bench.rd import metrics as mt
from m3cvcav.bench.rd import vmaf

torch.set_num_threads(1)
pytest.importorskip("vmaf_torch", reason="vmaf-torch is in the bench extra: pip install -e '.[bench]'")
LIBVMAF_IDENTICAL_STILL = 97.428043  # libvmaf v0.6.1, identical frames, motion2 = 0


@pytest.fixture(scope="module")
def luma() -> np.ndarray:
    from helpers import media_path

    img = cv2.imread(str(media_path("photos/skimage_astronaut.png")), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(img, (256, 144), interpolation=cv2.INTER_AREA)


def _pan(img: np.ndarray, frames: int, step: int) -> list[np.ndarray]:
    big = cv2.resize(img, (img.shape[1] + step * frames, img.shape[0]))
    return [np.ascontiguousarray(big[:, i * step: i * step + img.shape[1]]) for i in range(frames)]


@pytest.mark.slow  # vmaf-torch on the CPU: tens of seconds
def test_identical_input_gives_libvmafs_known_scores(luma):
    still = vmaf.scores([luma, luma], [luma, luma])
    for name in vmaf.METRICS:
        assert still[name] == pytest.approx([LIBVMAF_IDENTICAL_STILL] * 2, abs=0.01)
    clip = _pan(luma, 5, 6)
    moving = vmaf.scores(clip, clip, vmaf.motion2(clip))
    assert moving["vmaf"][0] == pytest.approx(LIBVMAF_IDENTICAL_STILL, abs=0.01)  # first frame: motion2 = 0
    assert all(LIBVMAF_IDENTICAL_STILL < s <= 100.0 for s in moving["vmaf"][1:])


@pytest.mark.slow  # vmaf-torch on the CPU: tens of seconds
@pytest.mark.parametrize("ladder", ["blur", "noise"])
def test_score_falls_monotonically_along_a_distortion_ladder(luma, ladder):
    rng = np.random.default_rng(0)
    if ladder == "blur":
        steps = [cv2.GaussianBlur(luma, (0, 0), s) for s in (0.6, 1.2, 2.5, 5.0)]
    else:
        steps = [np.clip(luma + rng.normal(0, s, luma.shape), 0, 255).astype(np.uint8) for s in (2, 6, 15, 40)]
    got = vmaf.scores([luma] * len(steps), steps)
    for name in vmaf.METRICS:
        values = [LIBVMAF_IDENTICAL_STILL] + got[name]
        assert all(a > b for a, b in zip(values, values[1:])), (name, values)
        assert values[-1] < 60


@pytest.mark.slow  # vmaf-torch on the CPU: tens of seconds
def test_neg_does_not_reward_sharpening(luma):
    soft = cv2.GaussianBlur(luma, (0, 0), 1.5)
    sharpened = np.clip(1.0 * luma + 1.5 * (luma.astype(np.float32) - soft), 0, 255).astype(np.uint8)
    got = vmaf.scores([luma], [sharpened])
    assert got["vmaf_neg"][0] < got["vmaf"][0] - 1


@pytest.mark.slow  # vmaf-torch on the CPU: tens of seconds
def test_sampled_frames_score_as_in_a_full_clip_run(luma):
    from vmaf_torch import VMAF

    clip = _pan(luma, 8, 5)
    dist = [cv2.GaussianBlur(f, (0, 0), 1.0) for f in clip]
    full = VMAF(clip_score=True)(torch.from_numpy(np.stack(clip)).float()[:, None],
                                 torch.from_numpy(np.stack(dist)).float()[:, None])[:, 0].numpy()
    pick = [0, 3, 7]
    got = vmaf.scores([clip[i] for i in pick], [dist[i] for i in pick], vmaf.motion2(clip)[pick], batch=2)
    assert got["vmaf"] == pytest.approx(full[pick].tolist(), abs=1e-3)


def test_scores_reject_mismatched_frames(luma):
    with pytest.raises(ValueError, match="pairs"):
        vmaf.scores([luma], [luma, luma])


def test_frozen_frames_count_only_where_the_source_moves(luma):
    clip = _pan(luma, 6, 6)
    still = [clip[0]] * 6
    assert mt.frozen_frames(clip, clip) == {"moving": 5, "frozen": 0}
    held = clip[:3] + [clip[2]] * 3  # decoder repeats frame 2 while the source keeps panning
    assert mt.frozen_frames(clip, held) == {"moving": 5, "frozen": 3}
    assert mt.frozen_frames(still, still) == {"moving": 0, "frozen": 0}
