"""VapourSynth source for m3cvc streams (docs/media-frameworks.md):

    import m3cvcav.vs
    clip = m3cvcav.vs.source("out.mkv")       # a VideoNode: YUV420P8 (YUV444P8 at odd sizes), the stream's fps
    clip.set_output()

Frames are frame-exact by number, in any order: each request decodes from the start of the segment that covers it
(``m3cvcav.filters.access.SeekableDecoder``, the public decoder), keeping the last ``cache`` segments. They are the
CLI's frames bit for bit (``python3 -m m3cvcav -i out.mkv -f rawvideo out.yuv``), with ``_ColorRange``, ``_Matrix``,
``_Transfer``, ``_Primaries``, ``_ChromaLocation``, ``_FieldBased``, ``_SARNum``/``_SARDen``,
``_DurationNum``/``_DurationDen`` and ``_AbsoluteTime`` as frame props.

VapourSynth's Linux wheels need Python 3.12 or newer and m3cvcav's packages (torch) may be installed for another one,
so decoding runs in a worker process of the Python m3cvcav is installed in (``M3CVCAV_PYTHON``, or the one
``python3 -m m3cvcav vs setup`` linked), which sends each frame's planes through a pipe. This module imports only the
standard library (and numpy/vapoursynth in ``source``), so the VapourSynth Python needs neither torch nor PyAV.

``python3 -m m3cvcav vs setup [DIR]`` makes a VapourSynth environment (a venv of a Python >= 3.12 with vapoursynth and
numpy, configured, and able to import ``m3cvcav.vs``); its ``bin/vspipe`` runs .vpy scripts.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

ENV_PYTHON = "M3CVCAV_PYTHON"  # the Python whose m3cvcav decodes (default: the linked one, else this one)
ENV_HOME = "M3CVCAV_VS_HOME"  # where `vs setup` puts the VapourSynth environment
MIN_PYTHON = (3, 12)  # VapourSynth's Linux wheels (R74 on) are cp312-abi3
LINK = "m3cvcav_link"  # the module (and .pth) that lets the VapourSynth Python import m3cvcav.vs
USAGE = """usage: python3 -m m3cvcav vs setup [DIR] [--python PYTHON]
  setup   (-q: quiet) make a VapourSynth environment in DIR (default $M3CVCAV_VS_HOME or
          ~/.local/share/m3cvcav/vapoursynth): a venv of a Python >= 3.12 (PYTHON, or the newest found) with
          vapoursynth and numpy, configured for vspipe, able to import m3cvcav.vs, whose frames this Python's m3cvcav
          decodes. Then: DIR/bin/vspipe script.vpy -c y4m - | ...
