"""One encode + decode in its own process, which reports its own peak RSS (VmHWM) with its timings.

``python -m m3cvcav.bench.rd.worker baseline NAME PARAM CLIP`` (PARAM ``crf=N`` or ``vbr=Xk``) or
``... profile NAME PARAM CLIP`` (``q=N`` or ``b:v=20k``); prints JSON timings.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def measure(kind: str, name: str, param: str, clip: Path) -> dict:
    """Run the worker for one encode/decode: its timings and ``peak_rss_mb`` (or ``why`` it failed)."""
    proc = subprocess.run([sys.executable, "-m", "m3cvcav.bench.rd.worker", kind, name, param, str(clip)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        return {"why": f"worker failed ({proc.returncode}): {err.splitlines()[-1:] if err else ''}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set since exec (VmHWM; ru_maxrss would include the parent's RSS at fork)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> int:
    kind, name, param, clip = argv
    from .video import read_video

    video = read_video(clip)
    if kind == "baseline":
        from .baselines import decode, encode_param, lookup

        b = lookup(name)
        enc = encode_param(b, video.frames, video.fps, param)
        _, dec_s = decode(b, enc.packets, (video.width, video.height))
        result = {"encode_s": enc.encode_s, "decode_s": dec_s, "bytes": enc.bytes}
    else:
        from .profile import run

        kind, _, value = param.partition("=")
        res = run(name, Path(clip), video.color, len(video.frames),
                  **({"q": int(value)} if kind == "q" else {"bitrate": value}))
        result = {"encode_s": res.encode_s, "decode_s": res.decode_s, "bytes": res.bytes}
    print(json.dumps({**result, "frames": len(video.frames), "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
