"""``python -m m3cvcav.bench.gpu_check [--device cuda] [--json out.json]``: the m3cvc path on a GPU with tiny models.

One prepared run (a few minutes on one GPU; no network, no hub): tiny random-weight models of every m3cvc network are
built from configs (``tests/tiny_models.py``), then
1. per network (SD VAE decoder, SD UNet, Wan FLF2V transformer, Wan VACE transformer): median latency of torch eager,
   ``torch.compile`` and ONNX Runtime (CUDA provider where onnxruntime-gpu is installed, else its CPU provider, said so)
   on ``--device``, and the largest difference of each against torch eager on the CPU (float32 parity);
2. end to end: a synthetic 12-frame clip encoded and decoded with the tiny m3cvc profile (lite tokens, SD img2img,
   Wan FLF2V clips) on ``--device``, its wall time and the largest per-pixel difference
   of the decoded frames against the same decode on the CPU.
Figures are of random tiny networks: they show the backends work and agree on the device, not real-model speed.
``--device cpu`` runs the same on the CPU (what CI can check).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from m3cvcav.options import description

ROOT = Path(__file__).resolve().parents[1]


def _tiny_models():
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models

    return tiny_models


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(fn, device: str, reps: int) -> float:
    fn()  # warm-up (compilation, session, autotuning)
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 3)


def network_specs(folders: dict[str, Path]) -> list:
    """ExportSpecs of the tiny networks (float32, CPU)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, WanTransformer3DModel, WanVACETransformer3DModel

    from m3cvcav.engines.m3cvc.networks import unet_spec, vae_decoder_spec, wan_transformer_spec

    vae = AutoencoderKL.from_pretrained(folders["sd"], subfolder="vae").eval()
    unet = UNet2DConditionModel.from_pretrained(folders["sd"], subfolder="unet").eval()
    flf2v = WanTransformer3DModel.from_pretrained(folders["wan"], subfolder="transformer").eval()
    vace = WanVACETransformer3DModel.from_pretrained(folders["wan_vace"], subfolder="transformer").eval()
    latent = (1, 16, 3, 8, 8)  # 9 frames at 64×64 through the Wan VAE
    return [vae_decoder_spec(vae, [(64, 64)]), unet_spec(unet, 32, [(64, 64)], 2),
            wan_transformer_spec(flf2v, {"hidden_states": (1, 36, *latent[2:]), "timestep": (1,),
                                         "encoder_hidden_states": (1, 16, 32),
                                         "encoder_hidden_states_image": (2, 17, 4)}),
            wan_transformer_spec(vace, {"hidden_states": latent, "timestep": (1,), "encoder_hidden_states": (1, 16, 32),
                                        "control_hidden_states": (1, 96, *latent[2:]),
                                        "control_hidden_states_scale": (2,)})]


