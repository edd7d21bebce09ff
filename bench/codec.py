"""``python -m m3cvcav bench codec [--quick] [--json]``: the lite codec end to end on this machine.

* speed: encode and decode fps and × real time at 512x288 and on Big Buck Bunny at 1280x720, with the share of the time
  spent inside the engines (embedder, motion, describer, tokenizer, generators) versus the graph, PyAV and the containers;
* memory: peak RSS of a fresh process encoding the first 10 s of vtest.avi versus the whole 79.5 s (flat = streaming);
* rate control: achieved video bitrate versus the ``-b:v`` target at 2k … 500k on Big Buck Bunny and on the first 20 s
  of vtest.avi, both at 512x288;
* frozen frames: the share of decoded frames equal to their predecessor (mean |Δ luma| < 0.3) while the source moves
  (> 1.5), at the default settings, on the README's job (Big Buck Bunny, 1280x720) and on the whole of vtest.avi.
``--quick``: speed at 512x288 only, memory on 5 s vs 20 s, rate control at 10k and 50k, frozen frames on 10 s of vtest.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from m3cvcav.core.errors import EngineError, InputError
from m3cvcav.options import description

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "clips"
TIMED = {"embed", "magnitude", "flow", "describe_frame", "describe_clip", "compress", "decompress", "generate",
         "token_model"}


class _Timed:
    """Wraps an engine; adds the wall time of its public calls to ``clock[0]``."""

    def __init__(self, engine, clock: list[float]):
        self._engine, self._clock = engine, clock

    def __getattr__(self, name):
        value = getattr(self._engine, name)
        if name not in TIMED or not callable(value):
            return value

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self._clock[0] += time.perf_counter() - start
        return timed


def _timed_engines(clock: list[float]):
    """Route every engine the API builds through ``_Timed`` (the bench's own instrumentation)."""
    from m3cvcav.engines.registry import Engines

    original = Engines.engine

    def engine(self, role):
        return _Timed(original(self, role), clock)

    Engines.engine = engine
    return lambda: setattr(Engines, "engine", original)


def speed(src: Path, vf: str | None, label: str, work: Path) -> dict:
    """Encode then decode ``src`` (after ``vf``), timing each and the engines inside them."""
    import m3cvcav

    clock = [0.0]
    restore = _timed_engines(clock)
    try:
        m3cvcav.encode(src, work / "warm.m3cv", vf=vf, frames=3, overwrite=True, audio=False)  # load the engines
        clock[0] = 0.0
        start = time.perf_counter()
        enc = m3cvcav.encode(src, work / "s.mkv", vf=vf, overwrite=True)
        enc_s, enc_engine = time.perf_counter() - start, clock[0]
        clock[0] = 0.0
        start = time.perf_counter()
        dec = m3cvcav.decode(work / "s.mkv", work / "s.mp4", preset="veryfast", overwrite=True)
        dec_s, dec_engine = time.perf_counter() - start, clock[0]
    finally:
        restore()
    return {"case": label, "frames": enc.frames, "duration_s": round(enc.duration, 2),
            "encode_fps": round(enc.frames / enc_s, 2), "encode_x_realtime": round(enc.duration / enc_s, 3),
            "encode_engine_share": round(enc_engine / enc_s, 3), "decode_fps": round(dec.frames / dec_s, 2),
            "decode_x_realtime": round(enc.duration / dec_s, 3), "decode_engine_share": round(dec_engine / dec_s, 3),
            "kbit_s": round(enc.bitrate / 1000, 2)}


CHILD = """
import resource, sys, torch
torch.set_num_threads(1)
import m3cvcav
r = m3cvcav.encode(sys.argv[1], sys.argv[2], t=float(sys.argv[3]), q=1, overwrite=True, vf="scale=384:-2")
print(r.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(seconds: float, work: Path) -> dict:
    """Peak RSS of a fresh process encoding the first ``seconds`` of vtest.avi (384 px wide, rate point 1)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(MEDIA / "vtest.avi"), str(work / "m.m3cv"),
                          str(seconds)], capture_output=True, text=True)
    if out.returncode:
        raise EngineError(f"the memory benchmark's encoder failed: {out.stderr.strip().splitlines()[-1]}")
    frames, rss_kib = out.stdout.split()[-2:]
    return {"seconds": seconds, "frames": int(frames), "peak_rss_mib": round(int(rss_kib) / 1024, 1)}


