"""The node framework: a NAME, a typed options table, ``configure``/``process``/``flush``, and the registry of nodes."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from m3cvcav.core.errors import UsageError

from .options import Option, bind

REGISTRY: dict[str, type["Node"]] = {}


class Node:
    """Base class of every graph node. Subclasses set NAME, HELP, OPTIONS and override the three methods.

    ``process`` and ``flush`` return iterables so one input item can give zero or many output items.
    """

    NAME: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.NAME:
            REGISTRY[cls.NAME] = cls

    def __init__(self, positional: list[str] | None = None, **named: Any):
        self.opts: dict[str, Any] = bind(self.NAME, self.OPTIONS, list(positional or []), named)

    def configure(self, info: Any) -> Any:
        """Check the input description and return the output one (default: unchanged)."""
        return info

    def process(self, item: Any) -> Iterable[Any]:
        return (item,)

    def flush(self) -> Iterable[Any]:
        return ()

    @classmethod
    def help(cls) -> str:
        lines = [f"{cls.NAME}: {cls.HELP}"] + [f"  {o.describe()}" for o in cls.OPTIONS]
        return "\n".join(lines)


def create(name: str, positional: list[str] | None = None, **named: Any) -> Node:
    """Instantiate the node ``name``; an unknown name is a UsageError listing the valid ones."""
    if name not in REGISTRY:
        raise UsageError(f"unknown m3cvcav node {name!r}; valid nodes: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](positional, **named)


def run_chain(nodes: list[Node], items: Iterable[Any]) -> Iterator[Any]:
    """Stream ``items`` through ``nodes`` lazily: each item travels the whole chain before the next is read, so at
    most one item per node is in flight (bounded queues of depth one) and memory stays flat with stream length."""
    stream: Iterable[Any] = items
    for node in nodes:
        stream = _through(node, stream)
    return iter(stream)


def _through(node: Node, items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        yield from node.process(item)
    yield from node.flush()
