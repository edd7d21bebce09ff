"""The m3cvc diffusion networks on the engines' backends: export descriptors for the VAE decoder, the UNet denoiser and
the Wan video transformer, and thin ``torch.nn.Module`` wrappers that diffusers pipelines call in place of the torch
modules.

The wrappers keep what diffusers reads (``config``, ``dtype``, ``device``, the VAE's ``encode``) from the wrapped torch
module and run ``forward``/``decode`` through an ``Engine`` (ONNX Runtime or TensorRT), created on first use from the
engine cache. Networks over protobuf's 2 GiB (SD-Turbo's UNet in float32, the Wan transformers) are exported with ONNX
external data. Exports are made from float32 weights: a model that runs in bf16/fp16 is exported from a float32 copy
loaded from its files (``reload``), not from its rounded weights.

The Wan transformer: ``torch.nn.RMSNorm`` (its q/k norms) has no ONNX op before opset 23 and the TorchScript exporter
does not convert ``aten::rms_norm``, so the export copy has it decomposed (``x · rsqrt(mean(x²) + ε) · w`` in float32);
its rotary embedding traces to the latent shape, so the graph has static shapes and one export is made per latent shape
(clip length and work size) — which is also what TensorRT builds best. ``auto`` keeps it on torch; an explicit
``backend = "onnxruntime" | "tensorrt"`` for the clip generator exports it.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import torch

from ..backends import (Backends, Engine, ExportSpec, ShapeProfile, TensorSpec, create_engine,
                                      select_backend)
from m3cvcav.core.errors import EngineError

from .common import log

VAE_DECODER = "m3cvc-vae-decoder"
UNET = "m3cvc-unet"
WAN_TRANSFORMER = "m3cvc-wan-transformer"
MAX_BATCH = 2  # classifier-free guidance doubles the batch
DEFAULT_SIZES = ((256, 256), (512, 512))  # `engines build`'s default buckets: its TensorRT plans are the ones used later


def run_sizes(max_side: int) -> list[tuple[int, int]]:
    """The pixel buckets a role working at sides ≤ ``max_side`` runs with (shape profiles covering every work size)."""
    return sorted({*DEFAULT_SIZES, (max_side, max_side)})


def _for_export(module: torch.nn.Module, reload: Callable[[], torch.nn.Module] | None = None) -> torch.nn.Module:
    """``module`` itself when it is on the CPU in float32; else its float32 weights from ``reload`` (from the files), or
    failing that a CPU float32 copy (bf16/fp16-rounded weights, said in the log). The live module stays as it is."""
    params = list(module.parameters())
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return module  # (every parameter: diffusers keeps some modules of a bf16 model in float32)
    if reload is not None:
        return reload().to("cpu", torch.float32).eval()
    log.warning("exporting %s from its %s weights (no float32 source given)", type(module).__name__,
                next((p.dtype for p in params if p.dtype != torch.float32), torch.float32))
    return copy.deepcopy(module).to("cpu", torch.float32)


def pick_backend(backends: Backends, device: torch.device, name: str, *, exportable: bool = True) -> str:
    """``select_backend`` of ``backends.requested`` for network ``name`` on ``device``."""
    return select_backend(backends.requested, device=str(device), exportable=exportable, name=name)


class _DecoderNet(torch.nn.Module):
    """latent (already divided by the scaling factor) → image in [-1, 1]."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent, return_dict=False)[0]