"""


# ---- the VapourSynth side
def source(path: str | os.PathLike, *, cache: int = 3, profile: str | None = None, enhance: bool = True,
           python: str | None = None):
    """A ``vapoursynth.VideoNode`` of the m3cvc stream ``path`` (.mkv or .m3cv); see the module's docstring.
    ``cache``: decoded segments kept; ``profile``/``enhance``: as ``m3cvcav.open``'s; ``python``: the interpreter
    whose m3cvcav decodes (default ``$M3CVCAV_PYTHON``, the one ``vs setup`` linked, or this one)."""
    import numpy as np
    import vapoursynth as vs

    worker = Worker(path, cache=cache, profile=profile, enhance=enhance, python=python)
    info = worker.info
    fmt = vs.YUV444P8 if info["format"] == "yuv444p" else vs.YUV420P8
    fps = Fraction(*info["fps"])
    blank = vs.core.std.BlankClip(width=info["width"], height=info["height"], format=fmt, length=info["frames"],
                                  fpsnum=fps.numerator, fpsden=fps.denominator, keep=True)
    color = info["color"]
    constant = {"_ColorRange": 0 if color["full_range"] else 1, "_Matrix": color["matrix"],
                "_Transfer": color["transfer"], "_Primaries": color["primaries"], "_FieldBased": 0,
                "_ChromaLocation": 0, "_SARNum": 1, "_SARDen": 1}

    def frame(n: int, f):
        head, planes = worker.frame(n)
        out = f.copy()
        for index, plane in enumerate(planes):
            np.copyto(np.asarray(out[index]), plane)
        props = out.props
        for key, value in constant.items():
            props[key] = value
        props["_DurationNum"], props["_DurationDen"] = head["duration"]
        props["_AbsoluteTime"] = head["time"]
        return out

    return vs.core.std.ModifyFrame(blank, blank, frame)  # the callback holds the worker: it ends with the node


class Worker:
    """The decoding process (``python -m m3cvcav.vs --serve PATH``) and its pipe: ``info`` (the stream),
    ``frame(n)`` → (its header: pts, time, duration; the planes as 2-D uint8 arrays). Thread-safe."""

    def __init__(self, path, *, cache: int = 3, profile: str | None = None, enhance: bool = True,
                 python: str | None = None):
        from m3cvcav.core.errors import EngineError, InputError

        if not os.path.isfile(path):
            raise InputError(f"input {path} does not exist or is not a file: check the path")
        self.python = python or os.environ.get(ENV_PYTHON) or _linked_python() or sys.executable
        args = [self.python, "-m", "m3cvcav.vs", "--serve", os.fspath(path), "--cache", str(cache)]
        args += ["--profile", profile] if profile else []
        args += [] if enhance else ["--no-enhance"]
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as err:
            raise EngineError(f"cannot start the m3cvcav decoder {self.python}: {err.strerror}; set "
                              f"{ENV_PYTHON} to the python3 m3cvcav is installed in") from None
        self.lock = threading.Lock()
        self.info = self._reply()

    def _reply(self) -> dict:
        from m3cvcav.core.errors import EngineError, M3cvError

        line = self.proc.stdout.readline()
        if not line:
            raise EngineError(f"the m3cvcav decoder ({self.python}) ended without a word: is m3cvcav installed "
                              f"there? (set {ENV_PYTHON} to the python3 it is installed in)")
        reply = json.loads(line)
        if "error" in reply:
            raise M3cvError(reply["error"])
        return reply

    def frame(self, n: int):
        import numpy as np

        with self.lock:
            self.proc.stdin.write(f"{n}\n".encode())
            self.proc.stdin.flush()
            head = self._reply()
            data = self.proc.stdout.read(sum(h * w for h, w in head["planes"]))
        planes, pos = [], 0
        for h, w in head["planes"]:
            planes.append(np.frombuffer(data, np.uint8, h * w, pos).reshape(h, w))
            pos += h * w
        return head, planes

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


def _linked_python() -> str | None:
    try:
        from m3cvcav_link import PYTHON  # written by `vs setup` into the VapourSynth environment
    except ImportError:
        return None
    return PYTHON if os.path.exists(PYTHON) else None


# ---- the decoding side (the worker)
def serve(path: str, cache: int, profile: str | None, enhance: bool) -> int:
    """Answer frame requests (a frame number a line on stdin) with a JSON line and the frame's planes on stdout."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the pipe

    def say(obj: dict, data: bytes = b"") -> None:
        out.write(json.dumps(obj).encode() + b"\n" + data)
        out.flush()

    from m3cvcav.core.errors import M3cvError
    from m3cvcav.filters.access import SeekableDecoder, output_color, to_yuv, yuv_format

    try:
        decoder = SeekableDecoder(path, cache=cache, profile=profile, enhance=enhance)
    except M3cvError as err:
        say({"error": str(err)})
        return 1
    info, color = decoder.info, output_color(decoder.header.color)
    pix_fmt = yuv_format(info.width, info.height)
    say({"width": info.width, "height": info.height, "frames": decoder.frame_count,
         "fps": [decoder.fps.numerator, decoder.fps.denominator], "format": pix_fmt, "vfr": decoder.vfr,
         "color": {"primaries": color.primaries, "transfer": color.transfer, "matrix": color.matrix,
                   "full_range": color.full_range}})
    for line in sys.stdin.buffer:
        try:
            n = int(line)
            frame = decoder.frame(n)
            planes = [p for p in to_yuv(frame, decoder.header.color, pix_fmt)]
        except (M3cvError, IndexError, ValueError) as err:
            say({"error": str(err)})
            continue
        duration = decoder.duration(n)
        say({"n": n, "pts": frame.pts, "time": float(frame.pts * frame.time_base),
             "duration": [duration.numerator, duration.denominator],
             "planes": [list(p.shape) for p in planes]}, b"".join(p.tobytes() for p in planes))
    return 0


# ---- setup
def default_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".local" / "share" / "m3cvcav" / "vapoursynth")


def vspipe(home: str | os.PathLike | None = None) -> Path | None:
    """The vspipe of the VapourSynth environment ``vs setup`` made (None when there is none)."""
    path = Path(home or default_home()) / "bin" / "vspipe"
    return path if path.exists() else None


def _version(python: str) -> tuple[int, int] | None:
    try:
        run = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = run.stdout.split()
    return (int(parts[0]), int(parts[1])) if run.returncode == 0 and len(parts) == 2 else None


