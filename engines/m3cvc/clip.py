"""Clip generator of the m3cvc profile: first-last-frame video diffusion with D^C as the prompt.

Two diffusers pipelines, told apart by the model folder's ``model_index.json``: Wan2.1 FLF2V (``WanImageToVideoPipeline``
with ``last_image``) and Wan2.1 VACE (``WanVACEPipeline``: a conditioning video holding the first and last frames, the
frames between them masked for generation). The model makes ``num_frames``
= 4k+1 frames at a working size (multiple of 16, area ≤ ``max_area``); they are resampled (nearest in time) to the
segment's frame count and resized (Lanczos) to the keyframe size; frame 0 is the decoded keyframe itself.

Long segments (more frames than one ``window``): a coarse pass spans the whole segment with ``window`` frames; frames of
it become anchors that split the segment into spans of at most ``window - 1`` frames, each generated between its two
anchors (consecutive spans overlap in their shared anchor frame, so they join without a seam). A model that needs a last
frame (FLF2V) is given the first keyframe again when a segment has no next keyframe (the end of the video).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from m3cvcav.engines.interfaces import Image, ModelRef
from m3cvcav.errors import ModelError, UsageError

from .common import (from_pil, generator, load, log, model_ref, pick_device, pick_dtype, pipeline_subfolders,
                     place_pipeline, resolve_folder, safetensors_files, setting, to_pil)

ROLE = "clip_generator"
NEGATIVE = ("static, blurred details, subtitles, worst quality, low quality, JPEG artifacts, deformed, disfigured, "
            "extra fingers, messy background, still picture")


def resample(frames: list[Image], count: int) -> list[Image]:
    """``count`` frames nearest in time to an even spread over ``frames`` (first and last kept)."""
    positions = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in positions]


class WanClipGenerator:
    """``ClipGenerator`` over diffusers' Wan first-last-frame pipelines (FLF2V image-to-video, or VACE)."""

    def __init__(self, settings: Mapping[str, Any]):
        from diffusers import AutoencoderKLWan, DiffusionPipeline, WanImageToVideoPipeline, WanVACEPipeline

        self.device = pick_device(settings, ROLE)
        self.dtype = pick_dtype(settings, self.device, ROLE)
        self.steps = setting(settings, "steps", int, 30, role=ROLE)
        self.guidance = setting(settings, "guidance_scale", float, 5.0, role=ROLE)
        self.window = setting(settings, "window", int, 81, role=ROLE)
        self.max_area = setting(settings, "max_area", int, 480 * 832, role=ROLE)
        self.height = setting(settings, "height", int, 0, role=ROLE)
        self.width = setting(settings, "width", int, 0, role=ROLE)
        self.negative = setting(settings, "negative_prompt", str, NEGATIVE, role=ROLE)
        self.max_text = setting(settings, "max_sequence_length", int, 512, role=ROLE)
        if self.steps < 1 or self.window < 5 or (self.window - 1) % 4 or self.height % 16 or self.width % 16:
            raise UsageError("profile settings clip_generator: steps ≥ 1, window = 4k+1 ≥ 5, height/width multiples "
                             "of 16 (0 = from the keyframe)")
        # The Wan VAE runs in float32 (as its authors recommend); the transformer and encoders in ``dtype``.
        vae = load(settings, ROLE, AutoencoderKLWan.from_pretrained, subfolder="vae", dtype=torch.float32)
        self.pipe = load(settings, ROLE, DiffusionPipeline.from_pretrained, vae=vae, dtype=self.dtype)
        if not isinstance(self.pipe, (WanImageToVideoPipeline, WanVACEPipeline)):
            raise ModelError(f"clip generator {settings['repo']!r} is a {type(self.pipe).__name__}; the m3cvc clip "
                             "generator runs WanImageToVideoPipeline (FLF2V) or WanVACEPipeline models")
        self.vace = isinstance(self.pipe, WanVACEPipeline)
        place_pipeline(self.pipe, settings, self.device, ROLE)
        self.needs_last = not self.vace and getattr(self.pipe.transformer.config, "pos_embed_seq_len", None) is not None
        folder = resolve_folder(str(settings["repo"]), settings.get("revision"))
        self.ref: ModelRef = model_ref(settings, ROLE, safetensors_files(folder, pipeline_subfolders(self.pipe)))
        self.last_calls = 0  # pipeline calls of the last clip (windows)
        log.info("clip generator %s on %s/%s, %d steps, window %d", settings["repo"], self.device, self.dtype,
                 self.steps, self.window)

    def work_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of generation: the profile's, else the keyframe's aspect within ``max_area``, ×16."""
        if self.height and self.width:
            return self.height, self.width
        h, w = size
        scale = min(1.0, math.sqrt(self.max_area / (h * w)))
        return max(16, int(h * scale) // 16 * 16), max(16, int(w * scale) // 16 * 16)

    def generate(self, first: Image, last: Image | None, count: int, text: str, seed: int) -> list[Image]:
        if count < 1:
            raise UsageError(f"a clip needs at least one frame, got {count}")
        size = (int(first.shape[0]), int(first.shape[1]))
        if count == 1:
            return [first.copy()]
        work = self.work_size(size)
        a = to_pil(first).resize((work[1], work[0]), PILImage.Resampling.LANCZOS)
        b = to_pil(last).resize((work[1], work[0]), PILImage.Resampling.LANCZOS) if last is not None else None
        job = _Job(self._embed(text), seed, work)
        span = self._span(a, b, count if last is not None else count - 1, job)
        self.last_calls = job.calls
        return [first.copy()] + [from_pil(im, size) for im in span[1:count]]

    @torch.inference_mode()
    def _embed(self, text: str) -> dict[str, torch.Tensor]:
        """D^C (and the negative prompt) encoded once per clip, reused by every window."""
        cfg = self.guidance > 1.0
        positive, negative = self.pipe.encode_prompt(
            prompt=text, negative_prompt=self.negative if cfg else None, do_classifier_free_guidance=cfg,
            max_sequence_length=self.max_text, device=self.pipe._execution_device)
        return {"prompt_embeds": positive, **({"negative_prompt_embeds": negative} if cfg else {})}

    def _span(self, a, b, n: int, job: _Job) -> list:
        """n + 1 PIL frames from ``a`` to ``b`` (to wherever the motion leads when ``b`` is None)."""
        if n + 1 <= self.window:
            return resample(self._run(a, b, 4 * math.ceil(n / 4) + 1, job), n + 1)
        coarse = self._run(a, b, self.window, job)
        chunks = math.ceil(n / (self.window - 1))
        marks = [round(j * n / chunks) for j in range(chunks + 1)]
        anchors = [coarse[round(m * (self.window - 1) / n)] for m in marks]
        anchors[0] = a
        if b is not None:
            anchors[-1] = b
        out = [a]
        for j in range(chunks):
            out += self._span(anchors[j], anchors[j + 1], marks[j + 1] - marks[j], job)[1:]
        return out

    @torch.inference_mode()
    def _run(self, a, b, num_frames: int, job: _Job) -> list:
        """One pipeline call: ``num_frames`` (4k+1) PIL frames; each call of a clip draws its own seeded noise."""
        job.calls += 1
        if b is None and self.needs_last:
            b = a
        kwargs: dict[str, Any] = dict(job.embeds)
        if self.vace:
            kwargs["video"], kwargs["mask"] = vace_conditioning(a, b, num_frames)
        else:
            kwargs["image"] = a
            if b is not None:
                kwargs["last_image"] = b
        out = self.pipe(height=job.work[0], width=job.work[1], num_frames=num_frames, num_inference_steps=self.steps,
                        guidance_scale=self.guidance, generator=generator(job.seed * 1_000_003 + job.calls),
                        output_type="np", **kwargs)
        video = np.asarray(out.frames[0])
        return [PILImage.fromarray((np.clip(f, 0, 1) * 255).round().astype(np.uint8)) for f in video]


@dataclass
class _Job:
    """One clip's shared state: its text embeddings, seed, working size and the pipeline calls made so far."""

    embeds: dict[str, torch.Tensor]
    seed: int
    work: tuple[int, int]
    calls: int = 0


def vace_conditioning(a, b, num_frames: int) -> tuple[list, list]:
    """VACE inputs for a first(-last)-frame clip: known frames kept (mask 0), the others grey and generated (mask 255)."""
    size = a.size
    grey, keep, make = (PILImage.new("RGB", size, (127, 127, 127)), PILImage.new("L", size, 0),
                        PILImage.new("L", size, 255))
    video = [a] + [grey] * (num_frames - 1)
    mask = [keep] + [make] * (num_frames - 1)
    if b is not None:
        video[-1], mask[-1] = b, keep
    return video, mask


def load_clip_generator(settings: Mapping[str, Any]) -> WanClipGenerator:
    """Factory named by the profile (``m3cvcav.engines.m3cvc.clip:load_clip_generator``)."""
    return WanClipGenerator(settings)
