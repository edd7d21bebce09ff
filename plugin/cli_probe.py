"""``python -m m3cvcav probe FILE [--json]``: what an m3cvc stream holds (docs/bitstream.md §9)."""
from __future__ import annotations

import json

from .bitstream.probe import format_report, probe
from .options import ArgumentParser


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m m3cvcav probe",
                            description="Show what an m3cvc stream (.m3cv or .mkv) holds.")
    parser.add_argument("file", help="an .m3cv or .mkv file")
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/bitstream.md §9)")
    args = parser.parse_args(argv)
    report = probe(args.file)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0