def find_python() -> str | None:
    """A Python >= 3.12 for VapourSynth: this one, else the newest python3.1x on PATH or in pyenv's versions."""
    if sys.version_info[:2] >= MIN_PYTHON:
        return sys.executable
    candidates = [shutil.which(f"python3.{minor}") for minor in range(20, MIN_PYTHON[1] - 1, -1)]
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(glob.glob(str(root / "versions" / "3.*" / "bin" / "python3")), reverse=True)
    found = [(v, c) for c in candidates if c and (v := _version(c)) is not None and v >= MIN_PYTHON]
    return max(found)[1] if found else None


def _packages() -> dict[str, list[str]]:
    """m3cvcav's package folders in this installation (editable or not), by package name."""
    import importlib
    import importlib.util

    names = ["m3cvcav"] + [f"m3cvcav.{n}" for n in ("core", "filters", "bitstream", "engines")]
    importlib.import_module("m3cvcav")
    return {n: list(importlib.util.find_spec(n).submodule_search_locations) for n in names}


LINK_MODULE = '''"""Written by python3 -m m3cvcav vs setup: lets this Python import m3cvcav.vs from the m3cvcav
installed for {python}, which decodes the frames (docs/media-frameworks.md)."""
import importlib.util
import os
import sys

PYTHON = {python!r}
PACKAGES = {packages!r}


class _Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in PACKAGES:
            return None
        folder = PACKAGES[name][0]
        return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=PACKAGES[name])


if not any(getattr(f, "__name__", "") == "_Finder" and getattr(f, "__module__", "") == __name__
           for f in sys.meta_path):
    sys.meta_path.append(_Finder)
'''


def setup(home: Path, python: str | None = None) -> Path:
    """Make (or bring up to date) the VapourSynth environment in ``home``; returns its vspipe."""
    from m3cvcav.core.errors import EngineError

    python = python or find_python()
    if python is None or (_version(python) or (0, 0)) < MIN_PYTHON:
        raise EngineError("VapourSynth's Linux wheels need Python 3.12 or newer and none was found: install one "
                          "(pyenv install 3.12, or apt install python3.12 where the distribution has it) and run "
                          "python3 -m m3cvcav vs setup --python /path/to/python3.12")
    venv_python = home / "bin" / "python"
    if not venv_python.exists():
        subprocess.run([python, "-m", "venv", str(home)], check=True)
    have = subprocess.run([str(venv_python), "-c", "import vapoursynth, numpy"], capture_output=True).returncode == 0
    if not have:
        subprocess.run([str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "vapoursynth", "numpy"], check=True)
    subprocess.run([str(home / "bin" / "vapoursynth"), "config"], check=True, stdout=subprocess.DEVNULL)
    purelib = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, f"{LINK}.py").write_text(LINK_MODULE.format(python=sys.executable, packages=_packages()))
    Path(purelib, f"{LINK}.pth").write_text(f"import {LINK}\n")
    check = subprocess.run([str(venv_python), "-c", "import m3cvcav.vs, vapoursynth"], capture_output=True, text=True)
    if check.returncode != 0:
        raise EngineError(f"the VapourSynth environment {home} cannot import m3cvcav.vs: "
                          f"{check.stderr.strip().splitlines()[-1:]}")
    return home / "bin" / "vspipe"


def main(argv: list[str]) -> int:
    from m3cvcav.core.errors import UsageError

    if not argv or argv[0] in ("-h", "-help", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] != "setup":
        raise UsageError(f"vs {argv[0]}: the subcommand is setup (python3 -m m3cvcav vs -h)")
    rest, python, home, quiet = argv[1:], None, None, False
    while rest:
        arg = rest.pop(0)
        if arg == "--python" and rest:
            python = rest.pop(0)
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif not arg.startswith("-") and home is None:
            home = Path(arg)
        else:
            raise UsageError(f"vs setup: unknown argument {arg} (python3 -m m3cvcav vs -h)")
    try:
        pipe = setup((home or default_home()).expanduser().resolve(), python)
    except subprocess.CalledProcessError as err:
        from m3cvcav.core.errors import EngineError

        raise EngineError(f"vs setup: {' '.join(map(str, err.cmd[:4]))} failed with status {err.returncode} "
                          "(see its message above)") from None
    if not quiet:
        print(f"VapourSynth is set up: {pipe} script.vpy -c y4m - | x265 --y4m - -o out.hevc")
    return 0


def _serve_main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m m3cvcav.vs --serve")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--cache", type=int, default=3)
    parser.add_argument("--profile")
    parser.add_argument("--no-enhance", action="store_true")
    args = parser.parse_args(argv)
    return serve(args.serve, args.cache, args.profile, not args.no_enhance)


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv[1:]))
