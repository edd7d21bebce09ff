"""GStreamer elements for m3cvc video, loaded by GStreamer's Python plugin loader (gst-python) from the ``python/``
folder of a GST_PLUGIN_PATH entry (``eval "$(python3 -m m3cvcav gst env)"`` sets it; docs/media-frameworks.md):

- ``m3cvcdec`` (rank primary, Codec/Decoder/Video): the m3cvc track of ``matroskademux`` (``video/x-unknown,
  fourcc=M3CV``: GStreamer has no name for the codec) or of ``m3cvparse`` (``video/x-m3cvc`` with the sequence header
  as ``codec_data``) in, raw video out (I420, Y444 for odd sizes; BT.709 limited range as the stream says) with the
  stream's timestamps. Matroska's caps carry no CodecPrivate, so the sequence header is read from the file the
  pipeline plays (the URI query that ``filesrc`` answers). Decodes through m3cvcav's public decoder API
  (``m3cvcav.filters.access.PacketDecoder``): the CLI's frames. A flush (seek) drops the segment held; the demuxer
  restarts at a segment (a key frame). Errors are one-line element errors.
- ``m3cvparse`` (rank primary, Codec/Demuxer) and the ``application/x-m3cv`` typefinder: the bare ``.m3cv``
  container, read in pull mode (a file) with m3cvcav's own reader; one buffer per segment packet at its pts.

The loader runs the system Python (``/usr/bin/python3``): m3cvcav and its packages are found through
``M3CVCAV_SITE`` (site-packages folders, ``os.pathsep``-separated, put in front of the system's; .pth files apply),
which ``python3 -m m3cvcav gst env`` prints for the Python m3cvcav is installed in. m3cvcav itself is imported when a
stream is decoded, not when GStreamer scans its plugins.
"""
from __future__ import annotations

import io
import os
import site
import sys
from urllib.parse import unquote, urlparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GObject, Gst, GstVideo  # noqa: E402

Gst.init(None)

M3CVC_CAPS = "video/x-m3cvc"  # an m3cvc elementary stream (segment packets), codec_data = the sequence header unit
MKV_CAPS = "video/x-unknown, fourcc=(string)M3CV"  # what matroskademux makes of V_MS/VFW/FOURCC with FourCC M3CV
M3CV_CAPS = "application/x-m3cv"  # the bare .m3cv container
RAW_CAPS = ("video/x-raw, format=(string){ I420, Y444 }, width=(int)[ 1, 2147483647 ], "
            "height=(int)[ 1, 2147483647 ], framerate=(fraction)[ 0/1, 2147483647/1 ]")
GST_FORMAT = {"yuv420p": "I420", "yuv444p": "Y444"}


def _add_sites() -> None:
    """Put the folders of ``M3CVCAV_SITE`` in front of the system Python's path (with their .pth files)."""
    for folder in reversed([d for d in os.environ.get("M3CVCAV_SITE", "").split(os.pathsep) if d]):
        if folder in sys.path or not os.path.isdir(folder):
            continue
        before = list(sys.path)
        site.addsitedir(folder)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + before


def _access():
    """m3cvcav's decoding for hosts (imported on first use: numpy, PyAV and the engines are heavy)."""
    _add_sites()
    try:
        from m3cvcav.filters import access
    except ImportError as err:
        raise RuntimeError(
            f"GStreamer's Python ({sys.version.split()[0]}) cannot import m3cvcav ({err}): run "
            "eval \"$(python3 -m m3cvcav gst env)\" with the python3 m3cvcav is installed in, then try again") from None
    return access


def _round4(n: int) -> int:
    return (n + 3) & ~3


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _error(element: Gst.Element, err: BaseException, code=Gst.StreamError.DECODE) -> None:
    """Post ``err`` as one element error line (``m3cvcav: ...``), its kind as the debug string."""
    element.message_full(Gst.MessageType.ERROR, Gst.StreamError.quark(), code, f"m3cvcav: {_one_line(err)}",
                         type(err).__name__, __file__, "m3cvcav", 0)


def _file_of(pad: Gst.Pad) -> str | None:
    """The local file upstream of ``pad`` plays (``filesrc`` answers the URI query), or None."""
    query = Gst.Query.new_uri()
    if not pad.peer_query(query):
        return None
    uri = query.parse_uri()
    parsed = urlparse(uri or "")
    return unquote(parsed.path) if parsed.scheme == "file" else None


