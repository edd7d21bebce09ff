"""Keyframe generator of the m3cvc profile: text-guided diffusion (SD-Turbo by default) guided by D^F.

IT2V: the dequantised, VAE-decoded keyframe goes through img2img (``strength`` of the schedule re-noised, a few steps,
guidance 0 for SD-Turbo) with D^F as the prompt. TT2V (``decoded is None``): text-to-image from D^F alone. Both share
one set of models (``from_pipe``) and the VAE with the tokenizer; noise comes from a CPU generator seeded by the stream.
The UNet denoiser and the VAE decoder run on the backend ``select_backend`` picks for the role's ``backend`` (``-engine``):
on onnxruntime/tensorrt the pipelines call ``networks.EngineUNet`` / ``EngineVae`` in their place; the text encoder and
the VAE encoder stay on torch.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..backends import backends_of
from ..interfaces import Image, ModelRef
from m3cvcav.core.errors import UsageError

from .common import (from_pil, generator, load, log, pick_device, pick_dtype, pipeline_ref, place_pipeline, round_to,
                     setting, to_pil)
from .networks import UNET, EngineUNet, engine_for, pick_backend, run_sizes, unet_spec, vae_decoder_spec
from .vae import load_vae

ROLE = "keyframe_generator"


def fit_prompt(text: str, count_tokens, budget: int) -> str:
    """``text`` cut to ``budget`` tokens at sentence, else word, boundaries, in order: D^F starts with the scene
    (place, time of day, lighting, style) and goes on with objects and layout, so what is kept is the scene and as many
    objects as fit — never a sentence cut mid-token as the text encoder's own truncation does."""
    if count_tokens(text) <= budget:
        return text
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.!?;])\s+", text.strip()):
        trial = " ".join([*kept, sentence])
        if count_tokens(trial) <= budget:
            kept.append(sentence)
            continue
        words = sentence.split()
        lo, hi = 0, len(words)  # the longest word prefix that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(" ".join([*kept, *words[:mid]])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo:
            kept.append(" ".join(words[:lo]))
        break
    return " ".join(kept)


