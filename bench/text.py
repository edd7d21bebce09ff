"""``python -m m3cvcav bench text [--json]``: bytes per description under the TEXT unit's scheme and its alternatives.

Two sets of descriptions, each as (frame D^F, clip D^C) pairs of one segment:
- labels: the lite label describer's real outputs (``load_profile("lite").engine("describer")``) on the photos and
  Sintel frames of ../shared/media (clip text: the photo as a still; a Sintel frame with the next one) and on keyframes
  of its clips (clip text over the following 8 frames);
- vlm: hand-written VLM-style paragraphs (``bench/_vlm_descriptions.py``; written for this benchmark, not model output).
Each scheme compresses every description alone and every pair as the TEXT unit's plaintext ``uleb(len D^F) | D^F |
D^C`` (docs/bitstream.md §5.4; Brotli quality 11, lgwin 16, mode TEXT on it is exactly the TEXT unit's payload).
Schemes: raw UTF-8; Brotli quality 11 with its defaults and with other windows; zstd level 19 without a dictionary (standard frame, and without magic/checksum/content size); zstd 19
with a dictionary trained by ``zstandard.train_dictionary`` and with a raw-content dictionary. Dictionaries are trained
on the other half of the set (two folds), never on the texts they compress, and would have to ship with the decoder.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import brotli
import numpy as np
import zstandard

from m3cvcav.bitstream.units import text_plaintext
from m3cvcav.core.errors import UsageError
from m3cvcav.options import description

from ._vlm_descriptions import PAIRS as VLM_PAIRS

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"
DICT_SIZE = 2048
Pair = tuple[str, str]


def _brotli(**kw) -> Callable[[bytes], int]:
    return lambda raw: len(brotli.compress(raw, quality=11, **kw))


def _zstd(minimal: bool = False, dictionary: zstandard.ZstdCompressionDict | None = None) -> Callable[[bytes], int]:
    """Compressed size at level 19; ``minimal``: no magic, checksum, content size or dictionary id in the frame.
    Every text is decompressed again and checked, so a size is only counted for a stream that decodes."""
    fmt = zstandard.FORMAT_ZSTD1_MAGICLESS if minimal else zstandard.FORMAT_ZSTD1
    params = zstandard.ZstdCompressionParameters.from_level(19, format=fmt, write_checksum=False,
                                                            write_content_size=not minimal, write_dict_id=not minimal)
    cctx = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
    dctx = zstandard.ZstdDecompressor(dict_data=dictionary, format=fmt)

    def size(raw: bytes) -> int:
        data = cctx.compress(raw)
        if dctx.decompress(data, max_output_size=len(raw) + 1) != raw:
            raise RuntimeError("zstd round trip failed: the zstandard build is broken")
        return len(data)
    return size


def train(texts: Sequence[str], kind: str) -> zstandard.ZstdCompressionDict:
    """A zstd dictionary from ``texts``: ``kind`` "trained" (zstandard.train_dictionary) or "raw" (their content)."""
    samples = [t.encode() for t in texts]
    if kind == "raw":
        content = b"\n".join(samples)[-DICT_SIZE:]
        return zstandard.ZstdCompressionDict(content, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.train_dictionary(DICT_SIZE, samples, level=19)


def plain(pair: Pair) -> bytes:
    """What the TEXT unit compresses for a segment: ``uleb(len D^F) | D^F | D^C`` (docs/bitstream.md §5.4)."""
    return text_plaintext(*pair)


SCHEMES: dict[str, Callable[[], Callable[[bytes], int]]] = {
    "raw UTF-8": lambda: len,
    "brotli q11 lgwin 16 TEXT (the TEXT unit's scheme)": lambda: _brotli(lgwin=16, mode=brotli.MODE_TEXT),
    "brotli q11 (defaults: lgwin 22, generic)": _brotli,
    "brotli q11 lgwin 10 TEXT": lambda: _brotli(lgwin=10, mode=brotli.MODE_TEXT),
    "brotli q11 lgwin 24 TEXT": lambda: _brotli(lgwin=24, mode=brotli.MODE_TEXT),
    "zstd 19, no dictionary": _zstd,
    "zstd 19, no dictionary, minimal frame": lambda: _zstd(minimal=True),
}
DICTIONARIES = {"trained": f"zstd 19 + trained dictionary ({DICT_SIZE} B), minimal frame",
                "raw": f"zstd 19 + raw-content dictionary ({DICT_SIZE} B), minimal frame"}


def measure(pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """Mean bytes per description of every scheme over ``pairs``: each description compressed alone, and each pair
    compressed as one TEXT-unit plaintext (bytes per pair / 2)."""
    n = 2 * len(pairs)
    rows = {}
    for name, make in SCHEMES.items():
        size = make()
        rows[name] = {"alone": sum(size(t.encode()) for pair in pairs for t in pair) / n,
                      "paired": sum(size(plain(pair)) for pair in pairs) / n}
    folds = [list(range(0, len(pairs), 2)), list(range(1, len(pairs), 2))]
    for kind, name in DICTIONARIES.items():
        alone = paired = 0
        for test, learn in (folds, folds[::-1]):
            size = _zstd(minimal=True, dictionary=train([t for i in learn for t in pairs[i]], kind))
            alone += sum(size(t.encode()) for i in test for t in pairs[i])
            paired += sum(size(plain(pairs[i])) for i in test)
        rows[name] = {"alone": alone / n, "paired": paired / n}
    return rows


def _shots(path: Path, every: int, follow: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(keyframe, the ``follow`` frames after it) for a keyframe every ``every`` frames of the clip at ``path``."""
    import av

    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every <= follow:
                frames[i] = frame.to_ndarray(format="rgb24")
    return [(frames[k], [frames[k + j] for j in range(1, follow + 1)])
            for k in range(0, max(frames) + 1, every) if k + follow in frames]


