"""The node framework: one contract for every node of a graph, source and sink included (as libavfilter's buffer and
buffersink are filters), the registry of the nodes a user may name in a graph, and :class:`Chain`, nodes in a row."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from .options import Option, bind

REGISTRY: dict[str, type["Node"]] = {}


class Node:
    """Base class of every graph node. Subclasses set NAME, HELP, OPTIONS and override what they need:

    - ``configure(info)``: check the input description, return the output one;
    - ``process(item)`` and ``flush()``: iterables, so one input item can give zero or many output items;
    - ``run(items)``: the node over a whole stream (``process`` each item, then ``flush``). A source has no input: it
      overrides ``run`` and yields its own items; a sink writes in ``process`` and yields nothing.

    ``GRAPH`` nodes may be named in ``-vf``/``-filter_complex`` (``select``, ``tokenize``, ``describe``, ``base``,
    ``generate``); the others (source, sink, mux, demux, the FFmpeg chain) are placed by the encoder and decoder
    graphs themselves.
    """

    NAME: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Option, ...]] = ()
    GRAPH: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.NAME and cls.GRAPH:
            REGISTRY[cls.NAME] = cls

    def __init__(self, positional: list[str] | None = None, *, bound: dict[str, Any] | None = None, **named: Any):
        """Options from a graph (strings) or the API (values), bound to ``OPTIONS``; ``bound``: already bound ones."""
        self.opts: dict[str, Any] = dict(bound) if bound is not None else \
            bind(self.NAME, self.OPTIONS, list(positional or []), named)

    def configure(self, info: Any) -> Any:
        """Check the input description and return the output one (default: unchanged)."""
        return info

    def process(self, item: Any) -> Iterable[Any]:
        return (item,)

    def flush(self) -> Iterable[Any]:
        return ()

    def run(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield from self.process(item)
        yield from self.flush()

    @classmethod
    def help(cls) -> str:
        lines = [f"{cls.NAME}: {cls.HELP}"] + [f"  {o.describe()}" for o in cls.OPTIONS]
        return "\n".join(lines)


class Chain:
    """Nodes in a row, pulled (``run``: each item travels the whole chain before the next is read, so at most one
    item per node is in flight and memory stays flat with stream length) or pushed (``push`` / ``flush``)."""

    def __init__(self, nodes: Iterable[Node]):
        self.nodes = list(nodes)

    def configure(self, info: Any) -> Any:
        for node in self.nodes:
            info = node.configure(info)
        return info

    def run(self, items: Iterable[Any] = ()) -> Iterator[Any]:
        stream: Iterable[Any] = items
        for node in self.nodes:
            stream = node.run(stream)
        return iter(stream)

    def push(self, item: Any) -> list[Any]:
        """What comes out of the chain for one more input item."""
        return self._through([item], 0)

    def flush(self) -> list[Any]:
        """The end of the input: each node's flush, carried through the nodes after it."""
        out: list[Any] = []
        for i, node in enumerate(self.nodes):
            out += self._through(node.flush(), i + 1)
        return out

    def _through(self, items: Iterable[Any], start: int) -> list[Any]:
        """Depth first, as ``run``: each item a node gives travels the rest of the chain before its next one."""
        if start == len(self.nodes):
            return list(items)
        out: list[Any] = []
        for item in items:
            out += self._through(self.nodes[start].process(item), start + 1)
        return out