class DiffusionKeyframeGenerator:
    """``KeyframeGenerator`` over a diffusers image pipeline (``AutoPipelineForImage2Image`` / ``...Text2Image``)."""

    def __init__(self, settings: Mapping[str, Any]):
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, UNet2DConditionModel

        self.device = pick_device(settings, ROLE, torch_only=False)
        self.dtype = pick_dtype(settings, self.device, ROLE)
        self.steps = setting(settings, "steps", int, 2, role=ROLE)
        self.strength = setting(settings, "strength", float, 0.5, role=ROLE)
        self.guidance = setting(settings, "guidance_scale", float, 0.0, role=ROLE)
        self.max_side = setting(settings, "max_side", int, 512, role=ROLE)
        self.negative = settings.get("negative_prompt")
        if self.steps < 1 or not 0.0 < self.strength <= 1.0 or self.steps * self.strength < 1:
            raise UsageError("profile settings keyframe_generator: steps ≥ 1 and 0 < strength ≤ 1 with "
                             "steps × strength ≥ 1 (at least one denoising step)")
        self.vae = vae = load_vae(settings, ROLE)  # shared with the tokenizer (VQ mode)
        variant = settings.get("variant")
        self.img2img = load(settings, ROLE, AutoPipelineForImage2Image.from_pretrained, vae=vae.model,
                            dtype=self.dtype, variant=variant, safety_checker=None, requires_safety_checker=False)
        self.ref: ModelRef = pipeline_ref(settings, ROLE)
        self.unet = self.img2img.unet
        self.multiple = vae.scale
        self.max_text = int(self.img2img.tokenizer.model_max_length)
        self._reload_unet = lambda: load(settings, ROLE, UNet2DConditionModel.from_pretrained, subfolder="unet",
                                         dtype=torch.float32, variant=variant)
        typed = backends_of(settings)
        self.backends = {"vae_decoder": vae.backend(typed), "unet": pick_backend(typed, self.device, UNET)}
        self.img2img.vae = vae.decoder(self.backends["vae_decoder"], self.max_side, typed)
        if self.backends["unet"] != "torch":
            self.img2img.unet = EngineUNet(self.unet, engine_for(lambda: self._unet_spec(run_sizes(self.max_side)),
                                                                 typed, self.backends["unet"], self.device))
        place_pipeline(self.img2img, settings, self.device, ROLE)
        self.txt2img = AutoPipelineForText2Image.from_pipe(self.img2img)
        self.txt2img.set_progress_bar_config(disable=True)
        log.info("keyframe generator %s on %s/%s, %d steps, strength %.2f; unet on %s, vae decoder on %s",
                 settings["repo"], self.device, self.dtype, self.steps, self.strength, self.backends["unet"],
                 self.backends["vae_decoder"])

    def _unet_spec(self, sizes: Sequence[tuple[int, int]]):
        return unet_spec(self.unet, self.max_text, sizes, self.multiple, self._reload_unet)

    def export_specs(self, sizes: Sequence[tuple[int, int]]) -> list:
        """The VAE decoder and the UNet with one shape profile per (height, width) bucket (a UNet over 2 GiB is
        exported with external data)."""
        return [vae_decoder_spec(self.vae.model, sizes, self.vae.reload), self._unet_spec(sizes)]

    def _work_size(self, size: tuple[int, int]) -> tuple[int, int]:
        h, w = size
        scale = min(1.0, self.max_side / max(h, w))
        return round_to(round(h * scale), self.multiple), round_to(round(w * scale), self.multiple)

    def prompt(self, text: str) -> str:
        """D^F fitted to the text encoder's window (``fit_prompt``; CLIP: 77 tokens with its start and end tokens)."""
        tokenizer = self.img2img.tokenizer
        fitted = fit_prompt(text, lambda t: len(tokenizer(t, add_special_tokens=False).input_ids), self.max_text - 2)
        if fitted != text:
            log.debug("keyframe prompt fitted to %d tokens: %r", self.max_text - 2, fitted)
        return fitted

    @torch.inference_mode()
    def generate(self, decoded: Image | None, text: str, size: tuple[int, int], seed: int,
                 strength: float | None = None) -> Image:
        """The keyframe at ``size`` = (height, width): img2img from ``decoded`` (IT2V) re-noised to ``strength`` of
        the schedule (the stream's, else the profile's), or text-to-image (TT2V). A strength below 1/steps runs one
        step of a finer schedule (img2img runs ⌊steps × strength⌋ steps: none would leave the picture as it is)."""
        h, w = self._work_size(size)
        strength = self.strength if strength is None else strength
        if not 0.0 < strength <= 1.0:
            raise UsageError(f"keyframe strength {strength} must be in (0, 1]: 0 means no keyframe diffusion")
        steps = self.steps if decoded is None else max(self.steps, math.ceil(1.0 / strength - 1e-9))
        common = {"prompt": self.prompt(text), "num_inference_steps": steps, "guidance_scale": self.guidance,
                  "generator": generator(seed), "output_type": "pil"}
        if self.negative and self.guidance > 1.0:
            common["negative_prompt"] = self.negative
        if decoded is None:
            out = self.txt2img(height=h, width=w, **common)
        else:
            source = to_pil(decoded).resize((w, h))
            out = self.img2img(image=source, strength=strength, **common)
        return from_pil(out.images[0], size)


def load_keyframe_generator(settings: Mapping[str, Any]) -> DiffusionKeyframeGenerator:
    """Factory named by the profile (``m3cvcav.engines.m3cvc.keyframe:load_keyframe_generator``)."""
    return DiffusionKeyframeGenerator(settings)


load_keyframe_generator.model_ref = functools.partial(pipeline_ref, role=ROLE)