def label_pairs(media: Path = MEDIA) -> list[Pair]:
    """(D^F, D^C) of the lite label describer on the photos, the Sintel frames and keyframes of the clips."""
    import torch
    from PIL import Image

    from m3cvcav.engines.registry import load_profile

    torch.set_num_threads(1)
    if not media.is_dir():
        raise UsageError(f"test media {media} is absent: put ../shared/media beside the checkout (see MANIFEST.md)")
    describer = load_profile("lite").engine("describer")
    def load(paths: list[Path]) -> list[np.ndarray]:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    shots = [(img, []) for img in load(sorted(media.glob("photos/*.[jp][pn]g")))]  # a still: clip text says so
    sintel = load(sorted(media.glob("frames/sintel/*.png")))
    shots += [(img, [nxt]) for img, nxt in zip(sintel, sintel[1:])]
    shots += _shots(media / "clips/bigbuckbunny.mp4", 24, 8) + _shots(media / "clips/vtest.avi", 40, 8)
    return [(describer.describe_frame(key), describer.describe_clip(key, [key, *follow])) for key, follow in shots]


def run(media: Path = MEDIA) -> dict:
    sets = {"labels": label_pairs(media), "vlm": list(VLM_PAIRS)}
    return {"dictionary_bytes": DICT_SIZE,
            "sets": {name: {"descriptions": 2 * len(pairs), "bytes_per_description": measure(pairs)}
                     for name, pairs in sets.items()},
            "note": "vlm = hand-written VLM-style descriptions (bench/_vlm_descriptions.py), not model output"}


def table(result: dict) -> str:
    """The Markdown table: bytes per description (and % of raw UTF-8) per set, alone and paired."""
    sets = result["sets"]
    cols = [(n, mode) for n in sets for mode in ("alone", "paired")]
    head = " | ".join(f"{n} ({sets[n]['descriptions']}), {mode}" for n, mode in cols)
    lines = [f"| scheme | {head} |", "|---" * (len(cols) + 1) + "|"]
    for scheme in next(iter(sets.values()))["bytes_per_description"]:
        cells = []
        for n, mode in cols:
            rows = sets[n]["bytes_per_description"]
            cells.append(f"{rows[scheme][mode]:.1f} ({100 * rows[scheme][mode] / rows['raw UTF-8']['alone']:.0f} %)")
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav bench text", description=description(__doc__))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--media", type=Path, default=MEDIA, help="the shared media folder (default ../shared/media)")
    args = parser.parse_args(argv)
    result = run(args.media)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Mean bytes per description (% of raw UTF-8). alone: each description compressed on its own; paired: a "
          f"segment's D^F and D^C as one TEXT-unit plaintext (uleb length | D^F | D^C). labels: lite label describer "
          f"outputs on ../shared/media; {result['note']}. Dictionaries ({DICT_SIZE} B) are trained on the other half "
          f"of each set and would have to ship with the decoder.")
    print(table(result))
    return 0
