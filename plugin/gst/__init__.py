"""GStreamer support: the ``m3cvcdec`` decoder, ``m3cvparse`` and the ``.m3cv`` typefinder live in
``python/m3cvcav_gst.py`` beside this file, a plugin for GStreamer's Python loader (Debian:
gstreamer1.0-python3-plugin-loader). ``python3 -m m3cvcav gst env`` prints the two variables that make GStreamer find
it, let the loader's Python import m3cvcav from this installation and find the system's PyGObject
(docs/media-frameworks.md):

    eval "$(python3 -m m3cvcav gst env)" && gst-play-1.0 out.mkv
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

from m3cvcav.core.errors import EngineError, UsageError

PLUGIN_DIR = Path(__file__).resolve().parent  # GStreamer's Python loader looks in its python/ folder
APT = ("gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-x "
       "gstreamer1.0-python3-plugin-loader python3-gst-1.0")
USAGE = f"""usage: python3 -m m3cvcav gst env|check
  env    print the shell exports that let GStreamer load m3cvcdec (GST_PLUGIN_PATH, M3CVCAV_SITE, PYTHONPATH):
         eval "$(python3 -m m3cvcav gst env)" && gst-play-1.0 out.mkv
  check  load the element the way gst-launch-1.0 does and say whether it works
GStreamer itself (Debian/Ubuntu): apt install {APT}
"""
LOADER_DIRS = ("/usr/lib/x86_64-linux-gnu/gstreamer-1.0", "/usr/lib/aarch64-linux-gnu/gstreamer-1.0",
               "/usr/lib/gstreamer-1.0", "/usr/lib64/gstreamer-1.0", "/usr/local/lib/gstreamer-1.0")


def site_dirs() -> list[str]:
    """The site-packages folders of this Python (its venv's, and the user's when enabled): where m3cvcav and its
    packages are installed."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def loader_python() -> str | None:
    """The Python version (``3.11``) GStreamer's Python plugin loader embeds, or None when it is not installed."""
    folders = [p for p in os.environ.get("GST_PLUGIN_SYSTEM_PATH", "").split(os.pathsep) if p] + list(LOADER_DIRS)
    for folder in folders:
        for path in glob.glob(os.path.join(folder, "libgstpython*.so")):
            found = re.search(rb"libpython(\d+\.\d+)", Path(path).read_bytes())
            if found:
                return found.group(1).decode()
    return None


def gi_folder() -> str | None:
    """A folder holding only a link to the system Python's PyGObject (``gi``), for PYTHONPATH. The loader's embedded
    Python takes its prefix from the first ``python3`` on PATH: a pyenv or venv Python there gives it that Python's
    library, without the system's ``gi``, and the loader fails ("pygobject initialization failed"). None when the
    system Python has no ``gi`` (python3-gst-1.0 not installed)."""
    version = loader_python() or ""
    system = shutil.which(f"python{version}", path="/usr/bin:/bin") or shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        return None
    run = subprocess.run([system, "-c", "import gi, os; print(os.path.dirname(gi.__file__))"], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if run.returncode != 0:
        return None
    target = Path(run.stdout.strip())
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3cvcav" / "gst-gi"
    link = folder / "gi"
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        folder.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return str(folder)


def _prepend(name: str, first: str | None) -> str:
    rest = [p for p in os.environ.get(name, "").split(os.pathsep) if p and p != first]
    return os.pathsep.join(([first] if first else []) + rest)


def environment() -> dict[str, str]:
    """GST_PLUGIN_PATH with this package's plugin folder first, M3CVCAV_SITE (this Python's site folders) and
    PYTHONPATH with the system's ``gi`` (:func:`gi_folder`) first."""
    env = {"GST_PLUGIN_PATH": _prepend("GST_PLUGIN_PATH", str(PLUGIN_DIR)),
           "M3CVCAV_SITE": os.pathsep.join(site_dirs())}
    gi = gi_folder()
    if gi is not None:
        env["PYTHONPATH"] = _prepend("PYTHONPATH", gi)
    return env


def check_loader() -> None:
    """EngineError when GStreamer's Python loader is missing or embeds another Python than this one (the compiled
    packages m3cvcav needs, numpy or PyAV, are built for one Python version)."""
    version = loader_python()
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version is None:
        raise EngineError(f"GStreamer's Python plugin loader is not installed: apt install {APT}")
    if version != mine:
        raise EngineError(f"GStreamer's Python plugin loader runs Python {version} and m3cvcav is installed for "
                          f"{mine}: install m3cvcav with python{version} (e.g. python{version} -m pip install "
                          f"m3cvcav) and run python{version} -m m3cvcav gst env")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "env" and len(argv) == 1:
        try:
            check_loader()
        except EngineError as err:
            print(f"m3cvcav: warning: {err}", file=sys.stderr)
        for name, value in environment().items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if argv[0] == "check" and len(argv) == 1:
        check_loader()
        inspect = shutil.which("gst-inspect-1.0")
        if inspect is None:
            raise EngineError(f"gst-inspect-1.0 is not installed: apt install {APT}")
        env = {**os.environ, **environment()}
        for element in ("m3cvcdec", "m3cvparse"):
            run = subprocess.run([inspect, element], env=env, capture_output=True, text=True)
            if run.returncode != 0:
                raise EngineError(f"GStreamer does not find {element}: {(run.stderr or run.stdout).strip()[:300]}")
        probe = [sys.executable, "-c", "import m3cvcav.filters.access"]
        print(f"m3cvcdec and m3cvparse load from {PLUGIN_DIR / 'python'}; GStreamer's Python is {loader_python()}")
        subprocess.run(probe, check=True)
        return 0
    raise UsageError(f"gst {' '.join(argv)}: give env or check (python3 -m m3cvcav gst -h)")
