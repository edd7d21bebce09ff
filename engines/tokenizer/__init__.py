"""The project's VQ keyframe tokenizer (lite profile): model, training, shipped weights and their entropy models.

Stable identifiers recorded in streams: ``MODEL_ID`` (the lite tokenizer's model id in the sequence header) and
``CODEBOOK_ID`` (the codebook its token grids refer to). A retrained model with other weights keeps the ids but changes
the sha256 the header records; a different vocabulary or network gets new ids.
"""
from __future__ import annotations

from pathlib import Path

MODEL_ID = 0x0401
CODEBOOK_ID = 1
WEIGHTS = Path(__file__).resolve().parent / "weights" / "lite.safetensors"


def load_lite(settings: dict | None = None):
    """The lite profile's factory: settings may carry ``working_width`` (default 512), ``weights`` (a path) and
    ``model_id`` (default ``MODEL_ID``)."""
    from .runtime import LiteTokenizer

    settings = dict(settings or {})
    return LiteTokenizer(Path(settings.get("weights", WEIGHTS)), int(settings.get("model_id", MODEL_ID)), CODEBOOK_ID,
                         int(settings.get("working_width", 512)))
