"""Typed node options, like libavfilter's AVOption tables: name, type, default, range or choices, help."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av

from m3cvcav.core.errors import UsageError

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_number(text: str, kind: type) -> float | int:
    """Parse ``text`` as ``kind`` (int/float) accepting FFmpeg's k/M/G suffixes (``20k`` = 20000)."""
    text = text.strip()
    scale = 1.0
    if text and text[-1] in _SUFFIX:
        scale, text = _SUFFIX[text[-1]], text[:-1]
    value = float(text) * scale
    if kind is int:
        if value != int(value):
            raise ValueError(f"{text!r} is not an integer")
        return int(value)
    return value


def encoder(name: str, kind: str, flag: str, examples: str) -> av.Codec:
    """The encoder of PyAV's FFmpeg called ``name`` (``-c:v``/``-c:a``'s value), which must be a ``kind`` ("audio" or
    "video") encoder; else a one-line UsageError naming ``flag`` and ``examples``."""
    try:
        found = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise UsageError(f"{flag} {name}: FFmpeg (through PyAV) has no encoder of that name; list them with "
                         f"`ffmpeg -encoders` (e.g. {examples})") from None
    if found.type != kind:
        article = "an" if kind == "audio" else "a"
        raise UsageError(f"{flag} {name}: {found.name} is an {found.type} encoder; give {article} {kind} encoder "
                         f"(e.g. {examples})")
    return found


def parse_size(text: str, low: int = 1, high: int = 65535) -> tuple[int, int]:
    """FFmpeg's ``-s WxH`` → (width, height), each side in ``low..high``; a UsageError saying how to write it."""
    width, _, height = text.strip().lower().partition("x")
    if not (width.isdigit() and height.isdigit() and low <= int(width) <= high and low <= int(height) <= high):
        raise UsageError(f"-s {text!r}: give the size as WIDTHxHEIGHT with sides in {low}..{high}, e.g. 640x360")
    return int(width), int(height)


@dataclass(frozen=True)
class Option:
    """One option, of a node or of the command itself: ``type`` is int, float, str or bool; ``range`` (lo, hi) for
    numbers, ``choices`` for str. Command options also have their command-line ``flags`` (the first is the main
    spelling), a ``metavar``, the direction they apply to (``use``: encode, decode, or both), ``switch``: the value a
    flag without a value sets (None: the flag takes a value), ``api``: whether the Python API takes it (as the
    keyword ``name``), and a ``hint`` that ends the error message of a bad value."""

    name: str
    type: type
    default: Any
    help: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    flags: tuple[str, ...] = ()
    metavar: str = ""
    use: str = ""
    switch: Any = None
    api: bool = True
    hint: str = ""

    def parse(self, value: Any, node: str = "") -> Any:
        """Convert and check one value (a string from a graph or the command line, or a Python value from the API);
        a bad one is a UsageError naming the node's option, or the command's flag."""
        try:
            return self._parse(value)
        except ValueError as err:
            if self.flags:  # "-q 99: out of range [0, 15]" or the option's own hint
                raise UsageError(f"{self.flags[0]} {value!r}: {self.hint or err}") from None
            raise UsageError(f"{node}: option {self.name}={value!r} {err}"
                             + (f"; {self.describe()}" if "valid" in str(err) else "")) from None

    def _parse(self, value: Any) -> Any:
        """The value converted; ValueError saying what is wrong with it."""
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("0", "1", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("1", "true", "yes")
                out = bool(value)
            elif self.type in (int, float):
                out = parse_number(value, self.type) if isinstance(value, str) else self.type(value)
            else:
                out = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"is not a valid {self.type.__name__}") from None
        if self.range is not None and not (self.range[0] <= out <= self.range[1]):
            raise ValueError(f"is out of range [{self.range[0]:g}, {self.range[1]:g}]")
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return out

    def describe(self) -> str:
        """One help line: ``name (type, default D, range [a, b]): help``."""
        extra = f", range [{self.range[0]}, {self.range[1]}]" if self.range else ""
        extra += f", one of {'|'.join(self.choices)}" if self.choices else ""
        return f"{self.name} ({self.type.__name__}, default {self.default!r}{extra}): {self.help}"


def bind(node: str, table: tuple[Option, ...], positional: list[str], named: dict[str, Any]) -> dict[str, Any]:
    """Bind positional values in option order, then named ones; unknown names → UsageError listing the valid ones."""
    if len(positional) > len(table):
        raise UsageError(f"{node}: {len(positional)} positional values given but it takes at most {len(table)} "
                         f"({', '.join(o.name for o in table)})")
    by_name = {o.name: o for o in table}
    values = {o.name: o.default for o in table}
    for option, value in zip(table, positional):
        values[option.name] = option.parse(value, node)
    for key, value in named.items():
        if key not in by_name:
            raise UsageError(f"{node}: unknown option {key!r}; valid options: {', '.join(by_name) or '(none)'}")
        values[key] = by_name[key].parse(value, node)
    return values
