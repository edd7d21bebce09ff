"""Progress statistics of a run (frame, fps, bitrate, size, speed, ETA) and FFmpeg-style reporting of them."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Stats:
    """Counters updated while a graph runs; ``media_time`` in seconds of the output, ``size`` the bytes written to the
    output so far (all of it), ``video_size`` those of its video track (the numbers of ``Result`` and ``probe``).

    ``total_frames`` and ``duration`` describe what will be coded (after -ss/-t/-frames:v), for the ETA.
    ``written_time`` is the span of output those bytes cover: an encoder writes whole segments, so its bytes lag the
    frames read (None: all of ``media_time``, as when decoding); the rates are over that span, ``N/A`` until the first
    segment is written."""

    total_frames: int | None = None
    duration: float | None = None
    frame: int = 0
    media_time: float = 0.0
    size: int = 0
    video_size: int = 0
    segments: int = 0
    written_time: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def fps(self) -> float:
        return self.frame / self.elapsed

    @property
    def speed(self) -> float:
        return self.media_time / self.elapsed

    @property
    def bitrate(self) -> float:
        """Bits per second of the whole output so far: the video over the span it covers, the rest (audio, which the
        muxer writes up to the frame read) over ``media_time``."""
        rest = self.size - self.video_size
        return self.video_bitrate + (8 * rest / self.media_time if self.media_time > 0 and self.span > 0 else 0.0)

    @property
    def video_bitrate(self) -> float:
        """Bits per second of the video track so far."""
        return self._rate(self.video_size)

    @property
    def span(self) -> float:
        """Seconds of output the bytes written so far cover."""
        return self.media_time if self.written_time is None else self.written_time

    def _rate(self, size: int) -> float:
        return 8 * size / self.span if self.span > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the share of ``total_frames`` (else of ``duration``) done so far."""
        if self.total_frames and self.frame:
            done = min(self.frame / self.total_frames, 1.0)
        elif self.duration and self.media_time > 0:
            done = min(self.media_time / self.duration, 1.0)
        else:
            return None
        return self.elapsed * (1 - done) / done

    def _kbits(self, bps: float, unit: str) -> str:
        return f"{bps / 1000:.2f}{unit}" if self.span > 0 else "N/A"

    def line(self) -> str:
        eta = self.eta
        eta_text = "--:--" if eta is None else f"{int(eta // 60):02d}:{int(eta % 60):02d}"
        return (f"frame={self.frame:5d} fps={self.fps:5.1f} size={self.size / 1024:8.1f}KiB "
                f"time={self.media_time:8.2f}s bitrate={self._kbits(self.bitrate, 'kbit/s'):>13} "
                f"video={self._kbits(self.video_bitrate, 'kbit/s'):>13} speed={self.speed:5.2f}x eta={eta_text}")

    def pairs(self) -> dict[str, str]:
        """FFmpeg ``-progress`` key=value pairs (a rate not known yet is ``N/A``, as in FFmpeg)."""
        return {"frame": str(self.frame), "fps": f"{self.fps:.2f}", "bitrate": self._kbits(self.bitrate, "kbits/s"),
                "video_bitrate": self._kbits(self.video_bitrate, "kbits/s"), "total_size": str(self.size),
                "video_size": str(self.video_size), "out_time_us": str(int(self.media_time * 1e6)),
                "speed": f"{self.speed:.3f}x"}


class Reporter:
    """Calls ``report`` on every frame; draws the progress line on a terminal (at most 4 times a second) and writes
    ``-progress`` blocks to a file or ``pipe:1``."""

    def __init__(self, stats: Stats, *, line: bool | None = None, progress: str | None = None,
                 stream: TextIO | None = None):
        self.stats = stats
        self.stream = stream or sys.stderr
        self.line = self.stream.isatty() if line is None else line
        self._progress = None
        if progress:
            self._progress = sys.stdout if progress in ("pipe:1", "-") else open(progress, "w", encoding="utf-8")
        self._last = 0.0

    def __call__(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.25:
            return
        self._last = now
        if self.line:
            self.stream.write("\r" + self.stats.line() + ("\n" if final else ""))
            self.stream.flush()
        if self._progress is not None:
            pairs = self.stats.pairs()
            pairs["progress"] = "end" if final else "continue"
            self._progress.write("".join(f"{k}={v}\n" for k, v in pairs.items()))
            self._progress.flush()
            if final and self._progress is not sys.stdout:
                self._progress.close()


ProgressCallback = Callable[[Stats], None]
