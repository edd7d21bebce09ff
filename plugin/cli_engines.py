"""``python -m m3cvcav engines fetch|list|build|purge``: a profile's hub models, and the compiled-engine cache (ONNX
exports and TensorRT plans).

  engines fetch [-profile m3cvc] [-dry_run]              download every pinned hub model of a profile, verified
  engines list [-json]                                   cached entries with keys, sizes, what they are
  engines build [-profile lite] [-s WxH ...] [-engine auto|onnxruntime|tensorrt] [-precision fp16|bf16|fp32]
  engines purge [KEY_PREFIX ...]                         delete all entries, or those whose key starts with a prefix
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from m3cvcav.core.errors import M3cvError, OutputError, UsageError
from m3cvcav.core.log import get_logger
from m3cvcav.filters.options import parse_size

from .options import ArgumentParser, description

log = get_logger(__name__)
DEFAULT_SIZES = ("256x256", "512x512")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def cmd_fetch(args) -> int:
    """Say the disk needed, download every pinned model with progress, verify each file, print the offline command."""
    from huggingface_hub import constants
    from m3cvcav.engines.loaders import fetch, hub_models, plan_fetch, verify_snapshot
    from m3cvcav.engines.registry import load_profile

    profile = load_profile(args.profile)
    models = hub_models({role: profile.settings(role) for role in profile.roles()})
    if not models:
        print(f"profile {profile.name!r} loads no hub models: nothing to fetch")
        return 0
    cache = Path(constants.HF_HUB_CACHE)
    print(f"profile {profile.name!r}: {len(models)} pinned model(s) from {constants.ENDPOINT} into {cache}")
    plans = [plan_fetch(model, progress=not args.quiet) for model in models]
    for plan in plans:
        m = plan.model
        print(f"  {m.repo}@{m.revision[:12]} ({', '.join(m.roles)}): {plan.files} files, {_human(plan.download)} to "
              f"download, {_human(plan.cached)} cached")
    need, free = sum(p.download for p in plans), _free_bytes(cache)
    print(f"disk needed: {_human(need)}; free: {_human(free)}")
    if need > free:
        raise OutputError(f"{_human(need)} to download but {_human(free)} free under {cache}: free space or set "
                          "HF_HOME to a larger disk")
    if args.dry_run:
        return 0
    for plan in plans:
        folder = fetch(plan.model, progress=not args.quiet)
        print(f"  {plan.model.repo}: {verify_snapshot(folder)} files verified in {folder}")
    where = f"HF_HOME={constants.HF_HOME} " if args.show_home else ""
    print(f"done. Offline from now on: {where}HF_HUB_OFFLINE=1 python -m m3cvcav -i in.mp4 -c m3cvc -profile "
          f"{args.profile} out.mkv")
    return 0


def cmd_list(args) -> int:
    from m3cvcav.engines.backends import EngineCache

    cache = EngineCache()
    entries = cache.entries()
    if args.json:
        print(json.dumps({"root": str(cache.root), "entries": [
            {"key": e.key, "kind": e.kind, "size": e.size, "path": str(e.path), **{k: v for k, v in e.meta.items()
                                                                                   if k not in ("key", "kind")}}
            for e in entries]}, indent=1))
        return 0
    print(f"engine cache: {cache.root}")
    if not entries:
        print("(empty: `python -m m3cvcav engines build` fills it)")
        return 0
    print(f"{'key':16}  {'kind':4}  {'network':22}  {'backend':11}  {'precision':9}  {'profiles':28}  {'size':>10}")
    for e in entries:
        m = e.meta
        print(f"{e.key[:16]}  {e.kind:4}  {m.get('name', '?'):22}  {m.get('backend', '?'):11}  "
              f"{m.get('precision', '-'):9}  {','.join(m.get('profiles', [])):28}  {_human(e.size):>10}")
    print(f"{len(entries)} entries, {_human(sum(e.size for e in entries))}")
    return 0


def cmd_build(args) -> int:
    from m3cvcav.engines.backends import EngineCache, backends_of, onnx_for, select_backend
    from m3cvcav.engines.backends.trt_backend import load_trt
    from m3cvcav.engines.interfaces import Exportable
    from m3cvcav.engines.registry import load_profile

    if args.engine not in ("auto", "onnxruntime", "tensorrt"):
        raise UsageError(f"engines build -engine {args.engine}: use auto, onnxruntime or tensorrt "
                         "(torch needs no build)")
    sizes = [parse_size(s, 16, 8192)[::-1] for s in (args.s or DEFAULT_SIZES)]  # (height, width)
    profile = load_profile(args.profile)
    cache = EngineCache()
    device = args.device
    built = 0
    for role in profile.roles():
        try:
            engine = profile.engine(role, backend="torch")
        except M3cvError as err:
            log.warning("%s/%s skipped: %s", profile.name, role, err)
            continue
        if not isinstance(engine, Exportable):
            continue
        trt = backends_of(profile.role_settings(role)).tensorrt  # the profile's [backends.tensorrt] settings
        precision = args.precision or trt.precision
        for spec in engine.export_specs(sizes):
            backend = select_backend(args.engine, device=device, name=spec.name)
            onnx = onnx_for(spec, cache)
            line = f"{role:18} {spec.name:22} onnx {len(onnx):>10} bytes{' (external data)' if onnx.data else ''}"
            if backend == "tensorrt":
                load_trt(spec.name, onnx, spec.inputs, spec.outputs, spec.profiles, device=device, config=trt,
                         precision=precision, cache=cache).close()
                line += f"  + tensorrt {precision} plan ({', '.join(p.name for p in spec.profiles)})"
            print(line)
            built += 1
    print(f"{built} network(s) of profile {profile.name!r} ready in {cache.root}")
    return 0


def cmd_purge(args) -> int:
    from m3cvcav.engines.backends import EngineCache

    cache = EngineCache()
    freed = cache.purge(args.keys or None)
    print(f"purged {_human(freed)} from {cache.root}")
    return 0


def main(argv: list[str]) -> int:
    from m3cvcav.engines.backends import default_device

    parser = ArgumentParser(prog="python -m m3cvcav engines", description=description(__doc__),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p_fetch = sub.add_parser("fetch", help="download a profile's pinned hub models (says the disk needed first)")
    p_fetch.add_argument("-profile", default="m3cvc", help="profile name or .toml path (default m3cvc)")
    p_fetch.add_argument("-dry_run", "--dry-run", action="store_true", help="only say what would be downloaded")
    p_fetch.add_argument("-quiet", "--quiet", action="store_true", help="no progress bars")
    p_list = sub.add_parser("list", help="cached engines with keys and sizes")
    p_list.add_argument("-json", "--json", action="store_true", help="machine-readable output")
    p_build = sub.add_parser("build", help="export ONNX (and TensorRT plans where installed) ahead of time")
    p_build.add_argument("-profile", default="lite", help="profile name or .toml path (default lite)")
    p_build.add_argument("-s", action="append", metavar="WxH", help="resolution bucket, repeatable (default 256x256, "
                         "512x512)")
    p_build.add_argument("-engine", default="auto", help="auto|onnxruntime|tensorrt (default auto)")
    p_build.add_argument("-precision", default=None, choices=("fp32", "fp16", "bf16"),
                         help="TensorRT precision (default: the profile's [backends.tensorrt] precision, fp16)")
    p_build.add_argument("-device", default=default_device(), help="cpu or cuda[:N]")
    p_purge = sub.add_parser("purge", help="delete cached engines")
    p_purge.add_argument("keys", nargs="*", metavar="KEY_PREFIX", help="only entries whose key starts with these")
    for p in (p_fetch, p_list, p_build, p_purge):
        p.add_argument("-loglevel", "-v", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        import os

        args.show_home = "HF_HOME" in os.environ
    return {"fetch": cmd_fetch, "list": cmd_list, "build": cmd_build, "purge": cmd_purge}[args.command](args)
