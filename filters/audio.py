"""audio: the graphs' audio, from the input's packets to the packets an output muxes. One decision for every output
(``choose``): the packets copied as they are when the output takes them and no option asks otherwise, else decoded,
resampled and encoded (``-c:a``, ``-b:a``, ``-ac``, ``-ar``); an :class:`AudioTrack` then gives the packets to mux.
Outputs take packets only, as libavformat's muxers do: the m3cvc stream's Matroska writer
(``bitstream.containers``) and the sink's PyAV container never encode.

The default for an m3cvc encode is Opus at 24 kbit/s, at most stereo (``AudioOptions.for_low_rate``): the video takes
a few kbit/s, so copying a source's 128-400 kbit/s AAC would make the audio 95-99 % of the file; Opus is the codec made
for low rates (at 24 kbit/s it keeps speech clear and music listenable, where AAC-LC falls apart), and Matroska and
WebM both carry it. ``-c:a copy`` keeps the source's packets; a source already in Opus at or below the default rate is
copied as it is. A decode's output copies what its container takes (``Sink``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from m3cvcav.core.errors import UsageError
from m3cvcav.core.log import get_logger

from .options import encoder

log = get_logger(__name__)

DEFAULT_CODEC = "libopus"
DEFAULT_BITRATE = 24_000
DEFAULT_MAX_CHANNELS = 2
OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
ENCODER_ALIASES = {"opus": "libopus", "mp3": "libmp3lame", "vorbis": "libvorbis"}


@dataclass(frozen=True)
class AudioOptions:
    """What to do with the audio: ``codec`` None (the default above), ``"copy"``, or an FFmpeg encoder name
    (libopus, aac, flac, libmp3lame, ...); ``bitrate`` in bit/s, ``channels``, ``sample_rate`` (None: the codec's
    choice from the source)."""

    codec: str | None = None
    bitrate: int | None = None
    channels: int | None = None
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        if self.codec is not None and self.codec != "copy":
            name = ENCODER_ALIASES.get(self.codec, self.codec)
            encoder(name, "audio", "-c:a", "libopus, aac, flac, or copy")
            object.__setattr__(self, "codec", name)
        for name, value, low in (("-b:a", self.bitrate, 500), ("-ac", self.channels, 1), ("-ar", self.sample_rate,
                                                                                              1000)):
            if value is not None and value < low:
                raise UsageError(f"{name} {value}: give a value of at least {low}")
        if self.codec == "copy" and (self.bitrate or self.channels or self.sample_rate):
            raise UsageError("-c:a copy keeps the packets as they are: -b:a/-ac/-ar need an encoder "
                             "(e.g. -c:a libopus)")

    @property
    def converts(self) -> bool:
        """Whether the user asked for anything but the source's packets (an encoder or a rate/channel change)."""
        return self.codec not in (None, "copy") or bool(self.bitrate or self.channels or self.sample_rate)

    def for_low_rate(self, source: av.codec.context.CodecContext) -> AudioOptions:
        """These options with the m3cvc default filled in: Opus 24 kbit/s, at most stereo (module docstring)."""
        if self.codec == "copy":
            return self
        if self.codec is None and not self.converts and source.name == "opus" \
                and 0 < (source.bit_rate or 0) <= DEFAULT_BITRATE:
            return AudioOptions("copy")
        channels = self.channels or min(DEFAULT_MAX_CHANNELS, max(1, source.channels))
        bitrate = self.bitrate or (DEFAULT_BITRATE if channels >= 2 else DEFAULT_BITRATE * 2 // 3)
        return AudioOptions(self.codec or DEFAULT_CODEC, bitrate, channels, self.sample_rate)


def configure_encoder(ctx: av.codec.context.CodecContext, source: av.codec.context.CodecContext,
                      options: AudioOptions) -> None:
    """Fill an unopened audio encoder context from the source and the options (rate, layout, format, bitrate)."""
    channels = options.channels or source.channels or 2
    rate = options.sample_rate or source.sample_rate or 48000
    supported = [r for r in (ctx.codec.audio_rates or ())]
    if supported and rate not in supported:
        if options.sample_rate:
            raise UsageError(f"-ar {rate}: {ctx.codec.name} takes {', '.join(map(str, supported))}")
        rate = min(supported, key=lambda r: (r < rate, abs(r - rate)))  # the nearest rate, higher ones first
    ctx.sample_rate = rate
    ctx.layout = {1: "mono", 2: "stereo"}[channels] if channels <= 2 else av.AudioLayout(channels).name
    formats = [f.name for f in (ctx.codec.audio_formats or ())]
    ctx.format = next((f for f in ("fltp", "flt", "s16", "s16p") if f in formats), formats[0] if formats else "s16")
    if options.bitrate:
        ctx.bit_rate = options.bitrate
    ctx.time_base = Fraction(1, rate)


class AudioConverter:
    """Decodes one stream's packets and encodes them with ``encoder`` (configured, opened here). Output packets have
    pts in 1/sample_rate from the first input frame's time on."""

    def __init__(self, source: av.audio.stream.AudioStream, encoder: av.codec.context.CodecContext):
        self.decoder = source.codec_context
        self.encoder = encoder
        if not encoder.is_open:
            encoder.open()
        self.resampler = av.AudioResampler(format=encoder.format.name, layout=encoder.layout.name,
                                           rate=encoder.sample_rate, frame_size=encoder.frame_size or None)
        self._next_pts: int | None = None

    def convert(self, packet: av.Packet | None) -> list[av.Packet]:
        """Encoded packets for one input packet (``None`` flushes decoder, resampler and encoder)."""
        if packet is not None and packet.size == 0:
            return []
        frames = [r for f in self.decoder.decode(packet) for r in self.resampler.resample(f)]
        if packet is None:
            frames += self.resampler.resample(None)
        out: list[av.Packet] = []
        rate = self.encoder.sample_rate
        for frame in frames:
            if self._next_pts is None:
                self._next_pts = round(frame.pts * frame.time_base * rate) if frame.pts is not None else 0
            frame.pts, frame.time_base = self._next_pts, Fraction(1, rate)
            self._next_pts += frame.samples
            out += self.encoder.encode(frame)
        if packet is None:
            out += self.encoder.encode(None)
        return [p for p in out if p.size]


def choose(source: av.codec.context.CodecContext, options: AudioOptions, *, takes: Callable[[str, bytes | None], bool],
           default: str | None, output: str) -> str | None:
    """The copy-or-encode decision of every output: ``"copy"`` when the output takes the source's packets as they are
    and no option asks for a conversion; else the encoder to use (``-c:a``, else the output's ``default``), or None
    when there is none (the audio is dropped, with a warning). ``takes(codec, config)`` says whether the output
    carries packets of ``codec`` (FFmpeg's canonical codec name: aac, opus, mp3, ...) with the codec configuration
    ``config`` (the source's extradata; None: an encoder's, made when it opens). ``-c:a copy`` into an output that
    cannot carry the source's packets, or an encoder it cannot carry, is a UsageError naming ``output``."""
    name = source.codec.canonical_name
    if not options.converts:
        if takes(name, bytes(source.extradata or b"")):
            return "copy"
        if options.codec == "copy":
            raise UsageError(f"-c:a copy: {output} cannot carry this {name} audio as it is; choose an encoder "
                             "with -c:a (e.g. libopus)")
    codec = options.codec or default
    if not codec or codec == "none":
        log.warning("audio (%s) dropped: %s has no audio codec", name, output)
        return None
    codec = ENCODER_ALIASES.get(codec, codec)  # FFmpeg's native Opus encoder is experimental: libopus
    if not takes(av.Codec(codec, "w").canonical_name, None):
        raise UsageError(f"-c:a {codec}: {output} cannot carry it")
    return codec


class AudioTrack:
    """One input audio stream on its way into an output: its packets as they are (``encoder`` None), or decoded,
    resampled and encoded by ``encoder`` (an unopened, unconfigured audio encoder context: configured from the
    source and ``options`` and opened here). ``codec`` is what the packets it gives are (the source's codec context,
    or the encoder's): what the output's track is made from."""

    def __init__(self, source: av.audio.stream.AudioStream, encoder: av.codec.context.CodecContext | None = None,
                 options: AudioOptions | None = None):
        self.source = source
        self.converter: AudioConverter | None = None
        if encoder is not None:
            configure_encoder(encoder, source.codec_context, options or AudioOptions())
            self.converter = AudioConverter(source, encoder)
            log.log(15, "audio: %s %d Hz %d channel(s) -> %s %d Hz %d channel(s) at %s bit/s",
                    source.codec_context.name, source.codec_context.sample_rate, source.codec_context.channels,
                    encoder.name, encoder.sample_rate, encoder.channels, encoder.bit_rate or "default")
        self.codec = source.codec_context if encoder is None else encoder

    @property
    def copy(self) -> bool:
        return self.converter is None

    def send(self, packet: av.Packet) -> list[av.Packet]:
        """The packets to mux for one input packet (none for a demuxer's empty flush packet, or a copied packet
        without a timestamp)."""
        if packet.size == 0:
            return []
        if self.converter is None:
            return [packet] if packet.pts is not None or packet.dts is not None else []
        return self.converter.convert(packet)

    def flush(self) -> list[av.Packet]:
        """What the encoder still holds, at the end."""
        return [] if self.converter is None else self.converter.convert(None)
