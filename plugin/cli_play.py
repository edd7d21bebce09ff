"""``python -m m3cvcav play FILE``: decodes an m3cvc stream and pipes it as y4m into ffplay or mpv."""
from __future__ import annotations

import shutil
import subprocess

from m3cvcav.errors import EngineError, UsageError

PLAYERS = (("ffplay", ["-hide_banner", "-loglevel", "error", "-autoexit", "-window_title", "{title}", "-"]),
           ("mpv", ["--really-quiet", "--title={title}", "-"]))


def find_player() -> tuple[str, list[str]]:
    """The first installed player and its arguments, or EngineError saying what to install."""
    for name, args in PLAYERS:
        path = shutil.which(name)
        if path:
            return path, args
    raise EngineError("no player found: install ffplay (apt install ffmpeg) or mpv (apt install mpv), or pipe "
                      "yourself: python -m m3cvcav -i FILE -f yuv4mpegpipe - | mpv -")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise UsageError("usage: python -m m3cvcav play FILE")
    from m3cvcav import api

    path, args = find_player()
    proc = subprocess.Popen([path] + [a.format(title=argv[0]) for a in args], stdin=subprocess.PIPE)
    try:
        api.decode(argv[0], proc.stdin, format="yuv4mpegpipe")
    except BrokenPipeError:
        pass  # the player was closed before the end
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait()
    return 0
