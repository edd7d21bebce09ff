"""Reading and writing raw I420 clips through PyAV (frames stay in the source's Y'CbCr; no hidden matrix conversion)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from m3cvcav.bitstream.units import ColorDescription
from m3cvcav.core.errors import InputError

from .color import color_of_stream


@dataclass
class Video:
    """Decoded clip: I420 planes (H*3/2, W) uint8 per frame, the frame rate and the color it is to be read with."""

    frames: list[np.ndarray]
    fps: Fraction
    color: ColorDescription

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]

    @property
    def height(self) -> int:
        return self.frames[0].shape[0] * 2 // 3


def read_video(path: str | Path, color: ColorDescription | None = None,
               max_frames: int | None = None) -> Video:
    """Decode ``path`` to I420 planes; ``color`` overrides what the stream says (Y4M says nothing)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot open {path}: {exc}; give a readable y4m/mp4/mkv file") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream; give a video file")
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
        frames: list[np.ndarray] = []
        seen: ColorDescription | None = None
        for frame in container.decode(stream):
            if seen is None:
                seen = color_of_stream(frame.colorspace, frame.color_range)
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            frames.append(frame.to_ndarray())
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"{path} has no decodable video frames; give another file")
    return Video(frames, fps, color or seen or ColorDescription())


def write_y4m(path: Path, frames: list[np.ndarray], fps: Fraction) -> None:
    """Write I420 planes as a Y4M file (temp file + rename)."""
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width = frames[0].shape[1]
        stream.height = frames[0].shape[0] * 2 // 3
        stream.pix_fmt = "yuv420p"
        for i, planes in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    os.replace(tmp, path)
