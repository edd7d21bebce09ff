"""Keyframe tokenizer of the m3cvc profile: the shipped lite tokenizer by default, VQ over a diffusion VAE latent when
the profile lists codebooks.

Without ``codebooks`` the factory returns the project's lite VQ tokenizer (weights in the package: nothing to train or
download), and SD-Turbo img2img guided by D^F restores its keyframes (CMVC's IT2V). With ``codebooks`` it is M3-CVC's
K* over the diffusion VAE's latent, below. The sequence header records which one coded a stream by its model id:
``engines.tokenizer.MODEL_ID`` (0x0401) or ``VQ_MODEL_ID`` (17), and the profile's ``model_id`` must say the same.

VQ over the VAE latent:

encode: keyframe → resized to the working size (longest side ≤ ``max_side``, sides multiples of VAE scale × patch) →
VAE posterior mean → nearest codebook entry per p×p latent patch → K* (1, h, w) int32. decode: codebook lookup → VAE
decode (on the profile's backend, see ``vae.Vae.decoder``) → resized back to the source size. Rate points: for each
codebook file (``codebooks = [...]``, in order) each depth 1..L of its residual levels, so a 2-level codebook gives two
rate points (lowest rate first when listed so).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image as PILImage

from m3cvcav.bitstream.entropy import TokenModel
from m3cvcav.core.errors import ModelError, UsageError
from ..interfaces import Image, ModelRef, RatePoint, TokenGrid
from ..tokenizer.codec import TokenCodec

from .codebook import Codebook, load_codebook
from .common import from_pil, model_ref, round_to, setting, to_pil
from .vae import Vae, load_vae

ROLE = "tokenizer"
VQ_MODEL_ID = 17


class VaeVqTokenizer(TokenCodec):
    """``KeyframeTokenizer`` over a diffusers AutoencoderKL and per-rate-point codebooks."""

    def __init__(self, settings: Mapping[str, Any]):
        paths = settings.get("codebooks")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise UsageError("profile setting tokenizer.codebooks must list codebook files (lowest rate first); make one "
                             "with `python -m m3cvcav train tokenizer --vae ...`")
        self.vae: Vae = load_vae(settings, ROLE, setting(settings, "subfolder", str, "vae", role=ROLE))
        from ..backends import backends_of

        self.backend = self.vae.backend(backends_of(settings))  # the VAE decoder's; encoding stays on torch
        self.codebooks: list[Codebook] = [load_codebook(p) for p in paths]
        self.max_side = setting(settings, "max_side", int, 512, role=ROLE)
        vocabs = {b.vocab for b in self.codebooks}
        ids = {b.codebook_id for b in self.codebooks}
        if len(vocabs) != 1 or len(ids) != 1:
            raise ModelError("tokenizer codebooks must share one vocabulary size and codebook_id: rebuild them together")
        for book in self.codebooks:
            if book.latent_channels != self.vae.channels:
                raise ModelError(f"codebook has {book.latent_channels} latent channels, the VAE {self.vae.channels}: "
                                 "the codebook was trained for another VAE")
        self.vocab = vocabs.pop()
        self.codebook_id = int(settings.get("codebook_id", ids.pop()))
        self._points = [(book, depth) for book in self.codebooks for depth in range(1, book.depth + 1)]
        self.rate_points = tuple(
            RatePoint(i, f"vq{self.vocab}-p{book.patch}-d{depth}",  # nominal: bits/px before entropy coding
                      depth * math.log2(self.vocab) / float((self.vae.scale * book.patch) ** 2))
            for i, (book, depth) in enumerate(self._points))
        self.ref: ModelRef = model_ref(settings, ROLE, [*self.vae.files, *map(str, paths)])
        self._models: dict[int, Any] = {}

    def _point(self, rate_point: int) -> tuple[Codebook, int]:
        if not 0 <= rate_point < len(self._points):
            raise UsageError(f"rate point {rate_point} does not exist: this tokenizer has 0..{len(self._points) - 1}")
        return self._points[rate_point]

    def work_size(self, size: tuple[int, int], rate_point: int) -> tuple[int, int]:
        """(height, width) the VAE sees for a source of ``size``: longest side ≤ ``max_side``, sides on the grid."""
        h, w = size
        scale = min(1.0, self.max_side / max(h, w))
        multiple = self.vae.scale * self._point(rate_point)[0].patch
        return round_to(round(h * scale), multiple), round_to(round(w * scale), multiple)

    def encode(self, image: Image, rate_point: int) -> TokenGrid:
        book, depth = self._point(rate_point)
        size = (int(image.shape[0]), int(image.shape[1]))
        work = from_pil(to_pil(image), self.work_size(size, rate_point))
        indices = book.quantise(self.vae.encode([work]), depth)[0]
        return TokenGrid(indices=indices, codebook_id=self.codebook_id, rate_point=rate_point, vocab=self.vocab,
                         image_size=size)

    def decode(self, grid: TokenGrid) -> Image:
        if grid.codebook_id != self.codebook_id:
            raise ModelError(f"stream tokens use codebook {grid.codebook_id}, this tokenizer has {self.codebook_id}: "
                             "decode with the profile the stream was made with")
        book, depth = self._point(grid.rate_point)
        indices = np.asarray(grid.indices)
        if indices.ndim != 3 or indices.shape[0] != depth:
            raise ModelError(f"token grid of shape {indices.shape} does not match rate point {grid.rate_point} "
                             f"({depth} level(s)): the stream is damaged or from another tokenizer")
        latents = book.dequantise(indices[None])
        image = self.vae.decode(latents, self.backend, self.max_side)[0]
        return from_pil(PILImage.fromarray(image), tuple(grid.image_size))

    def token_model(self, rate_point: int):
        """The rate point's entropy model, built once (it keeps its coder tables across keyframes)."""
        book, _ = self._point(rate_point)
        if not book.entropy:
            raise ModelError(f"the codebook of rate point {rate_point} has no entropy model: add one with "
                             "m3cvcav.engines.tokenizer.vae_codebook.attach_entropy_model")
        if rate_point not in self._models:
            self._models[rate_point] = TokenModel.from_arrays(book.entropy)
        return self._models[rate_point]


