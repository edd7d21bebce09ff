"""The base layer's codec: AV1, encoded with libsvtav1 and decoded with libdav1d, both inside PyAV's wheel (no other
dependency). A segment's base is one closed AV1 sequence: its first frame a key frame that carries the AV1 sequence
header, then one temporal unit per frame, in low-overhead OBU format without temporal delimiters (as Matroska and
MP4 store AV1), so every segment decodes alone.

Pictures go into the base in BT.709 limited-range 4:2:0 (signalled in the AV1 colour config) and come back as RGB at
the coded size; the decoder's upscale to the display size is the profile's enhancement (``generate``)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction

import av
import cv2
import numpy as np

from m3cvcav.core.errors import BitstreamError

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner on stderr unless told to keep to errors

ENCODER, DECODER = "libsvtav1", "libdav1d"
TEMPORAL_DELIMITER = b"\x12\x00"  # OBU type 2 with obu_has_size_field, size 0
MIN_SIDE = 16  # smallest coded width or height (SVT-AV1 pads below 64; below 16 nothing is left to see)
CRF_RANGE = (1.0, 63.0)  # SVT-AV1's CRF scale, in quarter steps
DEFAULT_PRESET = 10
_COLOUR = {"primaries": 1, "transfer": 1, "matrix": 1}  # BT.709, limited range


def even(value: float, limit: int) -> int:
    """``value`` rounded to an even integer within MIN_SIDE..limit (an odd limit rounds down)."""
    top = max(2, limit - limit % 2)
    return int(min(top, max(min(MIN_SIDE, top), 2 * round(value / 2))))


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The even (width, height) of a picture ``scale`` times the display size."""
    return even(width * scale, width), even(height * scale, height)


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB picture at ``size`` (width, height): area averaging, which does not alias."""
    if image.shape[1::-1] == tuple(size):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def pictures(images: Iterable[np.ndarray], size: tuple[int, int]) -> list[av.VideoFrame]:
    """RGB images as the base codes them: area-scaled to ``size``, BT.709 limited-range 4:2:0 (made once, encoded
    as often as a rate search needs)."""
    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(downscale(image, size)), format="rgb24")
            .reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG") for image in images]


def rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded base picture as (h, w, 3) uint8 RGB, full range."""
    return frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray()


def _strip(packet: bytes) -> bytes:
    return packet[2:] if packet.startswith(TEMPORAL_DELIMITER) else packet


def encode(images: Iterable[np.ndarray | av.VideoFrame], size: tuple[int, int], fps: Fraction, crf: float,
           preset: int = DEFAULT_PRESET) -> list[bytes]:
    """One closed AV1 sequence of ``images`` (RGB at any size, area-scaled to ``size``, or ``pictures`` made for
    ``size``) at ``crf`` (quarter steps): a temporal unit per frame, the first a key frame, no other key frame."""
    images = list(images)
    cc = av.CodecContext.create(ENCODER, "w")
    cc.width, cc.height = size
    cc.pix_fmt = "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 1) / Fraction(fps), Fraction(fps)
    cc.color_range = 1  # MPEG (limited)
    cc.color_primaries, cc.color_trc, cc.colorspace = _COLOUR["primaries"], _COLOUR["transfer"], _COLOUR["matrix"]
    crf = min(CRF_RANGE[1], max(CRF_RANGE[0], round(crf * 4) / 4))
    cc.options = {"preset": str(preset), "svtav1-params": f"crf={crf:g}:keyint={len(images) + 1}:scd=0"}
    packets: list[bytes] = []
    for i, image in enumerate(images):
        frame = image if isinstance(image, av.VideoFrame) else pictures([image], size)[0]
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.NONE
        if i == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets += [_strip(bytes(p)) for p in cc.encode(frame)]
    packets += [_strip(bytes(p)) for p in cc.encode(None)]
    if len(packets) != len(images):
        raise RuntimeError(f"{ENCODER} returned {len(packets)} temporal units for {len(images)} frames")
    return packets


def decode(units: Sequence[bytes]) -> list[np.ndarray]:
    """The RGB pictures (coded size) of a segment's temporal units, the first a key frame; BitstreamError when
    libdav1d rejects them or returns another number of pictures."""
    cc = av.CodecContext.create(DECODER, "r")
    out: list[np.ndarray] = []
    try:
        for i, data in enumerate(units):
            packet = av.Packet(data)
            packet.pts = i
            out += [rgb(f) for f in cc.decode(packet)]
        out += [rgb(f) for f in cc.decode(None)]
    except av.error.FFmpegError as err:
        raise BitstreamError(f"the AV1 base does not decode ({err})") from None
    if len(out) != len(units):
        raise BitstreamError(f"the AV1 base gave {len(out)} pictures for {len(units)} temporal units")
    return out


def sequence_header_obu(unit: bytes) -> bytes:
    """The AV1 sequence header OBU at the start of a key frame's temporal unit (what av1C / extradata carry)."""
    pos = 0
    while pos < len(unit):
        header = unit[pos]
        obu_type, has_ext, has_size = (header >> 3) & 15, (header >> 2) & 1, (header >> 1) & 1
        start = pos
        pos += 1 + has_ext
        if not has_size:
            break
        size, shift = 0, 0
        while True:
            byte = unit[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if obu_type == 1:
            return unit[start:pos + size]
        pos += size
    raise BitstreamError("the base's first temporal unit carries no AV1 sequence header")


def upscale(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A base picture at the display ``size`` (width, height): bicubic, enhancement variant 0."""
    if picture.shape[1::-1] == tuple(size):
        return picture
    return cv2.resize(picture, size, interpolation=cv2.INTER_CUBIC)
