"""The profile under test: m3cvcav's public API (``m3cvcav.encode`` / ``m3cvcav.decode``) on the clip's file at a
``-b:v`` bitrate target (``bitrate="20k"``, the rate control users type) or at one of the profile's rate points
(``q=N``), with the rate counted as the encoded file's size in bytes (the ``.m3cv`` stream: headers, model references
and all)."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3cvcav.bitstream.units import ColorDescription

from .video import read_video


BICUBIC = "-bicubic"  # suffix of the same streams decoded with -enhance none (the base upscaled bicubically)


@dataclass
class ProfileRun:
    param: str
    bytes: int
    planes: list[np.ndarray]
    encode_s: float
    decode_s: float
    bicubic: list[np.ndarray] | None = None  # the same stream decoded with -enhance none, when it differs


def api_missing() -> str | None:
    """None when ``m3cvcav.encode``/``decode`` can be imported, else why not."""
    try:
        import m3cvcav

        m3cvcav.encode, m3cvcav.decode  # noqa: B018  (attribute access imports m3cvcav.api)
    except (ImportError, AttributeError) as exc:
        return f"the codec API m3cvcav.encode/decode is not available yet ({type(exc).__name__}: {exc})"
    return None


def rate_points(profile: str) -> list[int]:
    """The profile's rate point indices (``q`` values), lowest rate first."""
    from m3cvcav.engines.registry import load_profile

    return [rp.index for rp in load_profile(profile).engine("tokenizer").rate_points]


def bitrate_arg(kbps: float) -> str:
    """A kbps target as ``-b:v`` takes it: ``20k``, ``2.5k``."""
    return f"{kbps:.4g}k"


def run(profile: str, src: Path, color: ColorDescription, frames: int, *, q: int | None = None,
        bitrate: str | None = None) -> ProfileRun:
    """Encode ``src`` with ``profile`` at ``bitrate`` (``-b:v``, e.g. "20k") or rate point ``q``, decode it back, read
    the frames."""
    import m3cvcav

    if (q is None) == (bitrate is None):
        raise ValueError("give either q or bitrate")
    with tempfile.TemporaryDirectory(prefix="m3cvc-rd-") as tmp:
        dst, back = Path(tmp) / "out.m3cv", Path(tmp) / "back.y4m"
        start = time.perf_counter()
        m3cvcav.encode(str(src), str(dst), q=q, bitrate=bitrate, profile=profile, overwrite=True)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        m3cvcav.decode(str(dst), str(back), overwrite=True)
        decode_s = time.perf_counter() - start
        video = read_video(back, color)
        m3cvcav.decode(str(dst), str(back), overwrite=True, enhance=False)
        plain = read_video(back, color).frames[:frames]
        nbytes = dst.stat().st_size
    planes = video.frames[:frames]
    differs = any(not np.array_equal(a, b) for a, b in zip(planes, plain))
    return ProfileRun(f"q={q}" if q is not None else f"b:v={bitrate}", nbytes, planes, encode_s, decode_s,
                      plain if differs else None)
