"""Logging for m3cvcav, with FFmpeg's level names (``-loglevel quiet|panic|fatal|error|warning|info|verbose|debug``)."""
from __future__ import annotations

import logging
import sys

from .errors import UsageError

LEVELS = {
    "quiet": logging.CRITICAL + 10,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "verbose": logging.INFO - 5,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}

logger = logging.getLogger("m3cvcav")


def get_logger(name: str) -> logging.Logger:
    """The child logger ``m3cvcav.<name>``; a module's ``__name__`` (``m3cvcav.bitstream.probe``) is taken relative to
    the package, so it is not doubled."""
    prefix = logger.name + "."
    return logger.getChild(name[len(prefix):] if name.startswith(prefix) else name)


def set_level(name: str) -> None:
    """Set the level by FFmpeg name; records go to stderr as ``[m3cvcav.part] message`` lines."""
    if name not in LEVELS:
        raise UsageError(f"unknown -loglevel {name!r}: use one of {', '.join(LEVELS)}")
    logger.setLevel(LEVELS[name])
    to_stderr()


def to_stderr(always: bool = False) -> None:
    """Records to stderr as ``[m3cvcav.part] message`` lines, through one handler of ours. Unless ``always`` (a
    worker process logging for its parent), only when the host application (or a test runner) has not configured
    logging: records still propagate, so an embedding program's handlers see them once."""
    if logger.handlers or (not always and logging.getLogger().handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.addHandler(handler)


def is_debug() -> bool:
    return logger.getEffectiveLevel() <= logging.DEBUG
