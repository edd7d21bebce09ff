"""What the m3cvc engines share: settings access, device/dtype choice, model loading with hashing, image conversion."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image as PILImage

from ..interfaces import ModelRef
from ..loaders import HubModel, load_pretrained, snapshot, weights_sha256
from m3cvcav.core.errors import ModelError, UsageError
from m3cvcav.core.log import get_logger

T = TypeVar("T")
log = get_logger(__name__)


def setting(settings: Mapping[str, Any], key: str, kind: type, default: Any = None, *, role: str) -> Any:
    """``settings[key]`` checked against ``kind`` (ints pass as floats), else ``default``; a wrong type is a UsageError."""
    value = settings.get(key, default)
    if value is None and default is None:
        raise UsageError(f"profile role {role!r} needs the setting {key!r}: add it to the profile")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"profile setting {role}.{key} = {value!r} must be a {kind.__name__}: fix the profile")
    return value


def model_ref(settings: Mapping[str, Any], role: str, files: list[Path]) -> ModelRef:
    """The role's ``ModelRef``: its numeric ``model_id`` from the profile and the sha256 over ``files``."""
    model_id = setting(settings, "model_id", int, role=role)
    return ModelRef(model_id=model_id, sha256=weights_sha256(files), name=str(settings.get("repo", role)))


def pick_device(settings: Mapping[str, Any], role: str, *, torch_only: bool = True) -> torch.device:
    """``device = "auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. For a ``torch_only``
    role a requested onnxruntime/tensorrt backend is logged as not applying (never a silent fallback)."""
    backend = settings.get("backend", "auto")
    if torch_only and backend not in ("auto", "torch"):
        log.warning("%s runs on torch; -engine %s does not apply to it", role, backend)
    name = setting(settings, "device", str, "auto", role=role)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"profile setting {role}.device = {name!r} but no CUDA device is available: use device = \"auto\"")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"profile setting {role}.device = {name!r} is not a torch device: use auto, cpu or cuda") from err


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_dtype(settings: Mapping[str, Any], device: torch.device, role: str) -> torch.dtype:
    """``dtype = "auto"`` is bfloat16 on CUDA (fp16 where the GPU lacks bf16) and float32 on CPU."""
    name = setting(settings, "dtype", str, "auto", role=role)
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in _DTYPES:
        raise UsageError(f"profile setting {role}.dtype = {name!r}: use auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def resolve_folder(source: str, revision: str | None, *, role: str = "model", profile: str = "m3cvc",
                   variant: str | None = None) -> Path:
    """The local folder of a model: the folder itself, or the hub cache snapshot of an id fetched already, with the
    files ``engines fetch`` selects (a ``ModelError`` saying how to fetch it otherwise)."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    return load_pretrained(lambda target, revision=None, **_: Path(snapshot(
        HubModel(target, revision, (role,), variant), local_only=True)), source, role=role, profile=profile,
        revision=revision)


def pipeline_ref(settings: Mapping[str, Any], role: str) -> ModelRef:
    """A diffusers pipeline's ``ModelRef`` from its files alone: what the encoder records and the generators check,
    without loading the pipeline (the keyframe and clip generators' ``model_ref``)."""
    return model_ref(settings, role, pipeline_files(settings))


def pipeline_files(settings: Mapping[str, Any]) -> list[Path]:
    """The safetensors files a diffusers pipeline folder loads (its ``model_index.json`` components' subfolders, of the
    profile's ``variant``), found without loading the pipeline."""
    import json

    role = str(settings.get("role", "model"))
    folder = resolve_folder(os.path.expanduser(setting(settings, "repo", str, role=role)), settings.get("revision"),
                            role=role, profile=str(settings.get("profile", "m3cvc")), variant=settings.get("variant"))
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{folder} has no readable model_index.json ({err}): point {role}.repo at a diffusers "
                         "pipeline folder") from err
    subs = sorted(name for name, value in index.items()
                  if not name.startswith("_") and isinstance(value, list) and value[0] is not None
                  and (folder / name).is_dir() and any((folder / name).glob("*.safetensors")))
    return safetensors_files(folder, subs, settings.get("variant"))


def safetensors_files(folder: Path, subfolders: list[str] | None = None, variant: str | None = None) -> list[Path]:
    """The safetensors weight files that ``from_pretrained`` reads (of ``variant``, else the plain ones), ordered by
    relative path; hidden folders are skipped. Raises ModelError when there are none."""
    roots = [folder / sub for sub in subfolders] if subfolders else [folder]
    found: list[tuple[str, Path]] = []
    for root in roots:
        for path in root.rglob("*.safetensors"):
            rel = path.relative_to(folder).as_posix()
            parts = path.name[: -len(".safetensors")].split(".")
            wanted = (len(parts) == 2 and parts[1] == variant) if variant else len(parts) == 1
            if wanted and not any(p.startswith(".") for p in rel.split("/")):
                found.append((rel, path))
    if not found:
        raise ModelError(f"no {variant + ' ' if variant else ''}safetensors weights under {folder}: check the model path")
    return [path for _, path in sorted(found)]


def pipeline_subfolders(pipe) -> list[str]:
    """The subfolders of a diffusers pipeline that hold the weights it runs (its torch-module components): hashing only
    these keeps a ref independent of other files a hub download may bring (single-file checkpoints, variants)."""
    return sorted(name for name, part in pipe.components.items() if isinstance(part, torch.nn.Module))


def load(settings: Mapping[str, Any], role: str, loader: Callable[..., T], *, key: str = "repo", **kwargs) -> T:
    """Load ``settings[key]`` through ``engines.loaders.load_pretrained`` (hub id at ``revision``, or a local folder)."""
    source = os.path.expanduser(setting(settings, key, str, role=role))
    revision = settings.get("revision")
    return load_pretrained(loader, source, role=role, profile=str(settings.get("profile", "m3cvc")), revision=revision,
                           trust_remote_code=bool(settings.get("trust_remote_code", False)), **kwargs)


def wants_offload(settings: Mapping[str, Any], device: torch.device, role: str) -> bool:
    """The role's ``offload`` setting (``-offload``), which applies on CUDA only: on the CPU it is logged as a no-op."""
    offload = setting(settings, "offload", bool, False, role=role)
    if offload and device.type != "cuda":
        log.info("%s: offload applies to GPUs only; on %s the models stay where they are", role, device)
    return offload and device.type == "cuda"


def place_pipeline(pipe, settings: Mapping[str, Any], device: torch.device, role: str):
    """Move a diffusers pipeline to ``device``; with ``offload = true`` on CUDA, keep models on the CPU and move each to
    the GPU only while it runs (``enable_model_cpu_offload``)."""
    if wants_offload(settings, device, role):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generator(seed: int) -> torch.Generator:
    """A CPU generator: diffusers draws noise on the CPU and moves it, so the same seed gives the same noise anywhere."""
    return torch.Generator("cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def to_pil(image: np.ndarray) -> PILImage.Image:
    """(H, W, 3) uint8 RGB array → PIL image (checked)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError("images passed to the m3cvc engines must be (H, W, 3) uint8 RGB arrays")
    return PILImage.fromarray(image, "RGB")


def from_pil(image: PILImage.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """PIL image → (H, W, 3) uint8 RGB array, resized (Lanczos) to ``size`` = (height, width) when given."""
    image = image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), PILImage.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def round_to(value: int, multiple: int) -> int:
    """``value`` rounded to the nearest positive multiple of ``multiple``."""
    return max(multiple, int(round(value / multiple)) * multiple)
