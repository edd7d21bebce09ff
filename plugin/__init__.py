"""m3cvcav: a generative video codec for ultra-low bitrates (M3-CVC / CMVC), usable like any other codec.

Public API (see README): :func:`encode`, :func:`decode`, :func:`open`.
"""
from __future__ import annotations

from .core import __version__
from .core.errors import (  # noqa: F401  (re-exported)
    BitstreamError,
    EngineError,
    InputError,
    M3cvError,
    ModelError,
    OutputError,
    UnsupportedVersionError,
    UsageError,
)

__all__ = ["__version__", "encode", "decode", "open", "Result", "Encoder", "Decoder", "M3cvError", "UsageError",
           "InputError", "OutputError", "BitstreamError", "UnsupportedVersionError", "ModelError", "EngineError"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str):
    # The API pulls in PyAV, numpy and the engines: import it only when used, so `--version` stays instant.
    if name in ("encode", "decode", "open", "Result", "Encoder", "Decoder"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
