"""Inspection of an m3cvc stream in any container: the stable report of docs/bitstream.md §9.

``video_bytes`` is the one definition of "video bytes" that the encode log, the progress line and ``Result`` use too:
the bytes of the video track's packets, what ``ffprobe -show_packets`` sums for it (in Matroska every segment packet
and the 1-byte frame markers; in .m3cv the packet payloads). The sequence header (in the track header) is not in it.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .containers import open_reader
from .containers.base import decode_packet
from .framing import iter_units
from .units import (BASE, FRAME_PTS, GEN_PARAMS, KEYFRAME_TOKENS, PADDING, SEGMENT_HEADER, SEQUENCE_HEADER, TEXT,
                    CorruptSegment, token_descriptor_size)

LAYERS = ("headers", "framing", "base", "tokens", "text", "params", "timestamps", "padding", "unknown")
_LAYER_OF = {SEQUENCE_HEADER: "headers", SEGMENT_HEADER: "headers", BASE: "base", TEXT: "text", GEN_PARAMS: "params",
             FRAME_PTS: "timestamps", PADDING: "padding"}


def unit_layers(data: bytes) -> dict[str, int]:
    """Bytes per layer of a run of units (raises BitstreamError when they do not parse)."""
    layers = dict.fromkeys(LAYERS, 0)
    for unit in iter_units(data):
        n = len(unit.payload)
        layers["framing"] += unit.size - n
        if unit.unit_type == KEYFRAME_TOKENS:
            head = token_descriptor_size(unit.payload)
            layers["headers"] += head
            layers["tokens"] += n - head
        else:
            layers[_LAYER_OF.get(unit.unit_type, "unknown")] += n
    return layers


def probe(src: str | Path) -> dict:
    """The probe report of ``src`` (see docs/bitstream.md §9 for every key)."""
    with open_reader(src) as reader:
        h = reader.header
        layers = unit_layers(reader.header_unit)
        segments: list[dict] = []
        first_pts = end = None
        frame_count = corrupt = 0
        for packet in reader.packets():
            seg = packet if isinstance(packet, CorruptSegment) else decode_packet(packet)
            if isinstance(seg, CorruptSegment):
                corrupt += 1
                frame_count += seg.frame_count
                segments.append({"index": seg.index, "first_pts": seg.first_pts, "frame_count": seg.frame_count,
                                 "corrupt": seg.reason})
                continue
            seg_layers = unit_layers(packet)
            for k, v in seg_layers.items():
                layers[k] += v
            pts = seg.pts(h)
            first_pts = pts[0] if first_pts is None else min(first_pts, pts[0])
            end = pts[-1] if end is None else max(end, pts[-1])
            frame_count += seg.header.frame_count
            segments.append({
                "index": seg.header.index, "first_pts": seg.header.first_pts,
                "frame_count": seg.header.frame_count, "keyframe_pos": seg.header.keyframe_pos,
                "flags": seg.header.flags,
                "mode": seg.params.mode if seg.params else ("it2v" if seg.base or seg.tokens else "tt2v"),
                "base_size": f"{seg.base.size[0]}x{seg.base.size[1]}" if seg.base and seg.base.units else None,
                "base_complete": seg.base.complete if seg.base else None,
                "layers": seg_layers, "frame_text": seg.frame_text, "clip_text": seg.clip_text})
        tags = dict(reader.tags)
        container, has_audio = reader.container, reader.has_audio
        video_bytes, tracks = reader.video_bytes, dict(reader.track_bytes)
    duration = (end - first_pts) * h.time_base + 1 / h.fps if first_pts is not None else Fraction(0)
    file_size = Path(src).stat().st_size
    total = sum(layers.values())
    return {
        "container": container, "file_size": file_size, "codec": "m3cvc",
        "version": f"{h.version[0]}.{h.version[1]}", "width": h.width, "height": h.height,
        "frame_rate": f"{h.fps.numerator}/{h.fps.denominator}",
        "time_base": f"{h.time_base.numerator}/{h.time_base.denominator}", "profile_id": h.profile_id,
        "models": [{"id": m.model_id, "sha256": m.sha256.hex()} for m in h.models],
        "frame_count": frame_count, "duration_s": round(float(duration), 6),
        "bitrate_bps": round(8 * file_size / duration) if duration else 0,
        "video_bytes": video_bytes, "video_bitrate_bps": round(8 * video_bytes / duration) if duration else 0,
        "audio_bytes": tracks.get("audio", 0), "subtitle_bytes": tracks.get("subtitle", 0),
        "unit_bytes": total, "corrupt_segments": corrupt, "audio": has_audio, "layers": layers, "segments": segments,
        "tags": tags}


def format_report(report: dict) -> str:
    """The human-readable probe table."""
    r = report
    overhead = r["file_size"] - r["video_bytes"] - r["audio_bytes"] - r["subtitle_bytes"]
    lines = [
        f"container   {r['container']} ({r['file_size']} bytes)",
        f"codec       {r['codec']} {r['version']}, profile {r['profile_id']}, models "
        + (", ".join(f"{m['id']}:{m['sha256'][:12]}" for m in r["models"]) or "none"),
        f"video       {r['width']}x{r['height']} @ {r['frame_rate']} fps, {r['frame_count']} frames, "
        f"{r['duration_s']:.3f} s",
        f"bitrate     video {r['video_bitrate_bps'] / 1000:.2f} kbit/s ({r['video_bytes']} bytes), total "
        f"{r['bitrate_bps'] / 1000:.2f} kbit/s ({r['file_size']} bytes: audio {r['audio_bytes']}, subtitles "
        f"{r['subtitle_bytes']}, container {overhead})",
        f"units       {r['unit_bytes']} bytes (segments and the sequence header): "
        + ", ".join(f"{k} {v}" for k, v in r["layers"].items() if v),
        f"segments    {len(r['segments'])} ({r['corrupt_segments']} corrupt)",
        f"{'index':>6} {'first_pts':>10} {'frames':>7} {'base':>9} {'bytes':>7} {'text':>6} {'other':>6}  descriptions",
    ]
    for s in r["segments"]:
        if "corrupt" in s:
            lines.append(f"{s['index']:>6} {s['first_pts']!s:>10} {s['frame_count']:>7}  CORRUPT: {s['corrupt']}")
            continue
        lay = s["layers"]
        other = sum(lay.values()) - lay["base"] - lay["text"]
        text = " | ".join(t for t in (s["frame_text"], s["clip_text"]) if t)
        lines.append(f"{s['index']:>6} {s['first_pts']:>10} {s['frame_count']:>7} {s['base_size'] or '-':>9} "
                     f"{lay['base']:>7} {lay['text']:>6} {other:>6}  {text}")
    if r["tags"]:
        lines.append("tags        " + ", ".join(f"{k}={v}" for k, v in r["tags"].items()))
    return "\n".join(lines)


__all__ = ["probe", "format_report", "unit_layers", "LAYERS"]
