"""``python -m m3cvcav play FILE``: decodes an m3cvc stream and pipes it as y4m into ffplay or mpv."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from m3cvcav.core.errors import EngineError, InputError, UsageError

USAGE = """usage: python -m m3cvcav play FILE
Decode an m3cvc stream (.mkv or .m3cv) and show it with ffplay or mpv (whichever is installed), through a y4m pipe.
Needs a display (DISPLAY or WAYLAND_DISPLAY); without one, decode to a file: python -m m3cvcav -i FILE out.mp4
"""
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


def check_display() -> None:
    """Players open a window: say so before decoding when there is nowhere to show it (Linux/BSD without X/Wayland)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (os.environ.get("DISPLAY")
                                                                         or os.environ.get("WAYLAND_DISPLAY")):
        raise EngineError("play needs a display and neither DISPLAY nor WAYLAND_DISPLAY is set: run it in a desktop "
                          "session, or decode to a file (python -m m3cvcav -i FILE out.mp4)")


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "-help", "--help"):
        print(USAGE, end="")
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        raise UsageError("usage: python -m m3cvcav play FILE (see play -h)")
    src = argv[0]
    if not os.path.isfile(src):
        raise InputError(f"input {src} does not exist or is not a file: check the path")
    from m3cvcav.bitstream.containers import is_stream

    if not is_stream(src):
        raise InputError(f"{src} is not an m3cvc stream (.mkv/.m3cv made by m3cvcav): play it with ffplay directly")
    path, args = find_player()
    check_display()
    from . import api

    proc = subprocess.Popen([path] + [a.format(title=src) for a in args], stdin=subprocess.PIPE)
    try:
        api.decode(src, proc.stdin, format="yuv4mpegpipe")
    except BrokenPipeError:
        pass  # the player was closed before the end
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        status = proc.wait()
    if status not in (0, -2, 255):  # 255/-2: the user closed or interrupted the player
        raise EngineError(f"the player ({os.path.basename(path)}) failed with status {status}: see its message above")
    return 0
