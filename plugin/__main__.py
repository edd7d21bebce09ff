"""``python -m m3cvcav``: the FFmpeg-like transcoding CLI plus subcommands (probe, edit, play, base, engines, train, bench)."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
from m3cvcav.core.errors import M3cvError, missing_package
from m3cvcav.core.log import is_debug, set_level

from .workers import Terminated, received_stop, signals_as_interrupts

# Subcommand name -> module (inside m3cvcav) exposing ``main(argv: list[str]) -> int``.
SUBCOMMANDS = {
    "probe": "cli_probe",
    "edit": "cli_edit",
    "play": "cli_play",
    "base": "cli_base",
    "engines": "cli_engines",
    "train": "cli_train",
    "bench": "cli_bench",
    "gst": "gst",
    "vs": "vs",
}
TRANSCODE_MODULE = "cli_transcode"


def _loglevel_from(argv: Sequence[str]) -> str:
    """The -loglevel/-v of ``argv`` as a level name (FFmpeg's numbers too: -v 40 is verbose), set before anything
    runs."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-loglevel", "-v", "--loglevel"):
            from .options import loglevel_name

            return loglevel_name(argv[i + 1])
    return "info"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-version"):
        print(f"m3cvcav {__version__}")
        return 0
    with signals_as_interrupts():
        return _run(argv)


def _run(argv: list[str]) -> int:
    try:
        set_level(_loglevel_from(argv))
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[argv[0]]}")
            return int(module.main(argv[1:]) or 0)
        module = importlib.import_module(f"{__package__}.{TRANSCODE_MODULE}")
        return int(module.main(argv) or 0)
    except M3cvError as err:
        if (stop := received_stop()) is not None:  # the I/O error a signal caused inside FFmpeg: report the signal
            return _stopped(stop)
        if is_debug():
            raise
        print(f"m3cvcav: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP as Terminated
        return _stopped(stop)
    except BrokenPipeError:  # the reader of our output went away (| head): end quietly, as FFmpeg's users expect
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except ModuleNotFoundError as err:  # an optional dependency: say which extra brings it
        if is_debug():
            raise
        if not _is_missing_package(err.name):
            return _internal_error(err)
        print(f"m3cvcav: {missing_package(err.name, 'this command')}", file=sys.stderr)
        return 1
    except Exception as err:  # an unexpected failure: one line, the traceback only with -loglevel debug
        if (stop := received_stop()) is not None:
            return _stopped(stop)
        if is_debug():
            raise
        return _internal_error(err)


def _stopped(stop: KeyboardInterrupt) -> int:
    """The one line and exit status of a run stopped by a signal: 130 for Ctrl-C, 128 + signum for SIGTERM/SIGHUP."""
    if isinstance(stop, Terminated):
        print(f"m3cvcav: received {signal.Signals(stop.signum).name}; stopped, no partial output was kept",
              file=sys.stderr)
        return 128 + stop.signum
    print("m3cvcav: interrupted; no partial output was kept", file=sys.stderr)
    return 130


def _is_missing_package(name: str | None) -> bool:
    """True when ``name`` is a third-party package that is not installed; a module of m3cvcav itself that fails to
    import (a bug, not a missing install) is not one."""
    top = (name or "").split(".")[0]
    if not top or top == "m3cvcav":
        return False
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True


def _internal_error(err: BaseException) -> int:
    print(f"m3cvcav: internal error: {type(err).__name__}: {err} (rerun with -loglevel debug for details "
          "and report it)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