class _UNetNet(torch.nn.Module):
    """(sample, timestep (batch,), encoder_hidden_states) → noise prediction."""

    def __init__(self, unet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def _profiles(sizes: Sequence[tuple[int, int]], shapes: Callable[[int, int, int], dict[str, tuple[int, ...]]],
              scale: int) -> tuple[ShapeProfile, ...]:
    """One TensorRT profile per (height, width) pixel bucket: batch 1..MAX_BATCH, latent sides from 4 up to the bucket."""
    out = []
    for h, w in sorted(set(sizes), key=lambda s: s[0] * s[1]):
        lh, lw = max(4, h // scale), max(4, w // scale)
        out.append(ShapeProfile(name=f"{h}x{w}", min=shapes(1, 4, 4), opt=shapes(1, lh, lw),
                                max=shapes(MAX_BATCH, lh, lw)))
    return tuple(out)


def vae_decoder_spec(vae, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
                     reload: Callable[[], torch.nn.Module] | None = None) -> ExportSpec:
    """The VAE decoder (diffusers ``AutoencoderKL``) as an ``ExportSpec``; ``sizes`` are pixel buckets."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    c = int(vae.config.latent_channels)
    h, w = min(sizes, key=lambda s: s[0] * s[1])
    return ExportSpec(
        name=VAE_DECODER, module=_DecoderNet(_for_export(vae, reload)),
        inputs=(TensorSpec("latent", ("batch", c, "height", "width")),),
        outputs=(TensorSpec("image", ("batch", 3, "image_height", "image_width")),),
        sample={"latent": torch.randn(1, c, max(4, h // scale), max(4, w // scale))},
        profiles=_profiles(sizes, lambda b, lh, lw: {"latent": (b, c, lh, lw)}, scale))


def traced_latent_side(side: int, up_factor: int) -> int:
    """A latent side near ``side`` that is not a multiple of the UNet's overall up factor (2^upsamplers). The UNet picks
    its upsample sizes in Python from the input shape: traced at a multiple, the graph freezes plain ×2 upsamples,
    which break at any other side (a 16:9 latent of 36×64, the 4×4 minimum); traced at a non-multiple, every upsample
    takes its size from the skip connection, which holds at every side."""
    if up_factor <= 1 or side % up_factor:
        return side
    return side + max(1, up_factor // 2)


def unet_spec(unet, text_length: int, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, scale: int = 8,
              reload: Callable[[], torch.nn.Module] | None = None) -> ExportSpec:
    """The UNet denoiser (diffusers ``UNet2DConditionModel``) as an ``ExportSpec``; ``scale`` is the VAE's. The graph
    runs at every latent size its profiles allow (``traced_latent_side``)."""
    cfg = unet.config
    c, dim = int(cfg.in_channels), int(cfg.cross_attention_dim)
    h, w = min(sizes, key=lambda s: s[0] * s[1])
    up = 2 ** int(getattr(unet, "num_upsamplers", len(cfg.block_out_channels) - 1))
    lh, lw = (traced_latent_side(max(4, side // scale), up) for side in (h, w))
    return ExportSpec(
        name=UNET, module=_UNetNet(_for_export(unet, reload)),
        inputs=(TensorSpec("sample", ("batch", c, "height", "width")), TensorSpec("timestep", ("batch",)),
                TensorSpec("encoder_hidden_states", ("batch", "tokens", dim))),
        outputs=(TensorSpec("noise", ("batch", int(cfg.out_channels), "height", "width")),),
        sample={"sample": torch.randn(1, c, lh, lw),
                "timestep": torch.tensor([999.0]), "encoder_hidden_states": torch.randn(1, text_length, dim)},
        profiles=_profiles(sizes, lambda b, lh, lw: {"sample": (b, c, lh, lw), "timestep": (b,),
                                                     "encoder_hidden_states": (b, text_length, dim)}, scale),
        extra={"scale": scale, "traced_latent": [lh, lw]})  # in the cache key: graphs traced at a multiple differ


class _Wrapper(torch.nn.Module):
    """Holds the torch module (for ``config``, placement and export) and its engine, made on first use."""

    def __init__(self, inner: torch.nn.Module, make: Callable[[], Engine]) -> None:
        super().__init__()
        self.inner = inner
        self._make = make
        self._engine: Engine | None = None

    @property
    def config(self):
        return self.inner.config

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._make()
        return self._engine


def _forward_hook(method):
    """diffusers' ``apply_forward_hook``: an accelerate offload hook on the wrapper (``enable_model_cpu_offload``) moves
    it — and the torch module inside it — to the GPU before ``encode``/``decode`` run, as it does for ``forward``."""
    from diffusers.utils.accelerate_utils import apply_forward_hook

    return apply_forward_hook(method)


class EngineVae(_Wrapper):
    """An ``AutoencoderKL`` whose ``decode`` runs on an engine; ``encode`` stays on torch (the inner module, which
    offloading moves with the wrapper)."""

    @_forward_hook
    def encode(self, *args, **kwargs):
        return self.inner.encode(*args, **kwargs)

    @_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        from diffusers.models.autoencoders.vae import DecoderOutput

        image = self.engine({"latent": z.float()})["image"].to(device=z.device, dtype=z.dtype)
        return DecoderOutput(sample=image) if return_dict else (image,)


class EngineUNet(_Wrapper):
    """A ``UNet2DConditionModel`` whose ``forward`` runs on an engine (plain text conditioning only)."""

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, timestep_cond=None,
                cross_attention_kwargs=None, added_cond_kwargs=None, return_dict: bool = True, **extra):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        if timestep_cond is not None or cross_attention_kwargs or added_cond_kwargs or any(
                v is not None for v in extra.values()):
            raise EngineError(f"{self.engine.name}: the exported UNet takes plain text conditioning only; "
                              "use -engine torch for this model")
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0]).contiguous()
        out = self.engine({"sample": sample.float(), "timestep": t.to(sample.device),
                           "encoder_hidden_states": encoder_hidden_states.float()})["noise"]
        out = out.to(device=sample.device, dtype=sample.dtype)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


def engine_for(spec: Callable[[], ExportSpec], backends: Backends, chosen: str,
               device: torch.device) -> Callable[[], Engine]:
    """A maker of ``spec()``'s engine on ``chosen`` (from ``pick_backend``) with ``backends``' typed settings."""
    settings = dataclasses.replace(backends, requested=chosen)
    return lambda: create_engine(spec(), settings, device=str(device))


# -- the Wan video transformer ------------------------------------------------------------------------------------------
class ExportRMSNorm(torch.nn.Module):
    """``torch.nn.RMSNorm`` written with ONNX-exportable ops (float32 inside, like the fused op)."""

    def __init__(self, norm: torch.nn.RMSNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight = norm.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
        y = y.to(x.dtype)
        return y * self.weight if self.weight is not None else y


def decompose_rms_norm(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every ``torch.nn.RMSNorm`` replaced by ``ExportRMSNorm`` (in place; pass a copy)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.RMSNorm):
            setattr(module, name, ExportRMSNorm(child))
        else:
            decompose_rms_norm(child)
    return module


class _WanNet(torch.nn.Module):
    """(hidden_states, timestep, encoder_hidden_states[, encoder_hidden_states_image][, control_hidden_states,
    control_hidden_states_scale]) → the flow prediction."""

    def __init__(self, transformer, image: bool, control: bool) -> None:
        super().__init__()
        self.transformer, self.image, self.control = transformer, image, control

    def forward(self, hidden_states, timestep, encoder_hidden_states, *extra):
        kwargs, extra = {}, list(extra)
        if self.image:
            kwargs["encoder_hidden_states_image"] = extra.pop(0)
        if self.control:
            kwargs["control_hidden_states"], kwargs["control_hidden_states_scale"] = extra
        return self.transformer(hidden_states, timestep, encoder_hidden_states, return_dict=False, **kwargs)[0]


def wan_inputs(transformer, shapes: dict[str, tuple[int, ...]]) -> tuple[TensorSpec, ...]:
    """The graph inputs of a Wan transformer call with these (static) input shapes, in call order."""
    names = ["hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image",
             "control_hidden_states", "control_hidden_states_scale"]
    return tuple(TensorSpec(n, tuple(shapes[n])) for n in names if n in shapes)


def wan_transformer_spec(transformer, shapes: dict[str, tuple[int, ...]],
                         reload: Callable[[], torch.nn.Module] | None = None) -> ExportSpec:
    """The Wan (FLF2V or VACE) transformer as an ``ExportSpec`` for one set of static input ``shapes`` (by input
    name), with RMSNorm decomposed."""
    inputs = wan_inputs(transformer, shapes)
    module = decompose_rms_norm(copy.deepcopy(_for_export(transformer, reload)))
    g = torch.Generator().manual_seed(0)
    sample = {s.name: torch.randn(*s.shape, generator=g) for s in inputs}
    sample["timestep"] = torch.full(shapes["timestep"], 500.0)
    if "control_hidden_states_scale" in sample:
        sample["control_hidden_states_scale"] = torch.ones(shapes["control_hidden_states_scale"])
    h = shapes["hidden_states"]
    out = (h[0], int(transformer.config.out_channels), *h[2:])
    tag = "x".join(map(str, h[2:]))
    image, control = "encoder_hidden_states_image" in shapes, "control_hidden_states" in shapes
    kind = "vace" if control else "flf2v" if image else "t2v"
    return ExportSpec(name=f"{WAN_TRANSFORMER}-{kind}-{tag}", module=_WanNet(module, image, control),
                      inputs=inputs, outputs=(TensorSpec("noise", out),), sample=sample,
                      extra={"shapes": {k: list(v) for k, v in sorted(shapes.items())}, "rms_norm": "decomposed"},
                      profiles=(ShapeProfile(tag, {s.name: s.shape for s in inputs}, {s.name: s.shape for s in inputs},
                                             {s.name: s.shape for s in inputs}),))


class EngineWanTransformer(_Wrapper):
    """A Wan transformer whose ``forward`` runs on an engine per input shape (static-shape exports, made on first use
    of each shape); ``attention_kwargs`` (LoRA scales) are not supported there."""

    def __init__(self, inner: torch.nn.Module, make: Callable[[dict[str, tuple[int, ...]]], Engine]) -> None:
        super().__init__(inner, lambda: None)
        self._make_for = make
        self._engines: dict[tuple, Engine] = {}

    def cache_context(self, name: str):
        """diffusers' cache-context hook (step caching applies to torch modules only): a no-op context here."""
        import contextlib

        return contextlib.nullcontext()

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None,
                control_hidden_states=None, control_hidden_states_scale=None, attention_kwargs=None,
                return_dict: bool = True, **extra):
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        if attention_kwargs or any(v is not None for v in extra.values()):
            raise EngineError("the exported Wan transformer takes no attention_kwargs: use -engine torch for it")
        feeds = {"hidden_states": hidden_states.float(), "encoder_hidden_states": encoder_hidden_states.float(),
                 "timestep": torch.as_tensor(timestep, dtype=torch.float32, device=hidden_states.device)
                 .reshape(-1).expand(hidden_states.shape[0]).contiguous()}
        if encoder_hidden_states_image is not None:
            feeds["encoder_hidden_states_image"] = encoder_hidden_states_image.float()
        if control_hidden_states is not None:
            feeds["control_hidden_states"] = control_hidden_states.float()
            scale = control_hidden_states_scale
            if scale is None:
                scale = torch.ones(len(self.inner.config.vace_layers))
            feeds["control_hidden_states_scale"] = torch.as_tensor(scale, dtype=torch.float32,
                                                                   device=hidden_states.device)
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        key = tuple(sorted(shapes.items()))
        if key not in self._engines:
            self._engines[key] = self._make_for(shapes)
        out = self._engines[key](feeds)["noise"].to(device=hidden_states.device, dtype=hidden_states.dtype)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)
