"""The diffusion VAE (diffusers ``AutoencoderKL``) shared by the m3cvc tokenizer and keyframe generator.

Latents are normalised like the pipelines expect them: ``(mean - shift_factor) * scaling_factor``; encoding takes the
posterior mean, so it is deterministic. One instance per (model, device, dtype) is kept, so the tokenizer and the
keyframe generator of a profile share it, and with it one decoder engine per backend (``decoder``): the tokenizer's
decode and the keyframe pipelines' VAE decode run on the same ONNX Runtime / TensorRT engine.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import load, pick_device, pick_dtype, resolve_folder, safetensors_files


@dataclass
class Vae:
    """A loaded VAE with its normalisation, placement and weight files."""

    model: Any  # diffusers.AutoencoderKL
    device: torch.device
    dtype: torch.dtype
    files: list[Path]  # exactly the files loaded (of the variant, when one is set)
    reload: Callable[[], Any] | None = field(default=None, repr=False)  # the model in float32 from its files (export)
    _decoders: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def scale(self) -> int:
        """Pixels per latent position along each axis."""
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def channels(self) -> int:
        return int(self.model.config.latent_channels)

    def normalisation(self) -> tuple[float, float]:
        """(scaling_factor, shift_factor) of the latents."""
        cfg = self.model.config
        return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, C, H/s, W/s) float32 normalised latents of (H, W, 3) uint8 images of one size (multiples of ``scale``)."""
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        return self.encode_tensor(x).cpu()

    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float32 latents ``(mean - shift) * scaling`` of images (N, 3, H, W) in [-1, 1], on the VAE's
        device (the posterior mean: deterministic). Through the module that carries an offload hook, when one does."""
        posterior = self._encoder().encode(x.to(self.device, self.dtype)).latent_dist
        scaling, shift = self.normalisation()
        return ((posterior.mean - shift) * scaling).float()

    def _encoder(self):
        """The module to call ``encode`` on: a pipeline offloads (``enable_model_cpu_offload``) the module it holds,
        which is an ``EngineVae`` wrapper when the decoder runs on an engine: its ``encode`` moves the wrapper and this
        VAE inside it to the GPU; calling the inner VAE directly would leave its weights on the CPU."""
        return next((d for d in self._decoders.values() if getattr(d, "_hf_hook", None) is not None), self.model)

    def backend(self, backends) -> str:
        """The backend the decoder runs on for ``backends`` (a ``Backends``, or a -engine name): see
        ``networks.pick_backend``."""
        from ..backends import Backends

        from .networks import VAE_DECODER, pick_backend

        backends = backends if isinstance(backends, Backends) else Backends(backends)
        return pick_backend(backends, self.device, VAE_DECODER)

    def decoder(self, backend: str, max_side: int = 512, backends=None):
        """The decoder as diffusers pipelines call it (``decode(z, return_dict)``) on ``backend``: the torch model, or one
        ``EngineVae`` per (backend, max_side) shared by the roles (shape profiles cover sides up to ``max_side``), with
        ``backends``' typed settings."""
        if backend == "torch":
            return self.model
        key = f"{backend}@{max_side}"
        if key not in self._decoders:
            from ..backends import Backends

            from .networks import EngineVae, engine_for, run_sizes, vae_decoder_spec

            make = engine_for(lambda: vae_decoder_spec(self.model, run_sizes(max_side), self.reload),
                              backends or Backends(backend), backend, self.device)
            self._decoders[key] = EngineVae(self.model, make)
        return self._decoders[key]

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, backend: str = "torch", max_side: int = 512) -> list[np.ndarray]:
        """(H, W, 3) uint8 images of normalised latents (N, C, h, w), decoded on ``backend`` (from ``backend()``)."""
        scaling, shift = self.normalisation()
        z = (latents / scaling + shift).to(self.device, self.dtype)
        x = self.decoder(backend, max_side).decode(z, return_dict=False)[0]
        x = x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(im) for im in x]


_CACHE: dict[tuple, Vae] = {}
_LOCK = threading.Lock()


def load_vae(settings: Mapping[str, Any], role: str, subfolder: str = "vae") -> Vae:
    """The VAE in ``subfolder`` of ``settings["repo"]`` (``""`` for a bare VAE folder) of the profile's ``variant``
    (e.g. ``fp16``; the files hashed are the ones loaded), loaded once per (repo, revision, subfolder, variant, device,
    dtype)."""
    from diffusers import AutoencoderKL

    device = pick_device(settings, role, torch_only=False)
    dtype = pick_dtype(settings, device, role)
    variant = settings.get("variant")
    key = (settings.get("repo"), settings.get("revision"), subfolder, variant, str(device), dtype)
    with _LOCK:
        if key not in _CACHE:
            def read(as_dtype: torch.dtype):
                return load(settings, role, AutoencoderKL.from_pretrained, subfolder=subfolder or None, dtype=as_dtype,
                            variant=variant)

            model = read(dtype)
            _CACHE[key] = Vae(model.eval().to(device), device, dtype, vae_files(settings, subfolder),
                              lambda: read(torch.float32))
        return _CACHE[key]


def vae_files(settings: Mapping[str, Any], subfolder: str = "vae") -> list[Path]:
    """The safetensors files ``load_vae`` reads (of the profile's ``variant``), without loading them."""
    role = str(settings.get("role", "model"))
    folder = resolve_folder(str(settings["repo"]), settings.get("revision"), role=role,
                            profile=str(settings.get("profile", "m3cvc")), variant=settings.get("variant"))
    return safetensors_files(folder, [subfolder] if subfolder else None, settings.get("variant"))
