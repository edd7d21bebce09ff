"""The contracts between filters and engines: one Protocol per profile role, plus the data they exchange.

Filters depend only on these; the registry (``engines.registry``) builds concrete engines from a profile.
Images are ``numpy.ndarray`` of shape (H, W, 3), dtype uint8, RGB, full range.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# Defined with the bitstream, which records them; re-exported here for the engines.
from m3cvcav.bitstream.units import GenerationParams, KeyframeTokens, ModelRef  # noqa: F401

Image = np.ndarray  # (H, W, 3) uint8 RGB
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")  # -engine: where the networks run ("auto": the best present)


@dataclass(frozen=True)
class RatePoint:
    """One operating point of a keyframe tokenizer."""

    index: int  # 0 = lowest rate
    name: str
    nominal_bpp: float  # measured on 512-px-wide held-out images (model card)


@dataclass
class TokenGrid:
    """Discrete indices K* of one keyframe: ``indices`` is (levels, H, W) int32, each in [0, vocab)."""

    indices: np.ndarray
    codebook_id: int
    rate_point: int
    vocab: int
    image_size: tuple[int, int]  # (height, width) of the source keyframe, restored by the decoder


@runtime_checkable
class SemanticEmbedder(Protocol):
    ref: ModelRef

    def embed(self, frames: Sequence[Image]) -> np.ndarray:
        """(N, D) float32, L2-normalised rows."""


@runtime_checkable
class MotionEstimator(Protocol):
    def flow(self, a: Image, b: Image) -> np.ndarray:
        """Dense flow from a to b, (H, W, 2) float32 in pixels of the input size."""

    def magnitude(self, a: Image, b: Image) -> float:
        """Mean flow magnitude from a to b as a fraction of the image diagonal (resolution independent)."""


@runtime_checkable
class Describer(Protocol):
    kind: str  # "labels" for the lite label describer, "vlm" for a multimodal LLM

    def describe_frame(self, keyframe: Image) -> str:
        """Frame-level text D^F."""

    def describe_clip(self, keyframe: Image, frames: Sequence[Image], fps: float | None = None) -> str:
        """Clip-level text D^C (motion of objects and camera); ``fps``: the rate of ``frames`` when known (a VLM
        then sees the clip as a timed video)."""


@runtime_checkable
class KeyframeTokenizer(Protocol):
    ref: ModelRef
    codebook_id: int
    vocab: int
    rate_points: tuple[RatePoint, ...]

    def compress(self, image: Image, rate_point: int) -> KeyframeTokens:
        """The image's indices K* at ``rate_point``, entropy-coded (``engines.tokenizer.codec.TokenCodec``)."""

    def decompress(self, tokens: KeyframeTokens) -> Image:
        """The image ``tokens`` decode to, at their ``image_size``."""

    def encode(self, image: Image, rate_point: int) -> TokenGrid: ...

    def decode(self, grid: TokenGrid) -> Image:
        """Reconstruct at ``grid.image_size``."""

    def token_model(self, rate_point: int):
        """The static entropy model (``m3cvcav.bitstream.entropy.TokenModel``) the bitstream uses at this rate point."""


@runtime_checkable
class KeyframeGenerator(Protocol):
    """Decoder side: turns the dequantised keyframe (or, in TT2V, nothing) + D^F into the final keyframe."""

    ref: ModelRef

    def generate(self, decoded: Image | None, text: str, size: tuple[int, int], seed: int,
                 strength: float | None = None) -> Image:
        """``strength``: the share of the schedule re-noised over ``decoded`` (the stream's GEN_PARAMS; None: the
        profile's)."""


@runtime_checkable
class ClipGenerator(Protocol):
    """Decoder side: all frames of a segment from its keyframe(s) and D^C."""

    ref: ModelRef

    def generate(self, first: Image, last: Image | None, count: int, text: str, seed: int,
                 prediction: Sequence[Image] | None = None) -> Sequence[Image]:
        """``count`` frames; frame 0 is ``first``; ``last`` is the next keyframe (None across a scene cut or at the
        end). ``prediction``: ``count`` frames, the stream's base layer upscaled to the display size (frame 0 = the
        base keyframe), computed when read; generators follow it instead of inventing motion."""


@runtime_checkable
class PictureEnhancer(Protocol):
    """Decoder side (and the encoder's choice): a decoded base picture at the coded size → the display size, by the
    variant the stream signals per segment (0 = ``bitstream.av1.upscale``, bicubic, exactly)."""

    ref: ModelRef
    variants: int  # the model variants 1..variants besides bicubic

    def upscale(self, picture: Image, size: tuple[int, int], variant: int) -> Image:
        """``picture`` (h, w, 3) uint8 at the coded size → (H, W, 3) uint8 at ``size`` = (width, height)."""

    def candidates(self, picture: Image, size: tuple[int, int]) -> list[Image]:
        """``picture`` at ``size`` under every variant 0..``variants``, in order (what ``-b:v``'s size search scores:
        one call instead of ``variants + 1``)."""

    def choose(self, source: Sequence[Image], pictures: Sequence[Image], size: tuple[int, int]) -> int:
        """The variant to signal: best mean MS-SSIM of ``pictures`` (coded size) upscaled against ``source`` (display
        size), 0 unless a model variant beats bicubic."""


@runtime_checkable
class Exportable(Protocol):
    """Optional, for any role's engine: the networks it runs, for ONNX/TensorRT ahead-of-time builds
    (``python -m m3cvcav engines build``). Sizes are (height, width) resolution buckets."""

    def export_specs(self, sizes: Sequence[tuple[int, int]]) -> list:
        """``m3cvcav.engines.backends.ExportSpec`` per network, with shape profiles for ``sizes``."""
