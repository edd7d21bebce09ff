"""The profile under test: m3cvcav's public API (``m3cvcav.encode`` / ``m3cvcav.decode``) on the clip's file at each of
the profile's rate points (``q=N``, the tokenizer's operating points), with the rate counted as the encoded file's size
in bytes (the ``.m3cv`` stream: headers, model references and all)."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colour import Colour
from .video import read_video


@dataclass
class ProfileRun:
    param: str
    bytes: int
    planes: list[np.ndarray]
    encode_s: float
    decode_s: float


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


def run(profile: str, src: Path, colour: Colour, q: int, frames: int) -> ProfileRun:
    """Encode ``src`` at rate point ``q`` with ``profile``, decode it back, read the frames."""
    import m3cvcav

    with tempfile.TemporaryDirectory(prefix="m3cvc-rd-") as tmp:
        dst, back = Path(tmp) / "out.m3cv", Path(tmp) / "back.y4m"
        start = time.perf_counter()
        m3cvcav.encode(str(src), str(dst), q=q, profile=profile, overwrite=True)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        m3cvcav.decode(str(dst), str(back), overwrite=True)
        decode_s = time.perf_counter() - start
        video = read_video(back, colour)
        nbytes = dst.stat().st_size
    planes = video.frames[:frames]
    return ProfileRun(f"q={q}", nbytes, planes, encode_s, decode_s)
