"""``python -m m3cvcav bench corpus``: build (or reuse) the evaluation corpus and print its manifest."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from m3cvcav.options import description

from .rd.corpus import build_default, scan_folder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m m3cvcav bench corpus", description=description(__doc__))
    p.add_argument("--quick", action="store_true", help="the tiny CI corpus")
    p.add_argument("--corpus", type=Path, help="describe a folder of y4m/mp4/... videos instead")
    p.add_argument("--max-frames", type=int, help="frames per --corpus video to read")
    p.add_argument("--rebuild", action="store_true", help="cut the clips again even when the cache is complete")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = p.parse_args(argv)
    if args.corpus:
        folder, clips = args.corpus, scan_folder(args.corpus, args.max_frames)
    else:
        folder, clips = build_default(args.quick, rebuild=args.rebuild)
    if args.json:
        print(json.dumps({"folder": str(folder), "clips": [asdict(c) for c in clips]}, indent=1))
        return 0
    print(f"corpus: {folder}")
    print(f"{'clip':28} {'size':>9} {'frames':>6} {'fps':>5} {'seconds':>7}  sha256            source (license)")
    for c in clips:
        print(f"{c.name:28} {c.width:>4}x{c.height:<4} {c.frames:>6} {c.fps:>5} {c.seconds:>7.2f}  {c.sha256[:16]}  "
              f"{c.source} ({c.license}){'  [' + c.note + ']' if c.note else ''}")
    return 0
