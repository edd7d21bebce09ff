"""Loader of the cffi core ``m3cvcav.bitstream._m3cvcore``, honouring ``M3CVC_NATIVE`` (unset: auto, 0: off, 1: required)."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from m3cvcav.core.errors import EngineError, UsageError
from m3cvcav.core.log import get_logger

ABI_VERSION = 3  # M3CV_ABI_VERSION of bitstream/native/m3cvcore.h
log = get_logger(__name__)


@lru_cache(maxsize=1)
def _import() -> tuple[Any, Any] | str:
    try:
        from . import _m3cvcore
    except ImportError as exc:
        return str(exc)
    built = getattr(_m3cvcore.lib, "M3CV_ABI_VERSION", None)
    if built != ABI_VERSION or _m3cvcore.lib.m3cv_abi_version() != ABI_VERSION:
        reason = f"the built native core is stale (ABI {built}, need {ABI_VERSION}); rebuild it with pip install -e ."
        log.warning(reason)
        return reason
    return _m3cvcore.ffi, _m3cvcore.lib


def core() -> tuple[Any, Any] | None:
    """``(ffi, lib)`` of the native core, or None when the numpy/Python fallback is to be used."""
    mode = os.environ.get("M3CVC_NATIVE", "").strip()
    if mode not in ("", "0", "1"):
        raise UsageError(f"M3CVC_NATIVE={mode!r} is not understood; set it to 0 (fallback), 1 (native) or leave it unset")
    if mode == "0":
        return None
    loaded = _import()
    if isinstance(loaded, str):
        if mode == "1":
            raise EngineError(f"M3CVC_NATIVE=1 but the native core is not built ({loaded}); "
                              "reinstall with a C compiler present (pip install .) or unset M3CVC_NATIVE")
        return None
    return loaded
