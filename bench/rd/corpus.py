"""The evaluation corpus: default and quick sets cut from ../shared/media with FFmpeg, or a user's folder of videos.

Clips are stored as Y4M (I420) in a cache (``$M3CVC_CORPUS_CACHE`` or ``~/.cache/m3cvcav/corpus``) with a
``manifest.json`` (source, license, frames, size, fps, color, sha256, recipe), so reruns reuse them. Photos are
converted with the BT.709 limited-range matrix stated to FFmpeg; Y'CbCr sources are only scaled (no matrix change).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from filelock import FileLock

from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.errors import InputError, UsageError

from .color import color_name, parse_color
from .video import read_video

RECIPE_VERSION = 2
VIDEO_EXTS = (".y4m", ".mp4", ".mkv", ".mov", ".webm", ".avi")
LICENSES = {
    "bigbuckbunny.mp4": "CC-BY 3.0, Blender Foundation",
    "vtest.avi": "BSD-3 / Apache-2.0, OpenCV sample data",
    "skimage_": "CC0 / public domain, scikit-image data",
    "mate_": "GPL-2+, Debian mate-backgrounds",
}
# The lite tokenizer trains on bigbuckbunny frames < 110 (every 3rd) and vtest frames < 700 (every 20th); see
# engines/tokenizer/data.py. Clips are cut from held-out material where the source allows and flagged where not.
BBB_TRAIN_NOTE = "bigbuckbunny frames < 110 overlap the lite tokenizer's training pool (every 3rd frame)"


@dataclass
class Clip:
    name: str
    path: str
    width: int
    height: int
    fps: str  # "num/den"
    frames: int
    source: str
    license: str
    color: str  # "bt709 limited" etc.
    sha256: str
    recipe: str
    note: str = ""

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def seconds(self) -> float:
        return self.frames / float(self.rate)

    def color_description(self) -> ColorDescription:
        return parse_color(self.color)


@dataclass(frozen=True)
class Recipe:
    """How one clip is cut: FFmpeg input args, video filter, frame count and fps."""

    name: str
    source: str  # file under the media root
    inputs: tuple[str, ...]
    vf: str
    frames: int
    fps: int
    note: str = ""


def _yuv_cut(name: str, src: str, first: int, count: int, w: int, h: int, crop: str = "", note: str = "") -> Recipe:
    vf = f"trim=start_frame={first}:end_frame={first + count},setpts=PTS-STARTPTS,{crop}scale={w}:{h}:flags=lanczos"
    fps = 25 if src.startswith("clips/bigbuckbunny") else 10
    return Recipe(name, src, (), vf, count, fps, note)


def _photo(name: str, src: str, count: int, w: int, h: int, motion: str) -> Recipe:
    """A camera move over a still photo at 25 fps: 'zoomin', 'zoomout', 'static' or 'pan' (fast, exact integer pan)."""
    to709 = "scale=out_color_matrix=bt709:out_range=tv"
    if motion == "pan":
        big_h = h * 3 // 2
        vf = (f"scale=-2:{big_h}:flags=lanczos,crop={w}:{h}:x='min(iw-{w},n*24)':y='({big_h}-{h})/2*(1+sin(n/6))'"
              f",{to709}")
    elif motion == "static":
        vf = f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,crop={w}:{h},{to709}"
    else:
        zoom = "1+0.004*on" if motion == "zoomin" else "1.25-0.004*on"
        vf = (f"scale={2 * w}:{2 * h}:force_original_aspect_ratio=increase:flags=lanczos,crop={2 * w}:{2 * h},"
              f"zoompan=z='{zoom}':x='iw/2-(iw/zoom/2)+on':y='ih/2-(ih/zoom/2)':d={count}:s={w}x{h}:fps=25,{to709}")
    return Recipe(name, src, ("-loop", "1", "-framerate", "25"), vf, count, 25)


def default_recipes(quick: bool) -> list[Recipe]:
    """The quick set (tiny, for CI) or the default small set (2–3 s pieces at three resolutions, camera motion, static,
    high motion)."""
    bbb, vt = "clips/bigbuckbunny.mp4", "clips/vtest.avi"
    vt_crop = "crop=768:432,"
    if quick:
        return [
            _yuv_cut("bbb_256x144", bbb, 110, 22, 256, 144),
            _photo("zoom-astronaut_256x144", "photos/skimage_astronaut.png", 25, 256, 144, "zoomin"),
        ]
    return [
        _yuv_cut("bbb_512x288", bbb, 82, 50, 512, 288, note=BBB_TRAIN_NOTE),
        _yuv_cut("bbb_1280x720", bbb, 82, 50, 1280, 720, note=BBB_TRAIN_NOTE),
        _yuv_cut("vtest_512x288", vt, 700, 30, 512, 288, vt_crop),
        _yuv_cut("vtest_832x480", vt, 760, 30, 832, 480, vt_crop),
        _photo("zoom-astronaut_512x288", "photos/skimage_astronaut.png", 50, 512, 288, "zoomin"),
        _photo("zoom-garden_832x480", "photos/mate_Garden.jpg", 50, 832, 480, "zoomout"),
        _photo("static-coffee_512x288", "photos/skimage_coffee.png", 50, 512, 288, "static"),
        _photo("pan-fast-garden_512x288", "photos/mate_Garden.jpg", 50, 512, 288, "pan"),
    ]


def media_root() -> Path:
    """``$M3CVC_MEDIA`` or ``../shared/media`` beside the checkout."""
    env = os.environ.get("M3CVC_MEDIA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "media"
    if not (root / "clips").is_dir():
        raise InputError(f"test media not found at {root}: set M3CVC_MEDIA to the shared media folder, "
                         "or use --corpus DIR")
    return root


def cache_root() -> Path:
    env = os.environ.get("M3CVC_CORPUS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "m3cvcav" / "corpus"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _license(source: str) -> str:
    return next((v for k, v in LICENSES.items() if Path(source).name.startswith(k)), "unknown (user-supplied)")


def _cut(recipe: Recipe, media: Path, out: Path) -> Clip:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InputError("building the corpus needs the ffmpeg command: install it (apt-get install ffmpeg)")
    tmp = out.with_name(out.name + ".part")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", *recipe.inputs, "-i", str(media / recipe.source),
           "-vf", recipe.vf + ",format=yuv420p", "-frames:v", str(recipe.frames), "-r", str(recipe.fps),
           "-an", "-f", "yuv4mpegpipe", str(tmp)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise InputError(f"ffmpeg failed cutting {recipe.name}: {run.stderr.strip().splitlines()[-1:]}")
    os.replace(tmp, out)
    video = read_video(out, ColorDescription())
    if len(video.frames) != recipe.frames:
        raise InputError(f"corpus clip {recipe.name} has {len(video.frames)} frames, expected {recipe.frames}")
    return Clip(recipe.name, out.name, video.width, video.height, f"{recipe.fps}/1", len(video.frames),
                recipe.source, _license(recipe.source), "bt709 limited", sha256_file(out),
                f"ffmpeg {' '.join(recipe.inputs)} -i {recipe.source} -vf {recipe.vf}", recipe.note)


def build_default(quick: bool, *, rebuild: bool = False, log=print) -> tuple[Path, list[Clip]]:
    """Build (or reuse from the cache) the quick or default corpus; returns its folder and clips."""
    media = media_root()
    folder = cache_root() / ("quick" if quick else "default")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    recipes = default_recipes(quick)
    with FileLock(str(folder / ".lock")):
        if not rebuild and manifest.exists():
            clips = load_manifest(manifest)
            data = json.loads(manifest.read_text())
            if data.get("recipe_version") == RECIPE_VERSION and [c.name for c in clips] == [r.name for r in recipes] \
                    and all((folder / c.path).is_file() for c in clips):
                return folder, clips
        clips = []
        for recipe in recipes:
            log(f"corpus: cutting {recipe.name}")
            clips.append(_cut(recipe, media, folder / f"{recipe.name}.y4m"))
        write_manifest(manifest, clips)
    return folder, clips


def write_manifest(path: Path, clips: list[Clip]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"recipe_version": RECIPE_VERSION, "clips": [asdict(c) for c in clips]}, indent=1))
    os.replace(tmp, path)


def load_manifest(path: Path) -> list[Clip]:
    try:
        # "colour": the key of manifests written before the tree spelt it one way
        return [Clip(**{"color" if k == "colour" else k: v for k, v in c.items()})
                for c in json.loads(path.read_text())["clips"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"corpus manifest {path} is unreadable ({exc}); "
                         "rebuild it with `bench corpus --rebuild`") from exc


def scan_folder(folder: Path, max_frames: int | None = None) -> list[Clip]:
    """Clips for a user's folder of videos (y4m/mp4/mkv/...): read once for frames, size and color."""
    if not folder.is_dir():
        raise UsageError(f"--corpus {folder} is not a folder: give a folder of y4m/mp4 videos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise UsageError(f"--corpus {folder} holds no videos ({', '.join(VIDEO_EXTS)}); add some or drop --corpus")
    clips = []
    for path in files:
        video = read_video(path, max_frames=max_frames)
        if video.width % 2 or video.height % 2:
            raise InputError(f"{path} is {video.width}x{video.height}: the harness needs even dimensions; crop it")
        fps = video.fps
        clips.append(Clip(path.stem, str(path.resolve()), video.width, video.height,
                          f"{fps.numerator}/{fps.denominator}", len(video.frames), str(path), _license(path.name),
                          color_name(video.color),
                          sha256_file(path), "as given" + (f", first {max_frames} frames" if max_frames else "")))
    return clips


def clip_path(folder: Path, clip: Clip) -> Path:
    return Path(clip.path) if Path(clip.path).is_absolute() else folder / clip.path
