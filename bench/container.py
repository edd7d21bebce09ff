"""``python -m m3cvcav bench container [--json]``: container overhead (framing + headers) as a share of payload.

The stream is a 10 s, 24 fps clip at about 10 kbps with the segment structure of the lite profile: 512x288 keyframes
tokenised as (L, 18, 32) grids of a 1024-entry codebook (tokens drawn from a Zipf-like law and coded by the real rANS
coder under a TokenModel fitted on other grids; L is chosen so the stream lands near 10 kbps), one keyframe per segment,
a frame and a clip description per segment, constant frame rate, one model hash (lite records only its tokenizer: the
decoder's other engines have no weights), no generation parameters (the lite decoder is deterministic). The "3 models"
rows are the m3cvc profile (tokenizer codebook, keyframe and clip generators), with and without a GEN_PARAMS unit in
every segment (m3cvc streams, 2.1, carry one in every segment: the encoder's conditioning of the generators, the seed).
Overhead = file size − payload, payload = base + token + text + params + timestamp bytes (docs/bitstream.md §9 layers).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from m3cvcav.bitstream.containers import PipeSink, open_writer
from m3cvcav.bitstream.entropy import TokenModel, encode_tokens
from m3cvcav.bitstream.probe import probe
from m3cvcav.bitstream.units import (GenerationParams, KeyframeTokens, ModelRef, Segment, SegmentHeader,
                                     SequenceHeader, encode_sequence_header)
from m3cvcav.options import description

PAYLOAD_LAYERS = ("base", "tokens", "text", "params", "timestamps")
VOCAB = 1024
GRID = (18, 32)
FRAME_TEXTS = ("a large white rabbit stands in a green meadow beside a tree",
               "a butterfly lands on a flower in the meadow, morning light",
               "the rabbit looks up at a bird on a branch",
               "close-up of the rabbit's face, soft focus background")
CLIP_TEXTS = ("the camera pans slowly right while the rabbit stretches",
              "the butterfly flutters away, camera static",
              "the rabbit hops forward, camera follows")


def zipf_grids(rng: np.random.Generator, count: int, shape: tuple[int, int, int], vocab: int = VOCAB) -> list:
    """Token grids with a Zipf-like symbol law (s = 1.1) over a shuffled vocabulary."""
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    symbols = rng.permutation(vocab)
    return [symbols[rng.choice(vocab, size=shape, p=p / p.sum())] for _ in range(count)]


def synthetic_segments(seconds: float = 10.0, fps: int = 24, segment_frames: int = 80, levels: int = 1,
                       params: bool = False, seed: int = 0) -> list[Segment]:
    """Segments of a synthetic stream with real entropy-coded token payloads (see the module docstring)."""
    rng = np.random.default_rng(seed)
    model = TokenModel.fit(zipf_grids(rng, 4, (levels, *GRID)), VOCAB, classes=0)
    total = round(seconds * fps)
    segments = []
    for i, start in enumerate(range(0, total, segment_frames)):
        grid = zipf_grids(rng, 1, (levels, *GRID))[0]
        tokens = KeyframeTokens(1, min(levels, 255), (levels, *GRID), (288, 512), encode_tokens(grid, model))
        segments.append(Segment(
            SegmentHeader(i, start, min(segment_frames, total - start), 0, 1 if i else 0), tokens,
            FRAME_TEXTS[i % len(FRAME_TEXTS)], CLIP_TEXTS[i % len(CLIP_TEXTS)],
            params=GenerationParams(seed=1000 + i, steps=4, scheduler_id=1) if params else None))
    return segments


def sequence_header(models: int, fps: int = 24) -> SequenceHeader:
    refs = [ModelRef(i + 1, hashlib.sha256(b"model %d" % i).digest()) for i in range(models)]
    return SequenceHeader(512, 288, Fraction(fps), Fraction(1, fps), profile_id=1, models=refs)


def measure(segments: list[Segment], header: SequenceHeader, container: str, folder: Path) -> dict:
    path = folder / f"stream.{'mkv' if container == 'mkv' else 'm3cv'}"
    if container == "m3cv-pipe":
        sink = PipeSink()
        with open_writer(sink, header, container="m3cv") as w:
            for s in segments:
                w.write_segment(s)
        path.write_bytes(bytes(sink.data))
    else:
        with open_writer(path, header) as w:
            for s in segments:
                w.write_segment(s)
    report = probe(path)
    payload = sum(report["layers"][k] for k in PAYLOAD_LAYERS)
    overhead = report["file_size"] - payload
    return {"container": container, "segments": len(report["segments"]),
            "token_levels": segments[0].tokens.shape[0], "file_bytes": report["file_size"],
            "payload_bytes": payload, "overhead_bytes": overhead,
            "sequence_header": len(encode_sequence_header(header)),
            "unit_headers_framing": report["layers"]["headers"] + report["layers"]["framing"],
            "container_bytes": report["file_size"] - report["unit_bytes"],
            "overhead_pct": round(100 * overhead / payload, 2), "kbps": round(report["bitrate_bps"] / 1000, 2)}


SCENARIOS = [  # name, segment frames, models, params
    ("1 model, 80-frame segments", 80, 1, False),
    ("1 model, 48-frame segments", 48, 1, False),
    ("1 model, one 240-frame segment", 240, 1, False),
    ("3 models + GEN_PARAMS, 80-frame segments", 80, 3, True),
    ("3 models, 80-frame segments", 80, 3, False),
    ("3 models, 48-frame segments", 48, 3, False),
]
TARGET_BYTES = 10_000 * 10 // 8  # 10 kbps for 10 s


def levels_for(segment_frames: int, seconds: float = 10.0, fps: int = 24) -> int:
    """Token levels per keyframe that bring the stream closest to TARGET_BYTES (one level ≈ its measured size)."""
    count = -(-round(seconds * fps) // segment_frames)
    one_level = sum(len(s.tokens.payload) + 60 for s in synthetic_segments(seconds, fps, segment_frames, 1)) / count
    return int(min(16, max(1, round(TARGET_BYTES / count / one_level))))


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames, models, params in SCENARIOS:
            segments = synthetic_segments(segment_frames=frames, levels=levels_for(frames), params=params)
            header = sequence_header(models)
            for container in ("m3cv", "m3cv-pipe", "mkv"):
                rows.append({"scenario": name, **measure(segments, header, container, Path(tmp))})
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav bench container", description=description(__doc__))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("10 s, 24 fps, ~10 kbps; overhead = file − (base+tokens+text+params+timestamps); "
          "m3cv-pipe = written to a non-seekable sink (no seek index)")
    cols = ("scenario", "container", "segments", "token_levels", "kbps", "file_bytes", "payload_bytes",
            "sequence_header", "unit_headers_framing", "container_bytes", "overhead_bytes", "overhead_pct")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
    return 0
