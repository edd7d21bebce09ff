"""The m3cvc diffusion networks on the engines' backends: export descriptors for the VAE decoder and the UNet denoiser,
and thin ``torch.nn.Module`` wrappers that diffusers pipelines call in place of the torch modules.

The wrappers keep what diffusers reads (``config``, ``dtype``, ``device``, the VAE's ``encode``) from the wrapped torch
module and run ``forward``/``decode`` through an ``Engine`` (ONNX Runtime or TensorRT), created on first use from the
engine cache. Networks over ONNX's 2 GiB single-file limit are not exported (``auto`` keeps them on torch).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from m3cvcav.engines.backends import (Engine, ExportSpec, ShapeProfile, TensorSpec, create_engine, select_backend)
from m3cvcav.errors import EngineError

from .common import log

VAE_DECODER = "m3cvc-vae-decoder"
UNET = "m3cvc-unet"
ONNX_LIMIT = 2 ** 31 - 2 ** 26  # protobuf's 2 GiB, less room for the graph itself
MAX_BATCH = 2  # classifier-free guidance doubles the batch
DEFAULT_SIZES = ((256, 256), (512, 512))  # `engines build`'s default buckets: its TensorRT plans are the ones used later


def run_sizes(max_side: int) -> list[tuple[int, int]]:
    """The pixel buckets a role working at sides ≤ ``max_side`` runs with (shape profiles covering every work size)."""
    return sorted({*DEFAULT_SIZES, (max_side, max_side)})


def _for_export(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` itself when it is on the CPU in float32, else a CPU float32 copy (the live one stays as it is)."""
    param = next(module.parameters())
    if param.device.type == "cpu" and param.dtype == torch.float32:
        return module
    return copy.deepcopy(module).to("cpu", torch.float32)


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``module``'s weights as exported (float32)."""
    return sum(t.numel() * 4 for t in module.state_dict().values())


def pick_backend(requested: str, module: torch.nn.Module, device: torch.device, name: str) -> str:
    """``select_backend`` for ``module`` on ``device``: a network too large for one ONNX file is not exportable."""
    exportable = weight_bytes(module) < ONNX_LIMIT
    if not exportable and requested == "auto":
        log.info("%s: %.1f GB of weights exceeds ONNX's 2 GiB file limit: it runs on torch", name,
                 weight_bytes(module) / 1e9)
    return select_backend(requested, device=str(device), exportable=exportable, name=name)


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


def vae_decoder_spec(vae, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES) -> ExportSpec:
    """The VAE decoder (diffusers ``AutoencoderKL``) as an ``ExportSpec``; ``sizes`` are pixel buckets."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    c = int(vae.config.latent_channels)
    h, w = min(sizes, key=lambda s: s[0] * s[1])
    return ExportSpec(
        name=VAE_DECODER, module=_DecoderNet(_for_export(vae)),
        inputs=(TensorSpec("latent", ("batch", c, "height", "width")),),
        outputs=(TensorSpec("image", ("batch", 3, "image_height", "image_width")),),
        sample={"latent": torch.randn(1, c, max(4, h // scale), max(4, w // scale))},
        profiles=_profiles(sizes, lambda b, lh, lw: {"latent": (b, c, lh, lw)}, scale))


def unet_spec(unet, text_length: int, sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, scale: int = 8) -> ExportSpec:
    """The UNet denoiser (diffusers ``UNet2DConditionModel``) as an ``ExportSpec``; ``scale`` is the VAE's."""
    cfg = unet.config
    c, dim = int(cfg.in_channels), int(cfg.cross_attention_dim)
    h, w = min(sizes, key=lambda s: s[0] * s[1])
    return ExportSpec(
        name=UNET, module=_UNetNet(_for_export(unet)),
        inputs=(TensorSpec("sample", ("batch", c, "height", "width")), TensorSpec("timestep", ("batch",)),
                TensorSpec("encoder_hidden_states", ("batch", "tokens", dim))),
        outputs=(TensorSpec("noise", ("batch", int(cfg.out_channels), "height", "width")),),
        sample={"sample": torch.randn(1, c, max(4, h // scale), max(4, w // scale)),
                "timestep": torch.tensor([999.0]), "encoder_hidden_states": torch.randn(1, text_length, dim)},
        profiles=_profiles(sizes, lambda b, lh, lw: {"sample": (b, c, lh, lw), "timestep": (b,),
                                                     "encoder_hidden_states": (b, text_length, dim)}, scale),
        extra={"scale": scale})


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


class EngineVae(_Wrapper):
    """An ``AutoencoderKL`` whose ``decode`` runs on an engine; ``encode`` stays on torch."""

    def encode(self, *args, **kwargs):
        return self.inner.encode(*args, **kwargs)

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


def engine_for(spec: Callable[[], ExportSpec], backend: str, device: torch.device) -> Callable[[], Engine]:
    """A maker of ``spec()``'s engine on ``backend`` (an explicit choice from ``pick_backend``)."""
    return lambda: create_engine(spec(), backend, device=str(device))
