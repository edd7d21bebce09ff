"""Color metadata between PyAV frames and H.273 code points (``ColorDescription``), and YUV↔RGB conversion."""
from __future__ import annotations

import av

from m3cvcav.bitstream.units import ColorDescription

UNSPECIFIED = 2
# H.273 MatrixCoefficients -> swscale colorspace
_SWS = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}


def from_frame(frame: av.VideoFrame) -> ColorDescription:
    """The frame's color description; unspecified values follow FFmpeg's guess (BT.709 from 720 lines, else BT.601)."""
    hd = frame.height >= 720
    default = 1 if hd else 6
    matrix = int(frame.colorspace) if int(frame.colorspace) not in (0, UNSPECIFIED) else default
    primaries = int(frame.color_primaries) if int(frame.color_primaries) not in (0, UNSPECIFIED) else (1 if hd else 6)
    transfer = int(frame.color_trc) if int(frame.color_trc) not in (0, UNSPECIFIED) else (1 if hd else 6)
    name = frame.format.name
    rgb_like = name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "gray", "pal", "ya", "monob", "monow"))
    full = int(frame.color_range) == 2 or name.startswith("yuvj") or rgb_like
    if rgb_like:
        matrix = 0 if name.startswith(("rgb", "bgr", "gbr", "argb", "abgr")) else matrix
    return ColorDescription(primaries, transfer, matrix, full)


def to_rgb(frame: av.VideoFrame, color: ColorDescription):
    """(H, W, 3) uint8 full-range RGB from any pixel format (10-bit, 4:4:4, ...), with the stream's matrix and range."""
    if color.matrix == 0:  # already RGB/gray: no matrix to undo
        return frame.to_ndarray(format="rgb24")
    out = frame.reformat(format="rgb24", src_colorspace=_SWS.get(color.matrix, "ITU709"),
                         src_color_range="JPEG" if color.full_range else "MPEG", dst_color_range="JPEG",
                         interpolation="BICUBIC")
    return out.to_ndarray()


def output_color(color: ColorDescription) -> ColorDescription:
    """The color description decoded video is written with: the stream's, the BT.709 matrix where it names none (an
    RGB source's)."""
    return ColorDescription(color.primaries, color.transfer, color.matrix or 1, color.full_range)


def from_rgb(image, pix_fmt: str, color: ColorDescription) -> av.VideoFrame:
    """A VideoFrame in ``pix_fmt`` made from RGB with the color description's matrix and range, tagged with it."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    if pix_fmt.startswith(("rgb", "bgr", "gbr")) and not pix_fmt.startswith("gbrp"):
        return frame.reformat(format=pix_fmt)
    matrix = color.matrix if color.matrix in _SWS else 1
    out = frame.reformat(format=pix_fmt, dst_colorspace=_SWS[matrix],
                         dst_color_range="JPEG" if color.full_range else "MPEG",
                         dst_color_primaries=color.primaries, dst_color_trc=color.transfer,
                         interpolation="BICUBIC")
    return out
