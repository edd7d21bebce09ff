"""FFmpeg's filter-graph grammar (libavfilter/graphparser.c): ``,`` chains, ``;`` graphs, ``[labels]``,
``key=value`` pairs separated by ``:``, positional values, ``'quoting'`` and ``\\`` escaping at two levels
(graph level, then option level, exactly as FFmpeg's ``av_get_token``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from m3cvcav.core.errors import UsageError

_WS = " \n\t\r"


def get_token(text: str, pos: int, term: str) -> tuple[str, int]:
    """FFmpeg's ``av_get_token``: read up to an unquoted, unescaped char of ``term``; returns (token, new pos).

    Leading whitespace is skipped, trailing unquoted whitespace dropped; ``'...'`` is literal, ``\\x`` is ``x``.
    """
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    out: list[str] = []
    keep = 0  # length of out that must be kept (ends after the last non-whitespace or quoted char)
    while pos < len(text) and text[pos] not in term:
        char = text[pos]
        pos += 1
        if char == "\\":
            if pos < len(text):
                out.append(text[pos])
                pos += 1
            keep = len(out)
        elif char == "'":
            end = text.find("'", pos)
            if end < 0:
                end = len(text)
            out.append(text[pos:end])
            pos = min(end + 1, len(text))
            keep = len(out)
        else:
            out.append(char)
            if char not in _WS:
                keep = len(out)
    return "".join(out[:keep]), pos


@dataclass
class FilterSpec:
    """One filter of a graph: name, raw option string (after graph-level unescaping), labels."""

    name: str
    args: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def options(self) -> tuple[list[str], dict[str, str]]:
        """Split ``args`` at option level: positional values first, then ``key=value`` (FFmpeg's rule)."""
        positional: list[str] = []
        named: dict[str, str] = {}
        pos, text = 0, self.args
        while pos < len(text) and text.strip():
            token, pos = get_token(text, pos, "=:")
            if pos < len(text) and text[pos] == "=":
                value, pos = get_token(text, pos + 1, ":")
                named[token] = value
            else:
                if named:
                    raise UsageError(f"filter {self.name}: positional value {token!r} after key=value options; "
                                     "write it as key=value")
                positional.append(token)
            if pos < len(text) and text[pos] == ":":
                pos += 1
            elif pos >= len(text):
                break
        return positional, named


def _labels(text: str, pos: int) -> tuple[list[str], int]:
    labels = []
    while True:
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos >= len(text) or text[pos] != "[":
            return labels, pos
        end = text.find("]", pos)
        if end < 0:
            raise UsageError(f"unterminated label in filter graph at {text[pos:]!r}: close it with ']'")
        name = text[pos + 1:end].strip()
        if not name:
            raise UsageError("empty [] label in filter graph: give the label a name")
        labels.append(name)
        pos = end + 1


def parse_graph(text: str) -> list[list[FilterSpec]]:
    """Parse a graph description into chains (split at ``;``) of filters (split at ``,``)."""
    chains: list[list[FilterSpec]] = [[]]
    pos = 0
    if not text.strip():
        raise UsageError("empty filter graph: give at least one filter, e.g. -vf scale=640:-2")
    while True:
        inputs, pos = _labels(text, pos)
        name, pos = get_token(text, pos, "=,;[")
        if not name:
            raise UsageError(f"missing filter name in graph {text!r} near position {pos}")
        spec = FilterSpec(name.split("@", 1)[0], inputs=inputs)
        if pos < len(text) and text[pos] == "=":
            spec.args, pos = get_token(text, pos + 1, "[],;")
        spec.outputs, pos = _labels(text, pos)
        chains[-1].append(spec)
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos >= len(text):
            return chains
        sep = text[pos]
        pos += 1
        if sep == ";":
            chains.append([])
        elif sep != ",":
            raise UsageError(f"unexpected {sep!r} in filter graph at position {pos - 1}: separate filters with ',' "
                             "and chains with ';'")


def linearize(chains: list[list[FilterSpec]]) -> list[FilterSpec]:
    """Order a graph of single-input single-output filters connected by labels into one chain.

    m3cvcav graphs have one video input and one output; anything else is a UsageError saying so.
    """
    if len(chains) == 1:
        return chains[0]
    by_input: dict[str, list[FilterSpec]] = {}
    for chain in chains:
        if len(chain[0].inputs) > 1 or any(len(s.outputs) > 1 or len(s.inputs) > 1 for s in chain):
            raise UsageError("m3cvcav filter graphs take one video stream in and out: use one label per link")
        key = chain[0].inputs[0] if chain[0].inputs else ""
        if key in by_input:
            raise UsageError(f"label [{key or 'input'}] feeds two chains: m3cvcav graphs are single-path")
        by_input[key] = chain
    start = next((k for k in by_input if k == "" or k.startswith("0")), None)
    if start is None:
        raise UsageError("no chain starts from the input: label the first one [0:v] or leave its input unlabeled")
    out: list[FilterSpec] = []
    key: str | None = start
    while key is not None and key in by_input:
        chain = by_input.pop(key)
        out.extend(chain)
        key = chain[-1].outputs[0] if chain[-1].outputs else None
    if by_input:
        raise UsageError(f"filter chains not connected to the output: {', '.join('[' + k + ']' for k in by_input)}")
    return out
