"""Describer: M3-CVC's multi-round dialogue with a chat VLM (transformers ``AutoModelForImageTextToText``).

Per segment: round 1 asks for the keyframe's global scene; round 2, with round 1 in the conversation, asks for objects,
colours, positions and layout → D^F; round 3 shows the clip (a video where the processor takes videos, else sampled
frames as images) and asks for object and camera motion → D^C, continuing the keyframe's conversation when it is known.
A clip goes in as a video only with its real timing (``fps`` of the frames given, passed on as ``video_metadata``, so
Qwen2.5-VL's temporal positions — ``second_per_grid_ts`` — match the clip); without it, as ordered frames.
D^F is round 1's scene followed by round 2's objects, so text-only (TT2V) keyframes know the place, time of day,
lighting and style. Greedy decoding (deterministic), a token budget per description, batches across segments.
"""
from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..interfaces import Image, ModelRef
from m3cvcav.core.errors import ModelError, UsageError

from .common import (load, log, model_ref, pick_device, pick_dtype, resolve_folder, safetensors_files, setting, to_pil,
                     wants_offload)
from .prompts import fill, load_prompts

ROLE = "describer"
BUDGET_DEFAULTS = {"scene": 64, "frame": 96, "clip": 64}
CLIP_INPUTS = ("auto", "video", "frames")
_HISTORY = 32  # conversations kept for round 3 (segments are described in order, a few at a time)


