"""The describer's questions: defaults, profile overrides and a user prompts TOML that replaces them (the codec's knob).

Three questions, one per round of M3-CVC's dialogue: ``scene`` (round 1, the keyframe's global scene), ``objects``
(round 2, given round 1's answer as ``{scene}``: objects, colours, positions, layout → D^F) and ``motion`` (round 3, the
clip's frames: object and camera motion → D^C; ``{scene}`` and ``{frame}`` = D^F may be used when known).
"""
from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from m3cvcav.core.errors import InputError, UsageError

DEFAULT_PROMPTS: dict[str, str] = {
    "scene": "Describe the global scene of this image in one sentence: the place, the time of day, the lighting and the "
             "overall style.",
    "objects": "The scene: {scene} Now list the main objects with their colours, their positions in the frame and the "
               "layout, in at most two sentences.",
    "motion": "These are frames of one video clip, in order. Describe how the objects move and how the camera moves, in "
              "one sentence.",
}
FIELDS: dict[str, set[str]] = {"scene": set(), "objects": {"scene"}, "motion": {"scene", "frame"}}


def _check(questions: Mapping[str, Any], where: str) -> dict[str, str]:
    unknown = set(questions) - set(FIELDS)
    if unknown:
        raise UsageError(f"{where}: unknown prompt key(s) {', '.join(sorted(unknown))}; use {', '.join(FIELDS)}")
    out: dict[str, str] = {}
    for key, text in questions.items():
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{where}: prompt {key!r} must be a non-empty string")
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as err:
            raise UsageError(f"{where}: prompt {key!r} is not a valid template ({err}); write braces as {{{{ }}}}") from err
        if names - FIELDS[key]:
            allowed = ", ".join("{" + n + "}" for n in sorted(FIELDS[key])) or "none"
            raise UsageError(f"{where}: prompt {key!r} uses {', '.join(sorted(names - FIELDS[key]))}; allowed: {allowed}")
        out[key] = text
    return out


def load_prompts(value: Mapping[str, Any] | str | None) -> dict[str, str]:
    """The three questions: defaults overridden by a profile table, or by a TOML file (``prompts = "my.toml"``) whose
    top-level keys are ``scene``, ``objects``, ``motion`` (any subset; the others keep their defaults)."""
    prompts = dict(DEFAULT_PROMPTS)
    if value is None:
        return prompts
    if isinstance(value, str):
        path = Path(value).expanduser()
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError as err:
            raise InputError(f"prompts file {path} not found: give the path of a TOML file with scene/objects/motion") \
                from err
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"prompts file {path} is not valid TOML ({err}): fix it") from err
        prompts.update(_check(table, f"prompts file {path}"))
    elif isinstance(value, Mapping):
        prompts.update(_check(value, "profile setting describer.prompts"))
    else:
        raise UsageError("profile setting describer.prompts must be a table or the path of a prompts TOML file")
    return prompts


def fill(template: str, **fields: str) -> str:
    """The question with its ``{field}`` placeholders filled (fields not known yet become empty)."""
    return template.format_map({k: fields.get(k, "") for k in ("scene", "frame")})
