"""How the decoder's diffusion treats each segment, decided by the encoder and written in the segment's GEN_PARAMS
(bitstream 2.1, docs/bitstream.md §5.7): the keyframe generator's img2img strength over the upscaled base picture
(0: the base picture as it is), and whether the clip generator makes the segment's frames with the base pictures as
its control video or the base pictures are shown as decoded.

Only profiles whose decoder has a keyframe generator with weights (m3cvc) are conditioned, and only in it2v; lite
streams (a passthrough keyframe generator) carry no GEN_PARAMS and stay 2.0. ``base``'s ``diffusion`` option chooses
how:
- ``auto``: from the base keyframe's quality (MS-SSIM of the decoder's upscale against the source), ``strength_for``:
  a sharp base is left alone, a blurred one is re-noised more. This is a prior, not a measurement (no diffusion weights
  can be run where it was written); ``measure`` replaces it with one.
- ``measure``: the encoder runs the profile's generators as the decoder will (same seed, text and strength) and keeps
  each only where it raises MS-SSIM against the source: the clip on ``QUALITY_FRAMES`` of the segment's frames
  (generated without the next keyframe, which is not coded yet), then, where the clip is kept, the keyframe (where it
  is not, the frames are the base pictures and a restored keyframe would not be shown). It costs the decoder's
  diffusion once more, on the encoder's device.
- ``on``: the profile's own strength and the clip generator for every segment (what a 2.0 stream gets);
- ``off``: the base pictures alone (strength 0, no clip diffusion); texts and modes still travel.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from m3cvcav.bitstream.units import FIRST_VERSION, U32_MAX, VERSION, GenerationParams
from m3cvcav.core.log import get_logger
from m3cvcav.core.quality import mean_ms_ssim, ms_ssim

log = get_logger(__name__)

CHOICES = ("auto", "measure", "on", "off")
# strength_for: the keyframe is left as the base gives it from SHARP up, re-noised by up to MAX_STRENGTH of the schedule
# at BLURRED and below; strengths under MIN_STRENGTH are not worth a diffusion pass
SHARP, BLURRED = 0.97, 0.80
MAX_STRENGTH, MIN_STRENGTH = 0.6, 0.1
QUALITY_FRAMES = 4

Upscale = Callable[[np.ndarray], np.ndarray]


def strength_for(quality: float) -> float:
    """The img2img strength for a base keyframe of MS-SSIM ``quality``: 0 from ``SHARP`` up, rising linearly to
    ``MAX_STRENGTH`` at ``BLURRED`` and below (0 where it would be under ``MIN_STRENGTH``)."""
    share = min(1.0, max(0.0, (SHARP - quality) / (SHARP - BLURRED)))
    strength = MAX_STRENGTH * share
    return strength if strength >= MIN_STRENGTH else 0.0


def conditions(engines, mode: str) -> bool:
    """Whether a stream of this profile and mode carries the encoder's conditioning."""
    return mode == "it2v" and "keyframe_generator" in engines.profile.recorded_roles()


def stream_version(engines, mode: str) -> tuple[int, int]:
    """The bitstream version a stream of this profile and mode needs: 2.1 with conditioning, else 2.0."""
    return VERSION if conditions(engines, mode) else FIRST_VERSION


def quantise(strength: float) -> int:
    """A strength in [0, 1] as GEN_PARAMS's keyframe_strength (k/255; 0 only for 0)."""
    return 0 if strength <= 0 else max(1, min(255, round(strength * 255)))


class Conditioner:
    """The GEN_PARAMS of each segment of one stream (``applies``: whether this profile and mode write them)."""

    def __init__(self, engines, mode: str = "it2v", choice: str = "auto") -> None:
        if choice not in CHOICES:
            raise ValueError(f"diffusion choice {choice!r} is not one of {CHOICES}")
        self.engines, self.choice = engines, choice
        self.applies = conditions(engines, mode)

    def placeholder(self, index: int) -> GenerationParams | None:
        """Params of the size the chosen ones will have (the segment's bytes are counted before the base is coded)."""
        if not self.applies:
            return None
        return GenerationParams(seed=index & U32_MAX, keyframe_strength=0, clip_diffusion=False)

    def choose(self, index: int, frames: Sequence[np.ndarray], pictures: Sequence[np.ndarray], upscale: Upscale,
               frame_text: str = "", clip_text: str = "") -> GenerationParams | None:
        """The params of segment ``index``: ``frames`` are its source frames, ``pictures`` its decoded base pictures
        and ``upscale`` the decoder's upscale of one (to the display size, with the segment's enhancement)."""
        if not self.applies:
            return None
        params = GenerationParams(seed=index & U32_MAX)
        if self.choice == "off":
            strength, clip = 0.0, False
        elif self.choice == "on":
            strength, clip = self._profile_strength(), True
        else:
            base_key = upscale(pictures[0])
            strength = strength_for(ms_ssim(frames[0], base_key))
            clip = strength > 0
            if self.choice == "measure":
                # without clip diffusion the frames are the base pictures, so a restored keyframe would not be shown
                clip = self._measure_clip(frames, pictures, upscale, base_key, clip_text, params.seed)
                strength = self._measure_keyframe(frames[0], base_key, frame_text, params.seed, strength) if clip \
                    else 0.0
        params.keyframe_strength, params.clip_diffusion = quantise(strength), clip
        log.debug("segment %d: keyframe strength %.2f, clip diffusion %s (%s)", index, strength, clip, self.choice)
        return params

    def _profile_strength(self) -> float:
        return float(self.engines.profile.settings("keyframe_generator").get("strength", 0.5))

    def _measure_keyframe(self, source: np.ndarray, base_key: np.ndarray, text: str, seed: int,
                          prior: float) -> float:
        """The strength among (the prior, half of it) whose keyframe beats the base picture by MS-SSIM; else 0."""
        generator = self.engines.engine("keyframe_generator")
        size = source.shape[:2]
        best, best_score = 0.0, ms_ssim(source, base_key)
        for strength in dict.fromkeys(s for s in (prior or self._profile_strength(), prior / 2) if s >= MIN_STRENGTH):
            score = ms_ssim(source, generator.generate(base_key, text, size, seed, strength=strength))
            if score > best_score:
                best, best_score = strength, score
        return best

    def _measure_clip(self, frames: Sequence[np.ndarray], pictures: Sequence[np.ndarray], upscale: Upscale,
                      keyframe: np.ndarray, text: str, seed: int) -> bool:
        """Whether the clip generator over the base pictures beats them by MS-SSIM on ``QUALITY_FRAMES`` frames."""
        base = [upscale(pictures[min(i, len(pictures) - 1)]) for i in range(len(frames))]
        made = self.engines.engine("clip_generator").generate(keyframe, None, len(frames), text, seed,
                                                              prediction=base)
        picks = np.linspace(0, len(frames) - 1, min(QUALITY_FRAMES, len(frames))).round().astype(int)
        source = [frames[k] for k in picks]
        return mean_ms_ssim(source, [made[k] for k in picks]) > mean_ms_ssim(source, [base[k] for k in picks])
