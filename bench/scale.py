"""``python -m m3cvcav bench scale``: how chunked encoding scales (docs/parallel.md).

In one run, on this machine (``--rounds`` interleaved rounds, 2 by default: each configuration's fastest run
counts, as other processes share the CPUs): wall time to encode ``--seconds`` (60) of vtest.avi at ``--size``
(512x288) with 1 and 2 local worker processes and with ``-cluster local`` (2 Ray actors, the private Ray instance's
start timed apart), the
ratios to 1 worker (target: 2 workers ≤ 0.6×), byte identity of the three streams, the per-chunk overhead of Ray versus
local processes (a chunk's frames to a warm worker and a reply back, no encoding), peak RSS per worker, and a scaling
model for N workers:

    T(N) = S + ⌈K/N⌉ · (W/K + c)        (and never below R, the parent's own read + plan pass)
    T'(N) = T(N) + R/N                  (on exactly N cores: the parent's reading takes its share of theirs)

with K chunks, W the summed encode time of the chunks on their workers (1-worker run), c the per-chunk overhead, and
S = T(1) − W − K·c the serial rest (worker start and model loading, the parent's work not hidden behind the workers,
writing). Amdahl's serial fraction is s = S / T(1). Assumptions: one core (or GPU) per worker, chunks of equal cost
(the ceiling models the last, partly idle round), the parent's read rate keeps up (checked against R), memory for N
workers at the measured peak RSS each, and the local overhead c for N local processes (Ray's c on a cluster).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from m3cvcav import api, chunks, workers
from m3cvcav.filters import pipeline
from m3cvcav.filters.node import Chain
from m3cvcav.filters.source import Source
from m3cvcav.options import description

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "clips" / "vtest.avi"


def _proc(pid: int, name: str) -> str:
    try:
        return (Path("/proc") / str(pid) / name).read_text()
    except OSError:
        return ""


class RssSampler:
    """Peak RSS (the kernel's VmHWM) of every worker process under this one — local spawn workers and Ray actors —
    sampled 5 times a second."""

    def __init__(self):
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in workers.descendants(me):
                line = _proc(pid, "cmdline").replace("\0", " ")
                if "spawn_main" not in line and "_RayWorker" not in line:
                    continue
                hwm = next((int(x.split()[1]) * 1024 for x in _proc(pid, "status").splitlines()
                            if x.startswith("VmHWM:")), 0)
                self.peak[pid] = max(self.peak.get(pid, 0), hwm)
            self._stop.wait(0.2)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def encode(src: Path, dst: Path, seconds: float, size: str, **kw) -> dict:
    """One chunked encode: wall seconds, chunks, per-chunk encode seconds, bytes, peak RSS per worker (MiB)."""
    final: dict = {}

    def progress(stats) -> None:
        final["stats"] = stats

    with RssSampler() as rss:
        started = time.perf_counter()
        result = api.encode(src, dst, t=seconds, size=size, overwrite=True, progress=progress, **kw)
        wall = time.perf_counter() - started
    stats = final["stats"]
    per_chunk = list(getattr(stats, "chunk_seconds", []))
    return {"wall_s": wall, "frames": result.frames, "chunks": len(per_chunk), "chunk_encode_s": per_chunk,
            "bytes": result.bytes,
            "peak_rss_mib": sorted(round(v / 2 ** 20) for v in rss.peak.values())}


def read_pass(src: Path, seconds: float, size: str) -> tuple[float, int, list[np.ndarray]]:
    """The parent's own serial work: decode, scale and plan the chunks (no encoding). Returns (seconds, chunks, the
    first chunk's frames for the overhead probe)."""
    started = time.perf_counter()
    source = Source(src, t=seconds, audio=False)
    ffmpeg_chain = pipeline.plan(None, None, size=size, rate=None, ours=pipeline.ENCODER_NODES).ffmpeg_chain()
    info = ffmpeg_chain.configure(source.info)
    frames = Chain([source, ffmpeg_chain]).run()
    first, count = None, 0
    for chunk in chunks.plan(frames, chunks.Bounds(0, 0, Fraction(info.fps))):
        first = chunk.images if first is None else first
        count += 1
    return time.perf_counter() - started, count, first


def echo(payload: dict) -> int:
    """Worker side of the overhead probe: touch the frames, reply with one number."""
    return int(payload["images"][-1, -1, -1, 0])


def overhead(pool, images: np.ndarray, repeats: int) -> float:
    """Median seconds for one chunk's frames to reach a warm worker and a reply to come back."""
    for k in range(pool.capacity):  # warm: every worker started, its modules imported
        pool.submit(workers.Task(k, echo, {"images": images}))
    pending = pool.capacity
    while pending:
        pending -= len(pool.wait())
    times = []
    for k in range(repeats):
        started = time.perf_counter()
        pool.submit(workers.Task(k, echo, {"images": images}))
        pool.wait()
        times.append(time.perf_counter() - started)
    pool.close()
    return float(np.median(times))


def model(t1: float, w: float, k: int, c: float, read_s: float, n: int) -> float:
    s = max(0.0, t1 - w - k * c)
    return max(read_s, s + math.ceil(k / n) * (w / k + c))


def run(seconds: float, size: str, ray: bool, repeats: int, serial: bool = False, rounds: int = 2,
        src: Path = MEDIA) -> dict:
    if not src.exists():
        raise SystemExit(f"bench scale needs {src} (../shared/media beside the checkout)")
    out: dict = {"input": f"{src.name}, {seconds:g} s at {size}", "cpus": os.cpu_count(),
                 "threads_per_worker": workers.THREADS_PER_WORKER, "load_before": os.getloadavg()[0]}
    read_s, k, images = read_pass(src, seconds, size)
    out["parent_read_plan_s"] = read_s
    out["planned_chunks"] = k
    with tempfile.TemporaryDirectory() as tmp:
        api.encode(src, Path(tmp) / "warm.m3cv", t=1, size=size, workers=1)  # disk caches warm, not timed
        runs = {"1 worker": dict(workers=1), "2 workers": dict(workers=2)}
        if serial:
            runs["serial (no -workers)"] = {}
        if ray:
            runs["cluster local (2)"] = dict(workers=2, cluster="local")
        results: dict = {}
        for round_ in range(rounds):  # interleaved rounds; each configuration's fastest (least disturbed) run counts
            for name, kw in runs.items():
                dst = Path(tmp) / f"{name.split()[0]}.m3cv"
                if kw.get("cluster"):
                    import ray as ray_module

                    started = time.perf_counter()
                    ray_module.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                                    configure_logging=False)
                    out["ray_start_s"] = min(out.get("ray_start_s", 1e9), time.perf_counter() - started)
                load = os.getloadavg()[0]
                run_ = encode(src, dst, seconds, size, **kw)
                run_["sha256"] = hashlib.sha256(dst.read_bytes()).hexdigest()[:16]
                walls = results.get(name, {}).get("walls_s", []) + [round(run_["wall_s"], 1)]
                loads = results.get(name, {}).get("loads", []) + [round(load, 1)]
                if name not in results or run_["wall_s"] < results[name]["wall_s"]:
                    results[name] = run_
                results[name]["walls_s"], results[name]["loads"] = walls, loads
                if kw.get("cluster"):
                    if round_ == rounds - 1:
                        out["ray_overhead_per_chunk_s"] = overhead(workers.RayPool("local", 2), images, repeats)
                    ray_module.shutdown()
        out["local_overhead_per_chunk_s"] = overhead(workers.LocalPool(2), images, repeats)
    out["runs"] = results
    out["load_after"] = os.getloadavg()[0]
    t1 = results["1 worker"]["wall_s"]
    out["ratio_2_workers"] = results["2 workers"]["wall_s"] / t1
    if ray:
        out["ratio_cluster_local"] = results["cluster local (2)"]["wall_s"] / t1
    out["same_bytes"] = len({r["sha256"] for name, r in results.items() if not name.startswith("serial")}) == 1
    w = float(sum(results["1 worker"]["chunk_encode_s"]))
    kk = results["1 worker"]["chunks"]
    c = out["local_overhead_per_chunk_s"]
    serial = max(0.0, t1 - w - kk * c)
    out["model"] = {"T1_s": t1, "W_s": w, "K": kk, "c_s": c, "S_s": serial, "serial_fraction": serial / t1,
                    "R_s": read_s,
                    "predicted_2_s": model(t1, w, kk, c, read_s, 2),
                    "predicted_2_shared_s": model(t1, w, kk, c, read_s, 2) + read_s / 2,
                    "T_N_s": {n: model(t1, w, kk, c, read_s, n) for n in (1, 2, 4, 8, 16, 32)},
                    "amdahl_limit_speedup": t1 / max(serial, read_s, 1e-9)}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav bench scale", description=description(__doc__))
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of vtest.avi to encode (default 60)")
    parser.add_argument("--input", type=Path, default=MEDIA, help="the clip (default ../shared/media/clips/vtest.avi)")
    parser.add_argument("--size", default="512x288")
    parser.add_argument("--no-ray", action="store_true", help="skip -cluster local")
    parser.add_argument("--repeats", type=int, default=5, help="overhead probes per worker pool (median)")
    parser.add_argument("--serial", action="store_true", help="also time the plain encoder (no -workers)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest run of each counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
        has_ray = not args.no_ray
    except ImportError:
        has_ray = False
        print("ray is not installed (pip install 'm3cvcav[cluster]'): -cluster local is skipped")
    r = run(args.seconds, args.size, has_ray, args.repeats, args.serial, args.rounds, args.input)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['input']}; {r['cpus']} CPUs, {r['threads_per_worker']} thread per worker; "
          f"{r['planned_chunks']} chunks; parent read+plan pass {r['parent_read_plan_s']:.1f} s; load average "
          f"{r['load_before']:.1f} before, {r['load_after']:.1f} after (other processes share the CPUs: judge the "
          "ratios by it)")
    print(f"{'run':20s} {'wall s':>8s} {'ratio':>6s} {'chunks':>6s} {'bytes':>8s} {'sha256':>17s}  "
          "peak RSS/worker MiB   every run's wall s (load average at its start)")
    t1 = r["runs"]["1 worker"]["wall_s"]
    for name, run_ in r["runs"].items():
        every = ", ".join(f"{w:.1f} ({lo:.1f})" for w, lo in zip(run_["walls_s"], run_["loads"]))
        print(f"{name:20s} {run_['wall_s']:8.1f} {run_['wall_s'] / t1:6.2f} {run_['chunks']:6d} {run_['bytes']:8d} "
              f"{run_['sha256']:>17s}  {str(run_['peak_rss_mib']):20s}  {every}")
    print(f"2 workers / 1 worker = {r['ratio_2_workers']:.2f} (target ≤ 0.60); same bytes in every chunked run: "
          f"{r['same_bytes']}")
    if "ray_start_s" in r:
        print(f"Ray: private instance start {r['ray_start_s']:.1f} s (not in the wall time above); per-chunk "
              f"overhead {r['ray_overhead_per_chunk_s'] * 1000:.0f} ms vs local processes "
              f"{r['local_overhead_per_chunk_s'] * 1000:.0f} ms (one chunk's frames there, a reply back)")
    else:
        print(f"per-chunk overhead, local processes: {r['local_overhead_per_chunk_s'] * 1000:.0f} ms")
    m = r["model"]
    print(f"model: T(N) = S + ceil(K/N)·(W/K + c), ≥ R; T1 {m['T1_s']:.1f} s, W {m['W_s']:.1f} s, K {m['K']}, "
          f"c {m['c_s'] * 1000:.0f} ms, S {m['S_s']:.1f} s (serial fraction {m['serial_fraction']:.3f}), "
          f"R {m['R_s']:.1f} s")
    print(f"model predicts T(2) {m['predicted_2_s']:.1f} s with a core for the parent, "
          f"{m['predicted_2_shared_s']:.1f} s with the parent's reading on the 2 workers' cores (+R/2); measured "
          f"{r['runs']['2 workers']['wall_s']:.1f} s")
    print("model, one core per worker and one for the parent: "
          + ", ".join(f"T({n}) {t:.1f} s" for n, t in m["T_N_s"].items())
          + f"; Amdahl limit {m['amdahl_limit_speedup']:.1f}x")
    return 0
