"""The lite clip generator: the frames of a segment are the stream's base layer, upscaled to the display size by the
decoder (``filters.generate``). It has no model and guesses nothing."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from m3cvcav.core.errors import UsageError

from ..interfaces import Image, ModelRef

ALGORITHM = "m3cvcav.lite.base-pictures/2"


class BaseClips:
    """``ClipGenerator`` for the lite profile; the text is not used (it has no language model)."""

    def __init__(self, *, model_id: int) -> None:
        self.ref = ModelRef(model_id=int(model_id), sha256=hashlib.sha256(ALGORITHM.encode()).digest(),
                            name="base pictures")

    def generate(self, first: Image, last: Image | None, count: int, text: str, seed: int,
                 prediction: Sequence[Image] | None = None) -> Sequence[Image]:
        """The base pictures as they are (read lazily by the caller); without any (a text-only stream), the keyframe
        for every frame."""
        if count < 1:
            raise UsageError(f"a clip needs at least one frame, got count={count}")
        if prediction is None:
            return [first] * count
        if len(prediction) != count:
            raise UsageError(f"the base holds {len(prediction)} frames for a clip of {count}")
        return prediction