class M3cvcDec(Gst.Element):
    """m3cvc → raw video (see the module's docstring)."""

    GST_PLUGIN_NAME = "m3cvcdec"
    __gtype_name__ = "M3cvcDec"
    __gstmetadata__ = ("M3-CVC video decoder", "Codec/Decoder/Video",
                       "Decodes m3cvc (M3-CVC / CMVC generative video) with m3cvcav's decoder", "m3cvcav")
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS,
                            Gst.Caps.from_string(f"{M3CVC_CAPS}; {MKV_CAPS}")),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(RAW_CAPS)),
    )
    __gproperties__ = {
        "profile": (str, "profile", "m3cvcav profile that decodes (default: the one the stream names)", None,
                    GObject.ParamFlags.READWRITE),
        "enhance": (bool, "enhance", "the learned enhancer (false: bicubic upscaling, the CLI's -enhance none)", True,
                    GObject.ParamFlags.READWRITE),
    }

    def __init__(self):
        super().__init__()
        self.profile: str | None = None
        self.enhance = True
        self.sinkpad = Gst.Pad.new_from_template(self.get_pad_template("sink"), "sink")
        self.sinkpad.set_chain_function_full(self._chain, None)
        self.sinkpad.set_event_function_full(self._sink_event, None)
        self.add_pad(self.sinkpad)
        self.srcpad = Gst.Pad.new_from_template(self.get_pad_template("src"), "src")
        self.srcpad.use_fixed_caps()
        self.add_pad(self.srcpad)
        self.decoder = None
        self._color = None
        self._format = "yuv420p"
        self._duration = Gst.CLOCK_TIME_NONE
        self._discont = True
        self._failed = False  # the stream could not be opened: said once, then refused quietly

    def do_get_property(self, prop):
        return self.profile if prop.name == "profile" else self.enhance

    def do_set_property(self, prop, value):
        if prop.name == "profile":
            self.profile = value or None
        else:
            self.enhance = bool(value)

    # ---- setup
    def _open(self, caps: Gst.Caps) -> bool:
        if self._failed:
            return False
        structure = caps.get_structure(0)
        try:
            access = _access()
            header, tags = None, {}
            if structure.has_field("codec_data"):
                data = structure.get_value("codec_data")
                header = data.extract_dup(0, data.get_size())
                if structure.get_name() != M3CVC_CAPS:  # a Matroska CodecPrivate: BITMAPINFOHEADER first
                    header = header[40:]
            else:
                path = _file_of(self.sinkpad)
                if path is None:
                    raise RuntimeError("the Matroska m3cvc track's caps carry no sequence header and the pipeline "
                                       "does not play a local file to read it from: play a file (filesrc, "
                                       "file:// URI), or the .m3cv container (m3cvparse)")
                from m3cvcav.bitstream.containers import open_reader

                with open_reader(path) as reader:
                    header, tags = reader.header, dict(reader.tags)
            self.decoder = access.PacketDecoder(header, tags, profile=self.profile, enhance=self.enhance)
            info = self.decoder.info
            self._access = access
            self._color = info.color
            self._format = access.yuv_format(info.width, info.height)
            self._duration = Gst.util_uint64_scale(Gst.SECOND, info.fps.denominator, info.fps.numerator)
            caps = self._caps(info)
        except Exception as err:  # noqa: BLE001  (any failure is one element error line)
            self._failed = True
            _error(self, err, Gst.StreamError.FORMAT)
            return False
        return self.srcpad.push_event(Gst.Event.new_caps(caps))

    def _caps(self, info) -> Gst.Caps:
        color = self._access.output_color(info.color)
        colorimetry = GstVideo.VideoColorimetry()
        colorimetry.range = GstVideo.VideoColorRange(1 if color.full_range else 2)  # 0_255, 16_235
        colorimetry.matrix = GstVideo.VideoColorMatrix.from_iso(color.matrix)
        colorimetry.transfer = GstVideo.VideoTransferFunction.from_iso(color.transfer)
        colorimetry.primaries = GstVideo.VideoColorPrimaries.from_iso(color.primaries)
        return Gst.Caps.from_string(
            f"video/x-raw, format=(string){GST_FORMAT[self._format]}, width=(int){info.width}, "
            f"height=(int){info.height}, framerate=(fraction){info.fps.numerator}/{info.fps.denominator}, "
            f"pixel-aspect-ratio=(fraction)1/1, interlace-mode=(string)progressive, "
            f"colorimetry=(string){colorimetry.to_string()}")

    # ---- data
    def _sink_event(self, pad, parent, event) -> bool:
        kind = event.type
        if kind == Gst.EventType.CAPS:
            return self._open(event.parse_caps())
        if kind == Gst.EventType.FLUSH_STOP and self.decoder is not None:
            self.decoder.reset()  # a seek: the demuxer goes on from a segment start
            self._discont = True
        elif kind == Gst.EventType.EOS and self.decoder is not None:
            try:
                self._push(self.decoder.flush())
            except Exception as err:  # noqa: BLE001
                _error(self, err)
                return False
        return Gst.Pad.event_default(pad, parent, event)

    def _chain(self, pad, parent, buffer) -> Gst.FlowReturn:
        if self.decoder is None:
            if not self._failed:
                self._failed = True
                _error(self, RuntimeError("no stream description (caps) before the first packet"),
                       Gst.StreamError.FORMAT)
            return Gst.FlowReturn.NOT_NEGOTIATED
        data = buffer.extract_dup(0, buffer.get_size())
        if buffer.has_flags(Gst.BufferFlags.CORRUPTED) and data.startswith(CORRUPT):
            data = parse_corrupt(data)
        try:
            return self._push(self.decoder.send(data))
        except Exception as err:  # noqa: BLE001
            _error(self, err)
            return Gst.FlowReturn.ERROR

    def _push(self, frames) -> Gst.FlowReturn:
        ret = Gst.FlowReturn.OK
        for frame in frames:
            out = Gst.Buffer.new_wrapped(self._layout(frame))
            pts = frame.pts * frame.time_base
            out.pts = max(0, pts.numerator * Gst.SECOND // pts.denominator)
            out.duration = self._duration
            if self._discont:
                out.set_flags(Gst.BufferFlags.DISCONT)
                self._discont = False
            ret = self.srcpad.push(out)
            if ret != Gst.FlowReturn.OK:
                break
        return ret

    def _layout(self, frame) -> bytes:
        """The frame's planes in GStreamer's default layout (each row padded to 4 bytes)."""
        import numpy as np

        parts = []
        for plane in self._access.to_yuv(frame, self._color, self._format):
            rows, width = plane.shape
            stride = _round4(width)
            if stride != width:
                padded = np.zeros((rows, stride), np.uint8)
                padded[:, :width] = plane
                plane = padded
            parts.append(np.ascontiguousarray(plane).tobytes())
        return b"".join(parts)


class _Pull(io.RawIOBase):
    """A file-like object over a pad in pull mode (``pull_range``), for m3cvcav's container reader."""

    def __init__(self, pad: Gst.Pad):
        self.pad, self.pos = pad, 0
        self.flow = Gst.FlowReturn.OK

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        ret, buffer = self.pad.pull_range(self.pos, len(b))
        if ret == Gst.FlowReturn.EOS:
            return 0
        if ret != Gst.FlowReturn.OK:
            self.flow = ret
            raise _Flushing(ret)
        data = buffer.extract_dup(0, buffer.get_size())
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


class _Flushing(Exception):
    """Pulling stopped (flushing, shutting down): the task pauses, nothing is wrong with the stream."""


class M3cvParse(Gst.Element):
    """The bare .m3cv container → m3cvc segment packets (see the module's docstring)."""

    GST_PLUGIN_NAME = "m3cvparse"
    __gtype_name__ = "M3cvParse"
    __gstmetadata__ = ("M3-CVC .m3cv demuxer", "Codec/Demuxer",
                       "Reads the bare .m3cv container of m3cvc video with m3cvcav's reader", "m3cvcav")
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(M3CV_CAPS)),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, Gst.Caps.from_string(M3CVC_CAPS)),
    )

    def __init__(self):
        super().__init__()
        self.sinkpad = Gst.Pad.new_from_template(self.get_pad_template("sink"), "sink")
        self.sinkpad.set_activate_function_full(self._activate, None)
        self.sinkpad.set_activatemode_function_full(self._activate_mode, None)
        self.add_pad(self.sinkpad)
        self.srcpad = Gst.Pad.new_from_template(self.get_pad_template("src"), "src")
        self.srcpad.use_fixed_caps()
        self.add_pad(self.srcpad)
        self._packets = None

    def _activate(self, pad, parent) -> bool:
        query = Gst.Query.new_scheduling()
        if pad.peer_query(query) and query.has_scheduling_mode_with_flags(Gst.PadMode.PULL,
                                                                          Gst.SchedulingFlags.SEEKABLE):
            return pad.activate_mode(Gst.PadMode.PULL, True)
        _error(self, RuntimeError("m3cvparse reads .m3cv from a file (a source that can pull): use filesrc"),
               Gst.StreamError.FAILED)
        return False

    def _activate_mode(self, pad, parent, mode, active) -> bool:
        if mode != Gst.PadMode.PULL:
            return False
        if active:
            self._packets = None
            return self.srcpad.start_task(self._loop)
        return self.srcpad.stop_task()

    def _start(self):
        _access()  # m3cvcav importable, or the one-line reason
        from m3cvcav.bitstream.containers.m3cv import M3cvReader
        from m3cvcav.bitstream.units import peek_segment_header

        reader = M3cvReader(_Pull(self.sinkpad))
        header = reader.header
        self._tb = header.time_base
        self._peek = peek_segment_header
        caps = Gst.Caps.from_string(f"{M3CVC_CAPS}, width=(int){header.width}, height=(int){header.height}, "
                                    f"framerate=(fraction){header.fps.numerator}/{header.fps.denominator}")
        caps.set_value("codec_data", Gst.Buffer.new_wrapped(reader.header_unit))
        self.srcpad.push_event(Gst.Event.new_stream_start("m3cv"))
        self.srcpad.push_event(Gst.Event.new_caps(caps))
        segment = Gst.Segment()
        segment.init(Gst.Format.TIME)
        self.srcpad.push_event(Gst.Event.new_segment(segment))
        return reader.packets()

    def _loop(self, *_args) -> None:
        try:
            if self._packets is None:
                self._packets = self._start()
            packet = next(self._packets, None)
        except _Flushing:
            self.srcpad.pause_task()
            return
        except Exception as err:  # noqa: BLE001
            _error(self, err)
            self.srcpad.push_event(Gst.Event.new_eos())
            self.srcpad.pause_task()
            return
        if packet is None:
            self.srcpad.push_event(Gst.Event.new_eos())
            self.srcpad.pause_task()
            return
        if isinstance(packet, bytes):
            buffer, first_pts = Gst.Buffer.new_wrapped(packet), getattr(self._peek(packet), "first_pts", None)
        else:  # a damaged packet, as the reader reports it: the decoder conceals it as the CLI does
            buffer, first_pts = Gst.Buffer.new_wrapped(corrupt_marker(packet)), packet.first_pts
            buffer.set_flags(Gst.BufferFlags.CORRUPTED)
        if first_pts is not None:
            pts = first_pts * self._tb
            buffer.pts = max(0, pts.numerator * Gst.SECOND // pts.denominator)
        ret = self.srcpad.push(buffer)
        if ret == Gst.FlowReturn.OK:
            return
        if ret not in (Gst.FlowReturn.FLUSHING, Gst.FlowReturn.EOS):
            _error(self, RuntimeError(f"streaming stopped: {Gst.flow_get_name(ret)}"), Gst.StreamError.FAILED)
            self.srcpad.push_event(Gst.Event.new_eos())
        self.srcpad.pause_task()


CORRUPT = b"M3CV-CORRUPT "  # m3cvparse -> m3cvcdec only: a segment the .m3cv reader found damaged


def corrupt_marker(segment) -> bytes:
    """A damaged segment as m3cvparse hands it on (a CORRUPTED buffer): what the reader could still tell."""
    first = -1 if segment.first_pts is None else segment.first_pts
    return CORRUPT + f"{segment.index} {first} {segment.frame_count} {segment.reason}".encode()


def parse_corrupt(data: bytes):
    """The CorruptSegment of a :func:`corrupt_marker` buffer."""
    from m3cvcav.bitstream.units import CorruptSegment

    index, first, count, reason = data[len(CORRUPT):].decode(errors="replace").split(" ", 3)
    return CorruptSegment(int(index), None if int(first) < 0 else int(first), int(count), reason)


def _peek(find, size: int) -> bytes | None:
    """The first ``size`` bytes of the stream being typefound. GI hides gst_type_find_peek's size argument (it is
    the returned array's length), so the C function is called through ctypes on the struct's pointer."""
    import ctypes

    global _GST_PEEK
    if _GST_PEEK is None:
        lib = ctypes.CDLL("libgstreamer-1.0.so.0")
        _GST_PEEK = lib.gst_type_find_peek
        _GST_PEEK.restype = ctypes.POINTER(ctypes.c_uint8)
        _GST_PEEK.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint]
    pointer = ctypes.c_void_p.from_address(id(find) + object.__basicsize__).value  # PyGPointer: HEAD, pointer
    data = _GST_PEEK(pointer, 0, size)
    return ctypes.string_at(data, size) if data else None


_GST_PEEK = None


def _typefind(find, *_data) -> None:
    try:
        head = _peek(find, 4)
    except (OSError, AttributeError, ValueError):
        return
    if head == b"M3CV":
        find.suggest(Gst.TypeFindProbability.MAXIMUM, Gst.Caps.from_string(M3CV_CAPS))


def _register_more() -> None:
    """m3cvparse and the .m3cv typefinder, registered with the Python loader's plugin (the loader itself registers
    only ``__gstelementfactory__``)."""
    plugin = getattr(Gst, "__plugin__", None) or Gst.Registry.get().find_plugin("python")
    Gst.Element.register(plugin, "m3cvparse", Gst.Rank.PRIMARY, M3cvParse)
    Gst.type_find_register(plugin, M3CV_CAPS, Gst.Rank.PRIMARY, _typefind, "m3cv",
                           Gst.Caps.from_string(M3CV_CAPS), None)


GObject.type_register(M3cvcDec)
GObject.type_register(M3cvParse)
_register_more()
__gstelementfactory__ = ("m3cvcdec", Gst.Rank.PRIMARY, M3cvcDec)
