"""The lite label describer: ImageNet top-k class names of EfficientNet-Lite0 plus a few motion words from DIS flow.

It is a label describer, not a multimodal language model: its texts are class lists, e.g. "Egyptian Mau, tabby cat"
and "Egyptian Mau, tabby cat; moving left, slow". A describer that is unsure says less: labels only when the top
class is at least ``min_confidence`` probable, else no frame text and the measured motion alone as the clip text
("moving left, slow"), rather than the wrong animal (Big Buck Bunny is no "gorilla, hay, llama").

``MIN_CONFIDENCE`` is calibrated on ../shared/media (top-1 softmax probability of the whole picture): every label
judged right there is at 0.48 or above (skimage chelsea "Egyptian Mau" 0.78, coffee "espresso" 0.83, motorcycle
"moped" 0.48, mate LadyBird "ladybug" 0.85, FreshFlower and YellowFlower "daisy" 0.59 and 0.60), every wrong one
below 0.34 (Big Buck Bunny, 22 frames: "hay" at most 0.34, "peafowl" 0.24, "gorilla" 0.19; vtest.avi's street, 20
frames: "baseball player" 0.22, "sundial" 0.22; Sintel, 10 frames: 0.15 at most; skimage brick "maze" 0.29, astronaut
"barbell" 0.16, Hubble "music speaker" 0.21).
"""
from __future__ import annotations

from collections.abc import Sequence

from ..interfaces import Image
from .embedder import LiteEmbedder
from .motion import DisMotion

MIN_CONFIDENCE = 0.4  # top-1 probability under which the describer names no class (module docstring)
# Mean flow magnitude per frame (fraction of the diagonal) bounding each speed word.
SPEEDS = ((0.0007, "still"), (0.005, "slow"), (0.02, "moderate"), (float("inf"), "fast"))


class LabelDescriber:
    """``Describer`` with ``kind = "labels"``."""

    kind = "labels"
    name = "ImageNet label describer (EfficientNet-Lite0 top-k classes; not a language model)"

    def __init__(self, embedder: LiteEmbedder, motion: DisMotion, *, top_k: int = 3, min_prob: float = 0.05,
                 min_confidence: float = MIN_CONFIDENCE) -> None:
        self.embedder, self.motion, self.top_k, self.min_prob = embedder, motion, int(top_k), float(min_prob)
        self.min_confidence = float(min_confidence)

    def describe_frame(self, keyframe: Image) -> str:
        """The top-k class names whose probability is at least ``min_prob``, when the top-1 is at least
        ``min_confidence`` probable; else "" (unsure: no class named)."""
        labels = self.embedder.top_labels(keyframe, self.top_k)
        if not labels or labels[0][1] < self.min_confidence:
            return ""
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
        """The keyframe's labels (none when unsure) and the clip's motion: ``motion`` when the caller measured it, else
        estimated from ``frames`` with DIS flow (its speed words are per sampled interval, so ``fps`` is not
        needed)."""
        return "; ".join(t for t in (self.describe_frame(keyframe), motion or self.motion_words(frames)) if t)