def load_tokenizer(settings: Mapping[str, Any]):
    """Factory named by the profile (``m3cvcav.engines.m3cvc.tokenizer:load_tokenizer``): ``VaeVqTokenizer`` when
    ``codebooks`` are listed, else the shipped lite tokenizer (``working_width``, optional ``weights``)."""
    from ..tokenizer import MODEL_ID as LITE_MODEL_ID, load_lite

    model_id = settings.get("model_id")
    if settings.get("codebooks"):
        if model_id == LITE_MODEL_ID:
            raise UsageError(f"profile tokenizer lists codebooks but model_id = {LITE_MODEL_ID:#06x} names the lite "
                             f"tokenizer: set tokenizer.model_id = {VQ_MODEL_ID} for VQ over the VAE latent")
        return VaeVqTokenizer(settings)
    if model_id is not None and model_id != LITE_MODEL_ID:
        raise UsageError(f"profile tokenizer.model_id = {model_id} but no codebooks are listed: list "
                         f"tokenizer.codebooks for VQ over the VAE latent, or set model_id = {LITE_MODEL_ID:#06x} for "
                         "the shipped lite tokenizer")
    lite = {k: settings[k] for k in ("working_width", "weights") if k in settings}
    return load_lite({**lite, "model_id": LITE_MODEL_ID})


def tokenizer_model_ref(settings: Mapping[str, Any]) -> ModelRef:
    """The tokenizer's ``ModelRef`` without loading the VAE (VQ mode: the VAE files + the codebooks)."""
    if not settings.get("codebooks"):
        return load_tokenizer(settings).ref  # the lite tokenizer: small, loaded from the package
    from .vae import vae_files

    files = vae_files(settings, setting(settings, "subfolder", str, "vae", role=ROLE))
    return model_ref(settings, ROLE, [*files, *map(str, settings["codebooks"])])


load_tokenizer.model_ref = tokenizer_model_ref