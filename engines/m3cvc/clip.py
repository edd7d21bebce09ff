"""Clip generator of the m3cvc profile: first-last-frame video diffusion with D^C as the prompt, guided by the stream's
motion.

Two diffusers pipelines, told apart by the model folder's ``model_index.json``: Wan2.1 FLF2V
(``WanImageToVideoPipeline`` with ``last_image``) and Wan2.1 VACE (``WanVACEPipeline``: a conditioning video and a mask saying which frames to make).

Timing: the model makes ``4⌈n/4⌉+1`` frames for a span of ``n`` source frame intervals, one model frame per source
frame. VACE places the next keyframe at frame ``n`` of its conditioning video (mask 0), so frames ``0..n`` are kept as
they are and the extra tail is dropped: no frame is repeated or skipped. FLF2V pins the last keyframe to its last frame,
so when ``n`` is not a multiple of 4 its frames are sampled at ``n + 1`` evenly spaced times, a time between two model
frames blending them linearly (``retime``), never the nearest frame (which judders). With the transformer on an engine
(static shapes) every call makes ``window`` frames instead, timed the same way, so one engine serves every segment.

Motion (``prediction``): the motion-compensated prediction of every frame of the segment from the stream's motion
layer. VACE gets it as the conditioning video of the frames it generates (VACE's control-video input, the way it takes
depth, pose or flow videos), so the denoiser follows the transmitted motion and repairs what block motion breaks; FLF2V
has no control input, so the prediction, VAE-encoded and noised to ``motion_strength`` of the schedule, is the start of
the denoising (video-to-video, SDEdit): the late steps keep its motion and the first keyframe still conditions every
step. D^C stays the prompt in both. Without a prediction the clip is generated from the keyframes and D^C alone.

Long segments (more frames than one ``window``): a coarse pass spans the whole segment with ``window`` frames; frames of
it become anchors that split the segment into spans of at most ``window - 1`` frames, each generated between its two
anchors (consecutive spans overlap in their shared anchor frame, so they join without a seam). A model that needs a last
frame (FLF2V) is given the first keyframe again when a segment has no next keyframe (the end of the video).
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from ..interfaces import Image, ModelRef
from m3cvcav.core.errors import ModelError, UsageError

from .common import (from_pil, generator, load, log, pick_device, pick_dtype, pipeline_ref, place_pipeline, setting,
                     to_pil)

ROLE = "clip_generator"
NEGATIVE = ("static, blurred details, subtitles, worst quality, low quality, JPEG artifacts, deformed, disfigured, "
            "extra fingers, messy background, still picture")
AREA_480P, AREA_720P = 480 * 832, 720 * 1280


def model_frames(n: int) -> int:
    """Frames the model makes for a span of ``n`` frame intervals: the smallest 4k+1 ≥ n+1."""
    return 4 * math.ceil(n / 4) + 1


def retime(frames: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
    """``count`` frames at evenly spaced times over ``frames`` (first and last kept); a time between two frames blends
    them linearly, so motion keeps an even pace (nearest-frame picking repeats and skips frames unevenly)."""
    if count == 1:
        return [frames[0]]
    out = []
    for i in range(count):
        t = i * (len(frames) - 1) / (count - 1)
        lo = min(int(math.floor(t)), len(frames) - 1)
        w = t - lo
        if w < 1e-6 or lo + 1 >= len(frames):
            out.append(frames[lo])
        else:
            mix = (1 - w) * frames[lo].astype(np.float32) + w * frames[lo + 1].astype(np.float32)
            out.append(np.clip(mix + 0.5, 0, 255).astype(np.uint8))
    return out


def check_prediction(prediction: Sequence[Image] | None, count: int) -> None:
    """A UsageError unless ``prediction`` is None or has ``count`` frames."""
    if prediction is not None and len(prediction) != count:
        raise UsageError(f"the motion prediction has {len(prediction)} frames for a clip of {count}: pass one per "
                         "frame")


def _check_frame(frame, size: tuple[int, int]) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (*size, 3):
        raise UsageError(f"motion prediction frames must be {size[0]}x{size[1]}x3 uint8 RGB like the keyframe")


class WanClipGenerator:
    """``ClipGenerator`` over diffusers' Wan first-last-frame pipelines (FLF2V image-to-video, or VACE)."""

    def __init__(self, settings: Mapping[str, Any]):
        from diffusers import AutoencoderKLWan, DiffusionPipeline, WanImageToVideoPipeline, WanVACEPipeline

        self.device = pick_device(settings, ROLE, torch_only=False)
        self.dtype = pick_dtype(settings, self.device, ROLE)
        repo = str(settings.get("repo", ""))
        self.steps = setting(settings, "steps", int, 30, role=ROLE)
        self.guidance = setting(settings, "guidance_scale", float, 5.0, role=ROLE)
        self.window = setting(settings, "window", int, 81, role=ROLE)
        # 720P checkpoints were trained at 720×1280: the 480P area would under-use them.
        self.max_area = setting(settings, "max_area", int, AREA_720P if "720p" in repo.lower() else AREA_480P,
                                role=ROLE)
        self.height = setting(settings, "height", int, 0, role=ROLE)
        self.width = setting(settings, "width", int, 0, role=ROLE)
        self.negative = setting(settings, "negative_prompt", str, NEGATIVE, role=ROLE)
        self.max_text = setting(settings, "max_sequence_length", int, 512, role=ROLE)
        self.motion_strength = setting(settings, "motion_strength", float, 0.7, role=ROLE)
        if self.steps < 1 or self.window < 5 or (self.window - 1) % 4 or self.height % 16 or self.width % 16:
            raise UsageError("profile settings clip_generator: steps ≥ 1, window = 4k+1 ≥ 5, height/width multiples "
                             "of 16 (0 = from the keyframe)")
        if not 0.0 < self.motion_strength <= 1.0:
            raise UsageError("profile setting clip_generator.motion_strength must be in (0, 1]: the share of the "
                             "denoising schedule run from the motion prediction")
        # The Wan VAE and (FLF2V) the CLIP image encoder run in float32, as diffusers' examples load them; the
        # transformer and the text encoder in ``dtype``.
        variant = settings.get("variant")  # the files loaded are the files hashed (``pipeline_ref``)
        vae = load(settings, ROLE, AutoencoderKLWan.from_pretrained, subfolder="vae", dtype=torch.float32,
                   variant=variant)
        self.pipe = load(settings, ROLE, DiffusionPipeline.from_pretrained, vae=vae, dtype=self.dtype, variant=variant)
        if not isinstance(self.pipe, (WanImageToVideoPipeline, WanVACEPipeline)):
            raise ModelError(f"clip generator {settings['repo']!r} is a {type(self.pipe).__name__}; the m3cvc clip "
                             "generator runs WanImageToVideoPipeline (FLF2V) or WanVACEPipeline models")
        encoder = getattr(self.pipe, "image_encoder", None)
        if encoder is not None and encoder.dtype != torch.float32:
            # from_pretrained does not keep a passed image encoder, so the float32 one replaces the cast one here
            self.pipe.register_modules(image_encoder=load(settings, ROLE, type(encoder).from_pretrained,
                                                          subfolder="image_encoder", dtype=torch.float32,
                                                          variant=variant))
        self.vace = isinstance(self.pipe, WanVACEPipeline)
        self._settings = dict(settings)
        self.backends = {"transformer": self._place_transformer(settings)}
        place_pipeline(self.pipe, settings, self.device, ROLE)
        self.needs_last = not self.vace and getattr(self.pipe.transformer.config, "pos_embed_seq_len", None) is not None
        self.ref: ModelRef = pipeline_ref(settings, ROLE)
        self.last_calls = 0  # pipeline calls of the last clip (windows)
        log.info("clip generator %s on %s/%s, %d steps, window %d, motion: %s", settings["repo"], self.device,
                 self.dtype, self.steps, self.window,
                 "VACE control video" if self.vace else f"video-to-video from strength {self.motion_strength:.2f}")

    def _place_transformer(self, settings: Mapping[str, Any]) -> str:
        """Run the transformer on the requested backend: ``auto`` keeps torch (the exported graph is per clip shape,
        see ``networks``); onnxruntime/tensorrt swap in an ``EngineWanTransformer`` exporting each shape once."""
        import dataclasses

        from ..backends import backends_of, create_engine

        from .networks import WAN_TRANSFORMER, EngineWanTransformer, pick_backend

        typed = backends_of(settings)
        if typed.requested == "auto":
            log.info("%s: the Wan transformer runs on torch under -engine auto (its ONNX export is per clip shape: "
                     "set backend = \"onnxruntime\" or \"tensorrt\" for the clip generator to use it)", ROLE)
            return "torch"
        chosen = pick_backend(typed, self.device, WAN_TRANSFORMER)
        if chosen == "torch":
            return chosen
        run = dataclasses.replace(typed, requested=chosen)
        self.pipe.transformer = EngineWanTransformer(
            self.pipe.transformer, lambda shapes: create_engine(self.transformer_spec(shapes), run,
                                                                device=str(self.device)))
        return chosen

    def transformer_spec(self, shapes: dict[str, tuple[int, ...]]):
        """The Wan transformer's export for one set of static input shapes, from its float32 weights read from the
        files (a bf16/fp16 model's rounded weights would give another graph and another cache key): what a run
        exports and what ``engines build`` builds ahead of time, so the two meet in the engine cache."""
        from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

        from .networks import wan_transformer_spec

        settings = self._settings
        kind = WanVACETransformer3DModel if self.vace else WanTransformer3DModel
        reload = lambda: load(settings, ROLE, kind.from_pretrained, subfolder="transformer",  # noqa: E731
                              dtype=torch.float32, variant=settings.get("variant"))
        return wan_transformer_spec(_inner(self.pipe.transformer), shapes, reload)

    def export_specs(self, sizes: Sequence[tuple[int, int]]) -> list:
        """The Wan transformer at each (height, width) work size for ``window``-frame calls: on an engine every call
        runs at ``window`` frames (``_call_frames``), so these are the shapes a run uses."""
        return [self.transformer_spec(self._shapes(size, self.window)) for size in sizes]

    def _call_frames(self, n: int) -> int:
        """Frames of a pipeline call spanning ``n`` frame intervals: the fewest the model allows on torch; on an engine
        (static shapes: one export and build per shape) always ``window``, so every segment length uses the one
        engine ``engines build`` made."""
        return model_frames(n) if self.backends["transformer"] == "torch" else self.window

    def _shapes(self, size: tuple[int, int], frames: int) -> dict[str, tuple[int, ...]]:
        """The transformer's input shapes (batch 1) for a clip of ``frames`` at work ``size``."""
        t = _inner(self.pipe.transformer)
        cfg = t.config
        s_scale, t_scale = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
        h, w = self.work_size(size)
        lat = ((frames - 1) // t_scale + 1, h // s_scale, w // s_scale)
        text = (1, self.max_text, int(cfg.text_dim))
        shapes = {"hidden_states": (1, int(cfg.in_channels), *lat), "timestep": (1,), "encoder_hidden_states": text}
        if self.vace:
            shapes["control_hidden_states"] = (1, int(cfg.vace_in_channels), *lat)
            shapes["control_hidden_states_scale"] = (len(cfg.vace_layers),)
        elif cfg.image_dim is not None:
            encoder = self.pipe.image_encoder.config
            tokens = (int(encoder.image_size) // int(encoder.patch_size)) ** 2 + 1
            shapes["encoder_hidden_states_image"] = (2 if self.needs_last else 1, tokens, int(cfg.image_dim))
        return shapes

    def work_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of generation: the profile's, else the keyframe's aspect within ``max_area``, ×16."""
        if self.height and self.width:
            return self.height, self.width
        h, w = size
        scale = min(1.0, math.sqrt(self.max_area / (h * w)))
        return max(16, int(h * scale) // 16 * 16), max(16, int(w * scale) // 16 * 16)

    def generate(self, first: Image, last: Image | None, count: int, text: str, seed: int,
                 prediction: Sequence[Image] | None = None) -> list[Image]:
        """``count`` frames from ``first`` (towards ``last``, the next keyframe, when given) following ``prediction``
        (the motion-compensated prediction of each frame, frame 0 = the keyframe) when given."""
        if count < 1:
            raise UsageError(f"a clip needs at least one frame, got {count}")
        size = (int(first.shape[0]), int(first.shape[1]))
        check_prediction(prediction, count)
        if count == 1:
            return [first.copy()]
        work = self.work_size(size)
        a = _work(first, work)
        b = _work(last, work) if last is not None else None
        guide = self._guide(prediction, first, size, work, a, b) if prediction is not None else None
        job = _Job(self._embed(text), seed, work)
        span = self._span(a, b, count if last is not None else count - 1, guide, job)
        self.last_calls = job.calls
        return [first.copy()] + [from_pil(PILImage.fromarray(im), size) for im in span[1:count]]

    def _guide(self, prediction: Sequence[Image], first: Image, size: tuple[int, int], work: tuple[int, int],
               a: np.ndarray, b: np.ndarray | None) -> list[np.ndarray] | None:
        """The prediction at the working size, read one frame at a time (it may be computed lazily), with the next
        keyframe after it; None when every frame is the keyframe itself (a stream without motion: nothing to follow,
        so the clip is generated as without a prediction)."""
        guide, moving = [a], False
        for i in range(1, len(prediction)):
            frame = prediction[i]
            _check_frame(frame, size)
            moving = moving or not (frame is first or np.array_equal(frame, first))
            guide.append(_work(frame, work))
        if not moving:
            return None
        return guide + ([b] if b is not None else [])

    @torch.inference_mode()
    def _embed(self, text: str) -> dict[str, torch.Tensor]:
        """D^C (and the negative prompt) encoded once per clip, reused by every window."""
        cfg = self.guidance > 1.0
        positive, negative = self.pipe.encode_prompt(
            prompt=text, negative_prompt=self.negative if cfg else None, do_classifier_free_guidance=cfg,
            max_sequence_length=self.max_text, device=self.pipe._execution_device)
        return {"prompt_embeds": positive, **({"negative_prompt_embeds": negative} if cfg else {})}

    def _span(self, a: np.ndarray, b: np.ndarray | None, n: int, guide: list[np.ndarray] | None,
              job: _Job) -> list[np.ndarray]:
        """n + 1 frames from ``a`` to ``b`` (to wherever the motion leads when ``b`` is None), one per source frame;
        ``guide`` (n + 1 frames, or n when ``b`` is None) is the motion prediction over the span."""
        if n + 1 <= self.window:
            frames = self._call_frames(n)
            if b is not None and not self.vace:  # FLF2V: b is the model's last frame, so its frames are retimed
                out = self._run(a, b, frames, frames - 1, retime(guide, frames) if guide else None, job)
                return retime(out, n + 1)
            if guide:
                guide = guide + [guide[-1]] * (frames - len(guide))
            return self._run(a, b, frames, n, guide, job)[: n + 1]
        coarse = self._run(a, b, self.window, self.window - 1, retime(guide, self.window) if guide else None, job)
        chunks = math.ceil(n / (self.window - 1))
        marks = [round(j * n / chunks) for j in range(chunks + 1)]
        anchors = [coarse[round(m * (self.window - 1) / n)] for m in marks]
        anchors[0] = a
        if b is not None:
            anchors[-1] = b
        out = [a]
        for j in range(chunks):
            part = guide[marks[j]: marks[j + 1] + 1] if guide else None
            if part is not None and len(part) < marks[j + 1] - marks[j] + 1:
                part = part + [anchors[j + 1]]  # the end of the video: the guide stops one frame before the span
            out += self._span(anchors[j], anchors[j + 1], marks[j + 1] - marks[j], part, job)[1:]
        return out

    @torch.inference_mode()
    def _run(self, a: np.ndarray, b: np.ndarray | None, num_frames: int, last_at: int, guide: list[np.ndarray] | None,
             job: _Job) -> list[np.ndarray]:
        """One pipeline call: ``num_frames`` (4k+1) frames with ``a`` first and ``b`` at ``last_at`` (VACE; FLF2V puts
        it last), following ``guide`` (``num_frames`` frames) when given; each call draws its own seeded noise."""
        job.calls += 1
        if b is None and self.needs_last:
            b = a
        kwargs: dict[str, Any] = dict(job.embeds)
        skip = 0
        if self.vace:
            kwargs["video"], kwargs["mask"] = vace_conditioning(_pil(a), _pil(b) if b is not None else None,
                                                                num_frames, last_at, [_pil(g) for g in guide or ()])
        else:
            kwargs["image"] = _pil(a)
            if b is not None:
                kwargs["last_image"] = _pil(b)
            if guide:
                kwargs["latents"], skip = self._init_latents(guide, job)
        with _skip_steps(self.pipe.scheduler, skip):
            out = self.pipe(height=job.work[0], width=job.work[1], num_frames=num_frames,
                            num_inference_steps=self.steps, guidance_scale=self.guidance,
                            generator=generator(job.seed * 1_000_003 + job.calls), output_type="np", **kwargs)
        video = np.asarray(out.frames[0])
        return [(np.clip(f, 0, 1) * 255).round().astype(np.uint8) for f in video]

    def _init_latents(self, guide: list[np.ndarray], job: _Job) -> tuple[torch.Tensor, int]:
        """The start of a video-to-video pass: the guide's normalised Wan latents noised to the sigma of the first step
        kept (``motion_strength`` of the schedule), and how many steps are skipped."""
        pipe = self.pipe
        device = pipe._execution_device
        video = pipe.video_processor.preprocess_video([_pil(g) for g in guide], height=job.work[0], width=job.work[1])
        z = pipe.vae.encode(video.to(device, pipe.vae.dtype)).latent_dist.mode().float()
        cfg = pipe.vae.config
        mean = torch.tensor(cfg.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, device=z.device).view(1, -1, 1, 1, 1)
        x0 = (z - mean) / std
        pipe.scheduler.set_timesteps(self.steps, device=device)
        skip = self.steps - max(1, round(self.steps * self.motion_strength))
        sigma = float(pipe.scheduler.sigmas[skip])
        noise = torch.randn(x0.shape, generator=generator(job.seed * 1_000_003 + job.calls + 500_009))
        return sigma * noise.to(x0.device) + (1.0 - sigma) * x0, skip


@contextlib.contextmanager
def _skip_steps(scheduler, skip: int):
    """While active, the scheduler's ``set_timesteps`` keeps only the schedule's tail after ``skip`` steps, as a
    schedule of its own: ``timesteps`` and ``sigmas`` cut together and the step index starting at 0 (the pipelines
    iterate ``scheduler.timesteps``). Multistep solvers (UniPC, which the Wan repos ship) read ``sigmas[step_index]``
    and count the steps left from ``len(timesteps) - step_index``: with the timesteps alone cut and the index starting
    at ``skip``, UniPC failed its ``this_order > 0`` assertion."""
    if skip <= 0:
        yield
        return
    original = scheduler.set_timesteps

    def set_timesteps(*args, **kwargs):
        original(*args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[skip:]
        sigmas = getattr(scheduler, "sigmas", None)
        if sigmas is not None:
            scheduler.sigmas = sigmas[skip:]
        if getattr(scheduler, "num_inference_steps", None) is not None:
            scheduler.num_inference_steps = len(scheduler.timesteps)
        scheduler.set_begin_index(0)

    scheduler.set_timesteps = set_timesteps
    try:
        yield
    finally:
        del scheduler.set_timesteps


def _inner(module):
    """The torch module behind an engine wrapper (or the module itself)."""
    return getattr(module, "inner", module)


def _work(image: Image, work: tuple[int, int]) -> np.ndarray:
    """An image resized (Lanczos) to the working (height, width)."""
    return from_pil(to_pil(image), work)


def _pil(image: np.ndarray) -> PILImage.Image:
    return PILImage.fromarray(image, "RGB")


@dataclass
class _Job:
    """One clip's shared state: its text embeddings, seed, working size and the pipeline calls made so far."""

    embeds: dict[str, torch.Tensor]
    seed: int
    work: tuple[int, int]
    calls: int = 0


def vace_conditioning(a, b, num_frames: int, last_at: int | None = None,
                      guide: Sequence | None = None) -> tuple[list, list]:
    """VACE inputs: the keyframes kept (mask 0) at 0 and ``last_at`` (default: the last frame); the other frames are
    generated (mask 255) from the motion prediction ``guide`` as their control video, or from grey without one."""
    size = a.size
    grey, keep, make = (PILImage.new("RGB", size, (127, 127, 127)), PILImage.new("L", size, 0),
                        PILImage.new("L", size, 255))
    video = [a] + [grey] * (num_frames - 1)
    mask = [keep] + [make] * (num_frames - 1)
    for i, frame in enumerate(list(guide or ())[1:num_frames], start=1):
        video[i] = frame
    if b is not None:
        at = num_frames - 1 if last_at is None else last_at
        video[at], mask[at] = b, keep
    return video, mask


def load_clip_generator(settings: Mapping[str, Any]) -> WanClipGenerator:
    """Factory named by the profile (``m3cvcav.engines.m3cvc.clip:load_clip_generator``)."""
    return WanClipGenerator(settings)


load_clip_generator.model_ref = functools.partial(pipeline_ref, role=ROLE)
