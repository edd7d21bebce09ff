"""FFmpeg's own filters (scale, fps, crop, format, ...) run through PyAV's ``av.filter.Graph`` on our RGB frames."""
from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from m3cvcav.core.errors import UsageError

from .graph import FilterSpec
from .items import Frame, VideoInfo
from .node import REGISTRY, Node


def is_ffmpeg_filter(name: str) -> bool:
    """True when libavfilter (as bundled with PyAV) has a filter called ``name``."""
    return name in av.filter.filters_available


class FFmpegChain(Node):
    """A chain of libavfilter video filters (none: frames pass through); built at the first frame, since sizes come
    from the frames themselves: ``output_info`` gives the description of what comes out."""

    NAME = "ffmpeg"
    HELP = "FFmpeg's own filters (-vf scale=..., -s, -r), through PyAV's libavfilter"
    GRAPH = False  # the user names libavfilter's filters, not this node

    def __init__(self, specs: list[FilterSpec]):
        super().__init__()
        for spec in specs:
            if not is_ffmpeg_filter(spec.name):
                ours = ", ".join(sorted(REGISTRY))
                raise UsageError(f"unknown filter {spec.name!r}: not an m3cvcav node ({ours}) nor a "
                                 "filter of the FFmpeg that PyAV bundles (a system ffmpeg may have more, e.g. GPL "
                                 "builds' eq; av.filter.filters_available lists these): use another filter")
        self.specs = specs
        self._graph: av.filter.Graph | None = None
        self._index = 0

    def configure(self, info: VideoInfo) -> VideoInfo:
        """Frame rate changes are known from the filters; the frame size is read from the first output frame."""
        for spec in self.specs:
            if spec.name in ("fps", "framerate"):
                positional, named = spec.options()
                rate = named.get("fps") or (positional[0] if positional else "25")
                try:
                    fps = Fraction(rate)
                except ValueError:
                    raise UsageError(f"{spec.name}: give the frame rate as a number, e.g. fps=10") from None
                info = info.with_(fps=fps, time_base=1 / fps, frame_count=None)
        return info

    def _build(self, frame: Frame) -> None:
        height, width = frame.image.shape[:2]
        graph = av.filter.Graph()
        src = prev = graph.add_buffer(width=width, height=height, format="rgb24", time_base=frame.time_base)
        for spec in self.specs:
            try:
                ctx = graph.add(spec.name, spec.args or None)
            except (av.error.FFmpegError, ValueError) as err:
                raise UsageError(f"FFmpeg filter {spec.name}={spec.args}: {err}") from None
            prev.link_to(ctx)
            prev = ctx
        sink = graph.add("buffersink")
        prev.link_to(sink)
        try:
            graph.configure()
        except (av.error.FFmpegError, ValueError) as err:
            raise UsageError(f"FFmpeg filter graph {','.join(s.name for s in self.specs)}: {err}") from None
        self._graph, self._src, self._sink = graph, src, sink

    @staticmethod
    def output_info(info: VideoInfo, first: Frame) -> VideoInfo:
        """``configure``'s description completed with the size of the first frame out."""
        height, width = first.image.shape[:2]
        return info.with_(width=width, height=height)

    def process(self, frame: Frame) -> Iterator[Frame]:
        if not self.specs:
            return iter((frame,))
        if self._graph is None:
            self._build(frame)
        vf = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        vf.pts, vf.time_base = frame.pts, frame.time_base
        self._src.push(vf)
        return self._pull()

    def flush(self) -> Iterator[Frame]:
        if self._graph is None:
            return iter(())
        self._src.push(None)
        return self._pull()

    def _pull(self) -> Iterator[Frame]:
        while True:
            try:
                out = self._sink.pull()
            except (BlockingIOError, av.error.EOFError):
                return
            image = out.to_ndarray(format="rgb24")
            yield Frame(np.ascontiguousarray(image), int(out.pts), Fraction(out.time_base), self._index)
            self._index += 1
