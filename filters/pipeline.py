"""The user's part of a graph (-vf / -filter_complex, -s, -r) checked and split: FFmpeg filters, which run through PyAV
before our nodes (encode) or after ``generate`` (decode), and our nodes' options. The graphs themselves are
``encoder.Encoder`` and ``decoder.decode_to``."""
from __future__ import annotations

from dataclasses import dataclass, field

from m3cvcav.core.errors import UsageError

from . import base, describe, generate, select, tokenize  # noqa: F401  (registers the nodes)
from .ffmpeg import FFmpegChain
from .graph import FilterSpec, linearize, parse_graph
from .node import REGISTRY, Node
from .options import bind, parse_size

ENCODER_NODES = ("select", "tokenize", "describe", "base")
DECODER_NODES = ("generate",)


@dataclass
class Plan:
    """The user's graph split into FFmpeg filters and our nodes' options (bound: name -> value)."""

    ffmpeg: list[FilterSpec] = field(default_factory=list)
    bound: dict[str, dict] = field(default_factory=dict)  # our nodes' options, checked and bound once

    chain: FFmpegChain | None = None

    def ffmpeg_chain(self) -> FFmpegChain:
        """The FFmpeg filters as one node (frames pass through when there are none), built once: by ``plan``, which
        checks them."""
        if self.chain is None:
            self.chain = FFmpegChain(self.ffmpeg)
        return self.chain

    def make(self, name: str, **context) -> Node:
        """Our node ``name`` with the options the graph gave it and ``context`` (profile, rate control, ...)."""
        if name in self.bound:
            return REGISTRY[name](bound=self.bound[name], **context)
        return REGISTRY[name](**context)


def plan(vf: str | None, filter_complex: str | None, *, size: str | None, rate: str | None,
         ours: tuple[str, ...]) -> Plan:
    """Parse and check a graph: FFmpeg filters first, then (at most once each) the nodes in ``ours``."""
    if vf and filter_complex:
        raise UsageError("give either -vf or -filter_complex, not both")
    specs: list[FilterSpec] = []
    text = vf or filter_complex
    if text:
        chains = parse_graph(text)
        specs = linearize(chains) if filter_complex else [s for chain in chains for s in chain]
        if vf and len(chains) > 1:
            raise UsageError("-vf takes one chain (filters separated by ','); use -filter_complex for ';' graphs")
    result = Plan()
    for spec in specs:
        if spec.name in REGISTRY and spec.name not in ours:
            raise UsageError(f"node {spec.name} cannot be used here; this direction takes {', '.join(ours)} "
                             "and FFmpeg filters")
        if spec.name in ours:
            if spec.name in result.bound:
                raise UsageError(f"node {spec.name} appears twice in the graph; give it once")
            positional, named = spec.options()
            result.bound[spec.name] = bind(spec.name, REGISTRY[spec.name].OPTIONS, positional, named)
        else:
            if result.bound and ours == ENCODER_NODES:
                raise UsageError(f"FFmpeg filter {spec.name} comes after an m3cvcav node: put FFmpeg filters first")
            result.ffmpeg.append(spec)
    if size:
        width, height = parse_size(size)
        result.ffmpeg.append(FilterSpec("scale", f"{width}:{height}"))
    if rate:
        result.ffmpeg.append(FilterSpec("fps", str(rate)))
    result.ffmpeg_chain()  # fails early on unknown filters
    return result


def graph_text(bound: dict[str, dict]) -> str | None:
    """Our nodes' options as -vf text (the values that differ from the defaults), e.g. ``select=max=48,tokenize=q=6``:
    what a chunk's worker is given (its FFmpeg filters ran in the parent)."""
    parts = []
    for name, values in bound.items():
        defaults = {o.name: o.default for o in REGISTRY[name].OPTIONS}
        changed = [f"{k}={int(v) if isinstance(v, bool) else v!r}" if not isinstance(v, str) else f"{k}='{v}'"
                   for k, v in values.items() if v != defaults[k]]
        parts.append(name + ("=" + ":".join(changed) if changed else ""))
    return ",".join(parts) or None
