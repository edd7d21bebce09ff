"""The codec core, shaped like libavcodec's: a :class:`VideoEncoder` you send frames to and receive coded segments
from (select → tokenize → describe → base), and a :class:`VideoDecoder` you send segments to and receive frames from
(generate). The graphs (``encoder.Encoder``, ``decoder.Decoder``), the chunked encoder's workers and the parallel
decoder's workers all code through them; rate control lives in the encoder alone."""
from __future__ import annotations

from m3cvcav.bitstream.units import CorruptSegment, Segment, SequenceHeader
from m3cvcav.engines.preflight import check_profile
from m3cvcav.engines.registry import Engines, stream_profile

from .conditioning import stream_version
from .generate import Generate
from .items import ClipSegment, Frame, VideoInfo
from .node import Chain
from .pipeline import Plan
from .ratecontrol import RateControl


class VideoEncoder:
    """``open(info)`` once the first frame's size is known, then ``send(frame)`` for each frame and ``flush()`` at
    the end; both return the segments finished so far (``ClipSegment`` with its serialised ``packet``), in order.
    ``plan`` carries our nodes' options, ``rate`` the -b:v / -q state."""

    def __init__(self, engines: Engines, *, plan: Plan | None = None, rate: RateControl | None = None,
                 mode: str = "it2v"):
        plan = plan or Plan()
        self.engines, self.mode = engines, mode
        self.rate = rate or RateControl()
        self.chain = Chain([plan.make("select", engines=engines, rate=self.rate),
                            plan.make("tokenize", engines=engines, mode=mode),
                            plan.make("describe", engines=engines),
                            plan.make("base", engines=engines, rate=self.rate, mode=mode)])
        self.info: VideoInfo | None = None

    def open(self, info: VideoInfo) -> SequenceHeader:
        """Configure the nodes (which builds their engines) for ``info``; returns the stream's sequence header."""
        self.info = self.chain.configure(info)
        return self.info.header(self.engines.profile_id, self.engines.profile.model_refs(),
                                stream_version(self.engines, self.mode))

    def send(self, frame: Frame) -> list[ClipSegment]:
        return self.chain.push(frame)

    def flush(self) -> list[ClipSegment]:
        return self.chain.flush()


class VideoDecoder:
    """``open(info)``, then ``send(segment)`` for each segment (or ``CorruptSegment``) in stream order and ``flush()``
    at the end; both return the frames finished so far. A segment's frames come out when the next segment is sent
    (its keyframe is what the clip generator moves towards). ``corrupt`` counts the segments concealed."""

    def __init__(self, engines: Engines, *, mode: str = "it2v", enhance: bool = True):
        self.generate = Generate(engines=engines, mode=mode, enhance=enhance)

    def open(self, info: VideoInfo) -> VideoInfo:
        return self.generate.configure(info)

    def send(self, segment: Segment | CorruptSegment) -> list[Frame]:
        return list(self.generate.process(segment))

    def flush(self) -> list[Frame]:
        return list(self.generate.flush())

    @property
    def corrupt(self) -> int:
        return self.generate.corrupt


def stream_engines(header: SequenceHeader, tags: dict[str, str], *, profile: str | None = None, engine: str = "auto",
                   offload: bool = False) -> Engines:
    """The engines that decode a stream, checked before any weights load: the profile its tags or profile id name (or
    ``profile``), that profile's packages and files, and the model ids the stream names (another profile's stream
    fails here)."""
    engines = Engines(stream_profile(profile, tags, header), engine, offload)
    check_profile(engines.profile, engines.profile.recorded_roles())
    engines.profile.roles_for(header.models)
    return engines


def open_decoder(header: SequenceHeader, tags: dict[str, str], *, profile: str | None = None, engine: str = "auto",
                 mode: str = "it2v", offload: bool = False, enhance: bool = True) -> tuple[Engines, VideoDecoder]:
    """The engines (:func:`stream_engines`) and an opened :class:`VideoDecoder` for a stream; once the engines are
    built, the installed weights are checked against the stream's."""
    engines = stream_engines(header, tags, profile=profile, engine=engine, offload=offload)
    codec = VideoDecoder(engines, mode=mode, enhance=enhance)
    codec.open(VideoInfo.from_header(header))
    engines.profile.verify(header.models)  # after open: reuses the engines it built
    return engines, codec
