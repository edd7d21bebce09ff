"""``python -m m3cvcav bench engines [--json] [--budget S]``: the lite engines on this machine.

EfficientNet-Lite0 (run at the input resolution) on torch and onnxruntime side by side, and OpenCV's DIS optical flow
(the lite motion engine: its statistics at the work size, and the dense field at the frame size), at 256×256 and
512×512, batch 1 and 8 where batching applies. Each cell reports the median latency per call, throughput in frames
per second, and the share of time spent outside the model (pre/post-processing). All backends
run with one intra-op thread so the comparison is per core; input frames are Sintel frames (../shared/media) resized,
or seeded noise when the media is absent.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from m3cvcav.engines.backends import EngineCache, create_engine
from m3cvcav.engines.lite.embedder import export_spec, load_network, preprocess
from m3cvcav.engines.lite.motion import DisMotion
from m3cvcav.options import description

SINTEL = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "frames" / "sintel"
SIZES = (256, 512)
BATCHES = (1, 8)


def frames(size: int, count: int) -> tuple[list[np.ndarray], str]:
    files = sorted(SINTEL.glob("frame_*.png"))
    if files:
        out = [cv2.cvtColor(cv2.imread(str(files[i % len(files)])), cv2.COLOR_BGR2RGB) for i in range(count)]
        return [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in out], "sintel"
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)], "noise"


def timed(fn, budget: float) -> list[float]:
    """Run ``fn`` once to warm up, then until ``budget`` seconds pass: at least 3 times, or once when the warm-up
    alone took longer than the budget."""
    t0 = time.perf_counter()
    fn()
    min_reps = 1 if time.perf_counter() - t0 > budget else 3
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_embedder(budget: float) -> list[dict]:
    rows = []
    net = load_network()
    with tempfile.TemporaryDirectory() as cache_dir:  # a fresh export, not the user's engine cache
        cache = EngineCache(Path(cache_dir))
        engines = {b: create_engine(export_spec(net), b, device="cpu", threads=1, cache=cache)
                   for b in ("torch", "onnxruntime")}
        for size in SIZES:
            for batch in BATCHES:
                imgs, _ = frames(size, batch)
                for backend, engine in engines.items():
                    pre: list[float] = []
                    model: list[float] = []
                    post: list[float] = []

                    def call() -> None:
                        t0 = time.perf_counter()
                        x = preprocess(imgs, size)
                        t1 = time.perf_counter()
                        out = engine({"image": x})
                        t2 = time.perf_counter()
                        np.argsort(-out["logits"], axis=1)[:, :3]
                        pre.append(t1 - t0)
                        model.append(t2 - t1)
                        post.append(time.perf_counter() - t2)

                    total = timed(call, budget)
                    outside = (sum(pre[1:]) + sum(post[1:])) / sum(total)
                    rows.append(row("embedder efficientnet-lite0", backend, size, batch, total, outside))
        for engine in engines.values():
            engine.close()
    return rows


def bench_opencv(budget: float) -> list[dict]:
    rows = []
    motion = DisMotion(work_size=320, preset="fast")
    for size in SIZES:
        (a, b), _ = frames(size, 2)
        rows.append(row("motion DIS flow stats (pair)", "opencv", size, 1, timed(lambda: motion.stats(a, b), budget),
                        None))
        rows.append(row("motion DIS dense flow (pair)", "opencv", size, 1, timed(lambda: motion.flow(a, b), budget),
                        None))
    return rows


def row(engine: str, backend: str, size: int, batch: int, times: list[float], outside: float | None) -> dict:
    """One table row; ``outside`` is the share of time outside the model (None where there is no model)."""
    med = statistics.median(times)
    return {"engine": engine, "backend": backend, "size": f"{size}x{size}", "batch": batch, "reps": len(times),
            "latency_ms": round(med * 1e3, 2), "fps": round(batch / med, 1),
            "outside_model": None if outside is None else round(outside, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav bench engines", description=description(__doc__))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of timed runs per cell (default 1.5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _, source = frames(8, 1)
    rows = bench_embedder(args.budget) + bench_opencv(args.budget)
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1,
           "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
           "opencv": cv2.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           "frames": source}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=1))
        return 0
    print("lite engines, " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"{'engine':34} {'backend':11} {'size':>8} {'batch':>5} {'latency ms':>11} {'frames/s':>9} {'outside':>8}")
    for r in rows:
        print(f"{r['engine']:34} {r['backend']:11} {r['size']:>8} {r['batch']:>5} {r['latency_ms']:>11.2f} "
              f"{r['fps']:>9.1f} {'-' if r['outside_model'] is None else format(r['outside_model'], '.1%'):>8}")
    return 0