def bitrate(src: Path, vf: str | None, target: str, work: Path, seconds: float | None = None) -> dict:
    import m3cvcav
    from m3cvcav.filters.options import parse_number

    result = m3cvcav.encode(src, work / "b.m3cv", vf=vf, bitrate=target, t=seconds, overwrite=True, audio=False)
    goal = parse_number(target, float)
    return {"clip": src.name, "target": target, "achieved_kbit_s": round(result.bitrate / 1000, 2),
            "error_pct": round(100 * (result.bitrate - goal) / goal, 1), "segments": result.segments,
            "bytes": result.bytes, "size": "512x288" if vf else "1280x720"}


def _luma(path: Path) -> list:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def frozen(src: Path, label: str, work: Path, seconds: float | None = None) -> dict:
    """Frozen decoded frames at the default settings (the before-stop hook's definition)."""
    import numpy as np

    import m3cvcav

    enc = m3cvcav.encode(src, work / "f.m3cv", t=seconds, overwrite=True, audio=False)
    m3cvcav.decode(work / "f.m3cv", work / "f.y4m", overwrite=True)
    a = _luma(src)[:enc.frames]
    b = _luma(work / "f.y4m")
    def change(frames, i: int) -> float:
        return float(np.abs(frames[i].astype(np.int16) - frames[i - 1]).mean())

    moving = [i for i in range(1, min(len(a), len(b))) if change(a, i) > 1.5]
    still = [i for i in moving if change(b, i) < 0.3]
    return {"case": label, "frames": len(b), "source_moving": len(moving), "frozen": len(still),
            "frozen_pct": round(100 * len(still) / max(len(moving), 1), 2), "kbit_s": round(enc.bitrate / 1000, 2)}


def run(quick: bool) -> dict:
    import torch

    torch.set_num_threads(2)
    bbb = MEDIA / "bigbuckbunny.mp4"
    for path in (bbb, MEDIA / "vtest.avi"):
        if not path.exists():
            raise InputError(f"benchmark media {path} is missing: the bench needs ../shared/media beside the checkout")
    small = "scale=512:288"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speeds = [speed(bbb, small, "512x288 (bbb scaled)", work)]
        if not quick:
            speeds.append(speed(bbb, None, "1280x720 (bbb)", work))
        mem = [memory(s, work) for s in ((5, 20) if quick else (10, 79.5))]
        targets = ("10k", "50k") if quick else ("2k", "5k", "10k", "20k", "50k", "100k", "200k", "500k")
        rates = [bitrate(bbb, small, t, work) for t in targets]
        if not quick:
            rates += [bitrate(MEDIA / "vtest.avi", small, t, work, seconds=20) for t in targets]
        vtest = MEDIA / "vtest.avi"
        frozen_rows = [frozen(vtest, "vtest.avi, first 10 s", work, 10)] if quick else [
            frozen(bbb, "bigbuckbunny.mp4 (README job)", work), frozen(vtest, "vtest.avi, all 79.5 s", work)]
    return {"machine": f"{platform.processor() or platform.machine()}, torch threads 2", "speed": speeds,
            "memory": mem, "bitrate": rates, "frozen": frozen_rows}


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m m3cvcav bench codec", description=description(__doc__))
    p.add_argument("--quick", action="store_true", help="a subset that runs in about a minute")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    results = run(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"lite codec on {results['machine']}\n\nspeed (engine share = time inside the engines)")
    print(table(results["speed"]))
    print("\npeak RSS of a fresh encoder process (vtest.avi at 384 px wide)")
    print(table(results["memory"]))
    print("\nrate control: achieved video bitrate vs -b:v")
    print(table(results["bitrate"]))
    print("\nfrozen frames at the default settings (decoded frame = its predecessor while the source moves)")
    print(table(results["frozen"]))
    return 0
