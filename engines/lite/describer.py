"""The lite label describer: ImageNet top-k class names of EfficientNet-Lite0 plus a few motion words from DIS flow.

It is a label describer, not a multimodal language model: its texts are class lists, e.g. "Egyptian Mau, tabby cat"
and "Egyptian Mau, tabby cat; moving left, slow".
"""
from __future__ import annotations

from collections.abc import Sequence

from ..interfaces import Image
from .embedder import LiteEmbedder
from .motion import DisMotion

# Mean flow magnitude per frame (fraction of the diagonal) bounding each speed word.
SPEEDS = ((0.0007, "still"), (0.005, "slow"), (0.02, "moderate"), (float("inf"), "fast"))


class LabelDescriber:
    """``Describer`` with ``kind = "labels"``."""

    kind = "labels"
    name = "ImageNet label describer (EfficientNet-Lite0 top-k classes; not a language model)"

    def __init__(self, embedder: LiteEmbedder, motion: DisMotion, *, top_k: int = 3, min_prob: float = 0.05) -> None:
        self.embedder, self.motion, self.top_k, self.min_prob = embedder, motion, int(top_k), float(min_prob)

    def describe_frame(self, keyframe: Image) -> str:
        """The top-k class names whose probability is at least ``min_prob`` (always at least the top-1)."""
        labels = self.embedder.top_labels(keyframe, self.top_k)
        return ", ".join(name for i, (name, p) in enumerate(labels) if i == 0 or p >= self.min_prob)

    def motion_words(self, frames: Sequence[Image]) -> str:
        """"still" or "moving <direction>, <speed>" from the mean flow between consecutive frames."""
        if len(frames) < 2:
            return "still"
        stats = [self.motion.stats(a, b) for a, b in zip(frames[:-1], frames[1:])]
        mean = sum(s["mean"] for s in stats) / len(stats)
        speed = next(word for bound, word in SPEEDS if mean < bound)
        if speed == "still":
            return "still"
        dx, dy = sum(s["dx"] for s in stats), sum(s["dy"] for s in stats)
        if max(abs(dx), abs(dy)) < 0.25 * mean * len(stats):
            return f"moving, {speed}"
        direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
        return f"moving {direction}, {speed}"

    def describe_clip(self, keyframe: Image, frames: Sequence[Image], fps: float | None = None, *,
                      motion: str | None = None) -> str:
        """The keyframe's labels and the clip's motion: ``motion`` when the caller measured it, else estimated from
        ``frames`` with DIS flow (its speed words are per sampled interval, so ``fps`` is not needed)."""
        return f"{self.describe_frame(keyframe)}; {motion or self.motion_words(frames)}"
