"""Exception classes of m3cvcav.

Each error carries the exit status the CLI uses and, like PyAV's, also subclasses the matching built-in exception so
scripts can catch either. Messages are one line: what is wrong and what to do.
"""
from __future__ import annotations


class M3cvError(Exception):
    """Base class of every error m3cvcav raises on purpose (exit status 1)."""

    exit_status = 1


class UsageError(M3cvError, ValueError):
    """Bad command line, unknown option, bad filter graph or filter option (exit status 2)."""

    exit_status = 2


class InputError(M3cvError, OSError):
    """An input that cannot be opened or read (missing path, no video stream, unreadable data)."""


class OutputError(M3cvError, OSError):
    """An output that cannot be written (permission, full disk, existing file without -y)."""


class BitstreamError(M3cvError, ValueError):
    """A stream that does not follow docs/bitstream.md (bad magic, CRC mismatch, size over a limit, truncation)."""


class UnsupportedVersionError(BitstreamError):
    """A stream whose major version is newer than this decoder reads."""


class ModelError(M3cvError, RuntimeError):
    """A model that is missing, has other weights than the stream was made with, or failed to load."""


class EngineError(M3cvError, RuntimeError):
    """A backend that cannot run here (not installed, no GPU, build failure)."""


def _extra_of(module: str) -> str | None:
    """The setup.py extra (from the installed package's metadata) whose distribution provides ``module``."""
    import re
    from importlib import metadata

    try:
        requires = metadata.metadata("m3cvcav").get_all("Requires-Dist") or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        found = re.match(r"\s*([A-Za-z0-9_.-]+).*extra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if found and re.sub(r"[-.]", "_", found[1].lower()) == module.lower():
            return found[2]
    return None


def missing_package(module: str, needed_by: str = "this") -> EngineError:
    """The one-line error for an optional package that is not installed: which extra brings it (and, for the m3cvc
    extra, that the lite profile needs none)."""
    top = module.split(".")[0]
    extra = _extra_of(top)
    if extra is None:
        return EngineError(f"{needed_by} needs the Python package {top}, which is not installed: pip install {top}")
    hint = "; or use the lite profile (-profile lite), which needs none" if extra == "m3cvc" else ""
    return EngineError(f"{needed_by} needs {top} from the optional [{extra}] extra: pip install 'm3cvcav[{extra}]' "
                       f"(in a checkout: pip install -e '.[{extra}]'){hint}")
