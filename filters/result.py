"""What an encode or a decode produced (:class:`Result`), and the one warning when -b:v was missed."""
from __future__ import annotations

from dataclasses import dataclass

from m3cvcav.core.log import get_logger

log = get_logger(__name__)
RATE_TOLERANCE = 0.05  # -b:v is met when the video rate is within 5 % of it


@dataclass
class Result:
    """What a run produced. ``bytes``: the video track's bytes (what ``ffprobe -show_packets`` sums for it: every
    segment packet and frame marker; for a decode, the output's video packets); ``total_bytes``: the whole output
    (audio, subtitles, container); ``duration`` in seconds; ``corrupt`` segments concealed; ``target_bitrate``: the
    -b:v asked for (0: none)."""

    frames: int
    segments: int
    bytes: int
    duration: float
    corrupt: int = 0
    total_bytes: int = 0
    target_bitrate: float = 0.0

    @property
    def bitrate(self) -> float:
        """Video bits per second."""
        return 8 * self.bytes / self.duration if self.duration > 0 else 0.0

    @property
    def total_bitrate(self) -> float:
        """Bits per second of the whole output."""
        return 8 * self.total_bytes / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        """``video N bytes (X kbit/s), total M bytes (Y kbit/s)``."""
        return (f"video {self.bytes} bytes ({self.bitrate / 1000:.2f} kbit/s), total {self.total_bytes} bytes "
                f"({self.total_bitrate / 1000:.2f} kbit/s)")


def warn_rate(result: Result) -> None:
    """Say when the achieved video rate is more than 5 % off the -b:v target, and why."""
    if not result.target_bitrate or result.duration <= 0 or not result.frames:
        return
    off = result.bitrate / result.target_bitrate - 1
    if abs(off) <= RATE_TOLERANCE:
        return
    why = ("the base layer cannot go lower on this content (its smallest coded size at AV1's coarsest CRF, one key "
           "frame per segment): lower the frame rate (-r), use longer segments (-vf select=threshold=...:min=...) or "
           "-mode tt2v" if off > 0 else
           "the base layer spends no more on this content (full size, finest CRF): the stream is as good as it gets")
    log.warning("video rate %.2f kbit/s is %+.0f%% off the -b:v target of %.2f kbit/s: %s", result.bitrate / 1000,
                100 * off, result.target_bitrate / 1000, why)