def clean_text(text: str) -> str:
    """One line of printable text: control characters dropped, whitespace collapsed."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return " ".join(text.split())


def sample_positions(total: int, count: int) -> list[int]:
    """Indices of ``count`` frames evenly spread over ``total``, first and last included (all when fewer)."""
    if total <= count:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count).round().astype(int)]


def sample_frames(frames: Sequence[Image], count: int) -> list[Image]:
    """``count`` frames evenly spread over the clip, first and last included (all of them when there are fewer)."""
    return [frames[i] for i in sample_positions(len(frames), count)]


def video_metadata(total: int, positions: Sequence[int], fps: float) -> dict:
    """transformers' ``VideoMetadata`` of frames at ``positions`` of a ``total``-frame clip given at ``fps``: the
    processor derives the shown frames' real rate (``sampled_fps``) and so each temporal grid's time from it."""
    return {"total_num_frames": int(total), "fps": float(fps), "frames_indices": [int(i) for i in positions],
            "duration": total / fps}


class VLMDescriber:
    """Frame- and clip-level text from a chat VLM; ``kind = "vlm"``."""

    kind = "vlm"

    def __init__(self, settings: Mapping[str, Any]):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = pick_device(settings, ROLE)
        self.dtype = pick_dtype(settings, self.device, ROLE)
        self.offload = wants_offload(settings, self.device, ROLE)
        self.prompts = load_prompts(settings.get("prompts"))
        budgets = settings.get("max_new_tokens", {})
        if not isinstance(budgets, Mapping) or set(budgets) - set(BUDGET_DEFAULTS):
            raise UsageError(f"profile setting describer.max_new_tokens must be a table with {', '.join(BUDGET_DEFAULTS)}")
        self.budgets = {k: int(budgets.get(k, v)) for k, v in BUDGET_DEFAULTS.items()}
        if min(self.budgets.values()) < 1:
            raise UsageError("profile setting describer.max_new_tokens: every budget must be at least 1 token")
        self.clip_frames = setting(settings, "clip_frames", int, 4, role=ROLE)
        self.image_size = setting(settings, "image_size", int, 448, role=ROLE)
        self.batch_size = setting(settings, "batch_size", int, 4, role=ROLE)
        clip_input = setting(settings, "clip_input", str, "auto", role=ROLE)
        if clip_input not in CLIP_INPUTS or min(self.clip_frames, self.image_size, self.batch_size) < 1:
            raise UsageError(f"profile settings describer.clip_input must be one of {', '.join(CLIP_INPUTS)} and "
                             "clip_frames, image_size, batch_size positive")

        try:
            self.processor = load(settings, ROLE, AutoProcessor.from_pretrained, use_safetensors=None)
        except ImportError as err:
            if "torchvision" not in str(err).lower():
                raise
            raise ModelError(f"the describer's processor ({settings['repo']}) needs torchvision, which the m3cvc extra "
                             "does not install: `pip install torchvision==0.28.*` (the build for torch 2.13) or use "
                             "a VLM whose processor does without it") from err
        self.model = load(settings, ROLE, AutoModelForImageTextToText.from_pretrained, dtype=self.dtype).eval()
        self.model.to("cpu" if self.offload else self.device)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # decoder-only batches generate after the prompt
        if clip_input == "auto":
            clip_input = "video" if getattr(self.processor, "video_processor", None) is not None else "frames"
        self.clip_input = clip_input
        folder = resolve_folder(str(settings["repo"]), settings.get("revision"), role=ROLE,
                                profile=str(settings.get("profile", "m3cvc")), variant=settings.get("variant"))
        self.ref: ModelRef = model_ref(settings, ROLE, safetensors_files(folder))
        self._history: OrderedDict[bytes, tuple[list[dict], str, str]] = OrderedDict()
        self._said_untimed = False
        log.info("describer %s on %s/%s, clip input: %s", settings["repo"], self.device, self.dtype, self.clip_input)

    # -- Describer protocol --------------------------------------------------------------------------------------------
    def describe_frame(self, keyframe: Image) -> str:
        return self.describe_frames([keyframe])[0]

    def describe_clip(self, keyframe: Image, frames: Sequence[Image], fps: float | None = None) -> str:
        """D^C of ``frames`` (``fps``: their frame rate, when known: the clip then goes in as a timed video)."""
        return self.describe_clips([keyframe], [frames], None if fps is None else [fps])[0]

    # -- batched -------------------------------------------------------------------------------------------------------
    def describe_frames(self, keyframes: Sequence[Image]) -> list[str]:
        """D^F of each keyframe (rounds 1 and 2), batched."""
        images = [self._pil(k) for k in keyframes]
        convs = [[_user([{"type": "image"}], self.prompts["scene"])] for _ in images]
        scenes = self._generate(convs, [[im] for im in images], None, self.budgets["scene"])
        for conv, scene in zip(convs, scenes):
            conv += [_assistant(scene), _user([], fill(self.prompts["objects"], scene=scene))]
        frames = self._generate(convs, [[im] for im in images], None, self.budgets["frame"])
        out = []
        for key, conv, scene, frame in zip(keyframes, convs, scenes, frames):
            conv.append(_assistant(frame))
            self._remember(_digest(key), conv, scene, frame)
            out.append(" ".join(t for t in (scene, frame) if t))  # D^F: the scene, then the objects and layout
        return out

    def describe_clips(self, keyframes: Sequence[Image], clips: Sequence[Sequence[Image]],
                       fps: Sequence[float | None] | None = None) -> list[str]:
        """D^C of each clip (round 3), batched; continues the keyframe's dialogue when it was described here. ``fps``:
        each clip's frame rate; clips go in as videos (where the processor takes them) only when every rate is known."""
        if len(keyframes) != len(clips) or (fps is not None and len(fps) != len(clips)):
            raise UsageError("describe_clips needs one keyframe (and one fps, when given) per clip")
        as_video = self.clip_input == "video" and fps is not None and all(f for f in fps)
        if self.clip_input == "video" and not as_video and not self._said_untimed:
            log.info("describer: clips without a frame rate go in as ordered frames, not as a video (the VLM would "
                     "assume 24 fps)")
            self._said_untimed = True
        convs, images, videos, metadata = [], [], [], []
        for i, (key, clip) in enumerate(zip(keyframes, clips)):
            clip = list(clip) or [key]
            positions = sample_positions(len(clip), self.clip_frames)
            shown = [self._pil(clip[p]) for p in positions]
            conv, scene, frame = self._history.get(_digest(key), ([], "", ""))
            first = [self._pil(key)] if conv else []
            question = fill(self.prompts["motion"], scene=scene, frame=frame)
            if as_video:
                convs.append(conv + [_user([{"type": "video"}], question)])
                images.append(first)
                videos.append(np.stack([np.asarray(im) for im in shown]))
                metadata.append(video_metadata(len(clip), positions, float(fps[i])))
            else:
                convs.append(conv + [_user([{"type": "image"}] * len(shown), question)])
                images.append(first + shown)
        return self._generate(convs, images, videos or None, self.budgets["clip"], metadata or None)

    # -- internals -----------------------------------------------------------------------------------------------------
    def _pil(self, image: Image):
        pil = to_pil(image)
        scale = self.image_size / max(pil.size)
        if scale < 1:
            pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
        return pil

    def _remember(self, key: bytes, conv: list[dict], scene: str, frame: str) -> None:
        self._history[key] = (conv, scene, frame)
        self._history.move_to_end(key)
        while len(self._history) > _HISTORY:
            self._history.popitem(last=False)

    @contextlib.contextmanager
    def _placed(self):
        """The model on the GPU while it runs; with ``offload`` it goes back to the CPU afterwards."""
        if not self.offload:
            yield
            return
        self.model.to(self.device)
        try:
            yield
        finally:
            self.model.to("cpu")
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _generate(self, convs: list[list[dict]], images: list[list], videos: list | None, budget: int,
                  metadata: list[dict] | None = None) -> list[str]:
        """Greedy answers to the last user turn of each conversation, ``batch_size`` at a time."""
        out: list[str] = []
        with self._placed():
            for start in range(0, len(convs), self.batch_size):
                stop = start + self.batch_size
                texts = [self.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                         for c in convs[start:stop]]
                kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
                batch_images = [im for im in images[start:stop] if im]
                if batch_images:
                    kwargs["images"] = batch_images if len(batch_images) == len(texts) else sum(batch_images, [])
                if videos is not None:
                    kwargs["videos"] = videos[start:stop]
                    if metadata is not None:  # the frames are the sample: the processor must not resample them
                        kwargs.update(video_metadata=metadata[start:stop], do_sample_frames=False)
                inputs = self.processor(**kwargs).to(self.device)
                inputs = {k: v.to(self.dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}
                ids = self.model.generate(**inputs, max_new_tokens=budget, do_sample=False, num_beams=1,
                                          temperature=None, top_p=None, top_k=None)
                new = ids[:, inputs["input_ids"].shape[1]:]
                out += [clean_text(t) for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        return out


def _user(media: list[dict], text: str) -> dict:
    return {"role": "user", "content": [*media, {"type": "text", "text": text}]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _digest(image: Image) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode(), digest_size=16).digest()


def load_describer(settings: Mapping[str, Any]) -> VLMDescriber:
    """Factory named by the profile (``m3cvcav.engines.m3cvc.describer:load_describer``)."""
    return VLMDescriber(settings)
