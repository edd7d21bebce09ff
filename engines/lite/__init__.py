"""The offline ``lite`` engines (real weights, CPU): factories named by ``engines/profiles/lite.toml``.

Each factory takes the role's settings (the profile's table plus ``backend``, ``profile`` and ``role``) and returns an
object implementing that role's Protocol of ``m3cvcav.engines.interfaces``.
"""
from __future__ import annotations

from .describer import MIN_CONFIDENCE, LabelDescriber
from .embedder import LiteEmbedder
from .enhancer import Enhancer
from .clips import BaseClips
from .keyframe import PassthroughKeyframes
from .motion import DisMotion

__all__ = ["DisMotion", "BaseClips", "Enhancer", "LabelDescriber", "LiteEmbedder", "PassthroughKeyframes",
           "load_clip_generator", "load_describer", "load_embedder", "load_enhancer", "load_keyframe_generator",
           "load_motion"]


def load_embedder(settings: dict) -> LiteEmbedder:
    return LiteEmbedder(model_id=settings["model_id"], size=settings.get("size", 224), batch=settings.get("batch", 8),
                        backend=settings.get("backend", "auto"), device=settings.get("device"),
                        threads=settings.get("threads", 0))


def load_motion(settings: dict) -> DisMotion:
    return DisMotion(work_size=settings.get("work_size", 320), preset=settings.get("preset", "fast"))


def load_describer(settings: dict) -> LabelDescriber:
    """Labels from the profile's own embedder when it is EfficientNet-Lite0 (one network, one session), else from
    one of its own."""
    shared = settings["engine_of"]("embedder") if "engine_of" in settings else None
    embedder = shared if isinstance(shared, LiteEmbedder) else \
        load_embedder({**settings, "model_id": settings.get("embedder_model_id", 0)})
    motion = DisMotion(work_size=settings.get("work_size", 256), preset="ultrafast")
    return LabelDescriber(embedder, motion, top_k=settings.get("top_k", 3), min_prob=settings.get("min_prob", 0.05),
                          min_confidence=settings.get("min_confidence", MIN_CONFIDENCE))


def load_clip_generator(settings: dict) -> BaseClips:
    return BaseClips(model_id=settings["model_id"])


def load_keyframe_generator(settings: dict) -> PassthroughKeyframes:
    return PassthroughKeyframes(model_id=settings["model_id"])


def load_enhancer(settings: dict) -> Enhancer:
    """The learned restoration upscaler of the AV1 base (docs/models/enhancer.md); ``weights`` overrides the shipped
    file (its hash goes into ``ref``)."""
    from ..backends import backends_of

    return Enhancer(model_id=settings["model_id"], weights=settings.get("weights"), backend=backends_of(settings),
                    device=settings.get("device"), threads=settings.get("threads"))


def enhancer_model_ref(settings: dict):
    """The enhancer's ``ModelRef`` without loading it (the encoder records the decoder's models)."""
    from ..interfaces import ModelRef
    from ..loaders import weights_sha256
    from .enhancer import NAME, WEIGHTS

    return ModelRef(model_id=int(settings["model_id"]), sha256=weights_sha256(settings.get("weights") or WEIGHTS),
                    name=NAME)


load_enhancer.model_ref = enhancer_model_ref