def _feeds(spec, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    feeds = {}
    for s in spec.inputs:
        shape = [d if isinstance(d, int) else spec.sample[s.name].shape[i] for i, d in enumerate(s.shape)]
        feeds[s.name] = torch.randn(*shape, generator=g)
    if "timestep" in feeds:
        feeds["timestep"] = torch.full(feeds["timestep"].shape, 500.0)
    if "control_hidden_states_scale" in feeds:
        feeds["control_hidden_states_scale"] = torch.ones(feeds["control_hidden_states_scale"].shape)
    return {k: v.to(device) for k, v in feeds.items()}


def network_rows(folders: dict[str, Path], device: str, reps: int, cache_dir: Path, *,
                 compile: bool = True) -> list[dict]:
    """Latency per backend and parity against CPU eager, per network (``compile``: include torch.compile)."""
    import onnxruntime as ort

    from m3cvcav.engines.backends import EngineCache, create_engine, onnx_for
    from m3cvcav.engines.backends.ort_backend import OrtEngine

    cache = EngineCache(cache_dir)
    cuda_ort = "CUDAExecutionProvider" in ort.get_available_providers()
    rows = []
    for spec in network_specs(folders):
        out_name = spec.outputs[0].name
        cpu_feeds = _feeds(spec, "cpu")
        with create_engine(spec, "torch", device="cpu") as ref_engine:
            reference = ref_engine(cpu_feeds)[out_name].float()
        onnx = onnx_for(spec, cache)  # exported now: the torch engines below move the module to the device
        feeds = _feeds(spec, device)
        engines = {"torch": create_engine(spec, "torch", device=device)}
        if compile:
            engines["torch-compile"] = create_engine(spec, "torch", device=device, compile=True)
        ort_device = device if cuda_ort or not device.startswith("cuda") else "cpu"
        engines["onnxruntime" + ("" if ort_device == device else "-cpu")] = OrtEngine(
            spec.name, onnx, spec.inputs, spec.outputs, device=ort_device)
        for backend, engine in engines.items():
            run_feeds = feeds if backend != "onnxruntime-cpu" else cpu_feeds
            try:
                latency = _median_ms(lambda: engine(run_feeds), device, reps)
                diff = float((engine(run_feeds)[out_name].float().cpu() - reference).abs().max())
                rows.append({"network": spec.name, "backend": backend, "device": ort_device if "onnx" in backend
                             else device, "latency_ms": latency, "max_abs_diff_vs_cpu_eager": diff})
            except Exception as err:  # noqa: BLE001 - a backend that fails is a finding, reported, not a crash
                rows.append({"network": spec.name, "backend": backend, "error": f"{type(err).__name__}: {err}"[:300]})
            finally:
                engine.close()
    return rows


def end_to_end(folders: dict[str, Path], work: Path, device: str) -> dict:
    """Encode + decode a synthetic clip with the tiny profile on ``device`` and on the CPU; time and parity."""
    import av

    import m3cvcav

    tiny = _tiny_models()
    frames = tiny.synthetic_images(12, size=64)
    out = {}
    decoded = {}
    for dev in dict.fromkeys((device, "cpu")):
        profile = tiny.write_profile(work / f"profile-{dev}.toml", folders["vlm"], folders["sd"], folders["wan"], None)
        text = profile.read_text().replace('device = "cpu"', f'device = "{dev}"')
        profile.write_text(text)
        stream, back = work / f"clip-{dev}.mkv", work / f"back-{dev}.mkv"
        t0 = time.perf_counter()
        m3cvcav.encode(iter(frames), stream, profile=str(profile), fps=12, overwrite=True)
        t1 = time.perf_counter()
        m3cvcav.decode(stream, back, profile=str(profile), codec="ffv1", overwrite=True)
        t2 = time.perf_counter()
        with av.open(str(back)) as container:
            decoded[dev] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        out[dev] = {"encode_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3), "frames": len(decoded[dev]),
                    "stream_bytes": stream.stat().st_size}
    if device != "cpu":
        diffs = [int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(decoded[device], decoded["cpu"])]
        out["max_level_diff_vs_cpu"] = max(diffs) if diffs else None
    return out


def build(work: Path) -> dict[str, Path]:
    tiny = _tiny_models()
    torch.manual_seed(0)
    return {"vlm": tiny.build_vlm(work / "vlm"), "sd": tiny.build_sd(work / "sd"), "wan": tiny.build_wan(work / "wan"),
            "wan_vace": tiny.build_wan_vace(work / "wan_vace")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3cvcav.bench.gpu_check", description=description(__doc__))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=20, help="timed runs per cell (median reported)")
    parser.add_argument("--skip-e2e", action="store_true", help="networks only")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (its compile time)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA GPU: use --device cpu", file=sys.stderr)
        return 1
    import onnxruntime as ort

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
           "ort_providers": ort.get_available_providers(), "device": args.device,
           "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    with tempfile.TemporaryDirectory(prefix="m3cvc-gpu-check-") as tmp:
        work = Path(tmp)
        os.environ["M3CVC_ENGINE_CACHE"] = str(work / "engines")
        os.environ["M3CVC_HASH_CACHE"] = str(work / "hashes.json")
        t0 = time.perf_counter()
        folders = build(work)
        result = {"env": env, "build_s": round(time.perf_counter() - t0, 2),
                  "networks": network_rows(folders, args.device, args.reps, work / "engines",
                                           compile=not args.no_compile)}
        if not args.skip_e2e:
            result["end_to_end"] = end_to_end(folders, work, args.device)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
