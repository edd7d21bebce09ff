"""``python -m m3cvcav``: the FFmpeg-like transcoding CLI plus subcommands (probe, edit, play, engines, train, bench)."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import M3cvError
from .log import is_debug, set_level

# Subcommand name -> module (inside m3cvcav) exposing ``main(argv: list[str]) -> int``.
SUBCOMMANDS = {
    "probe": "cli_probe",
    "edit": "cli_edit",
    "play": "cli_play",
    "engines": "cli_engines",
    "train": "cli_train",
    "bench": "cli_bench",
}
TRANSCODE_MODULE = "cli_transcode"


def _loglevel_from(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-loglevel", "-v", "--loglevel"):
            return argv[i + 1]
    return "info"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-version"):
        print(f"m3cvcav {__version__}")
        return 0
    try:
        set_level(_loglevel_from(argv))
        if argv and argv[0] in SUBCOMMANDS:
            module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[argv[0]]}")
            return int(module.main(argv[1:]) or 0)
        module = importlib.import_module(f"{__package__}.{TRANSCODE_MODULE}")
        return int(module.main(argv) or 0)
    except M3cvError as err:
        if is_debug():
            raise
        print(f"m3cvcav: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("m3cvcav: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # an unexpected failure: one line, the traceback only with -loglevel debug
        if is_debug():
            raise
        print(f"m3cvcav: internal error: {type(err).__name__}: {err} (rerun with -loglevel debug for details "
              "and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
