"""Loading pretrained diffusers / transformers models from the hub cache or a local folder, and hashing their weights.

``load_pretrained`` is the one door through which every hub model enters m3cvcav: it honours ``HF_HOME`` and
``HF_HUB_OFFLINE`` (through huggingface_hub, which reads them), loads safetensors only, keeps ``trust_remote_code`` off
unless the profile turns it on, and turns "model not here" into one ``ModelError`` line that says how to get it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from m3cvcav.core.errors import ModelError
from m3cvcav.core.log import get_logger

T = TypeVar("T")
log = get_logger(__name__)

# Files that hold weights; everything else in a model folder (configs, tokenizers, READMEs) is not hashed.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx", ".gguf")


def is_local(source: str) -> bool:
    """Whether a model source is a local folder: hub ids are ``owner/name``; anything absolute, relative, deeper or
    existing is a local folder."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or Path(source).exists()


def _missing(source: str, revision: str | None, role: str, profile: str, reason: str, *, local: bool) -> ModelError:
    reason = reason[:160]
    if local:
        return ModelError(
            f"model folder {source!r} for role {role!r} of profile {profile!r} cannot be loaded ({reason}); point the "
            "profile at a folder saved with save_pretrained (safetensors weights); `-profile lite` works offline")
    rev = f" --revision {revision}" if revision else ""
    return ModelError(
        f"model {source!r} for role {role!r} of profile {profile!r} is not available here ({reason}); get it with "
        f"`python -m m3cvcav engines fetch -profile {profile}` (or `hf download {source}{rev}`) or set a local "
        "folder for it in the profile; "
        "`-profile lite` works offline")


def _reason(err: BaseException, *, local: bool) -> str:
    """A short cause: the cache and offline mode when that is why, else the first sentence of the loader's error."""
    from huggingface_hub import constants

    if not local and constants.HF_HUB_OFFLINE:
        return f"not in the Hugging Face cache {constants.HF_HUB_CACHE} and HF_HUB_OFFLINE is set"
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(". ")[0]


def _not_found_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors as hf_errors

    return (OSError, hf_errors.HFValidationError, hf_errors.LocalEntryNotFoundError, hf_errors.RepositoryNotFoundError,
            hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError)


def load_pretrained(load: Callable[..., T], source: str, *, role: str, profile: str, revision: str | None = None,
                    **kwargs) -> T:
    """Call a ``from_pretrained``-style ``load`` on a hub id (at ``revision``) or a local folder.

    ``use_safetensors=True`` and ``trust_remote_code=False`` are passed unless ``kwargs`` sets them; a keyword whose
    value is ``None`` is dropped (for loaders that do not take it, e.g. ``use_safetensors=None`` for a tokenizer). A
    model that is missing (not in the cache while offline, unknown id, no such folder) raises ``ModelError``.
    """
    kwargs.setdefault("use_safetensors", True)
    kwargs["trust_remote_code"] = bool(kwargs.get("trust_remote_code", False))
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    local = Path(source).expanduser()
    from_folder = is_local(source)
    if from_folder:
        if not local.is_dir():
            raise _missing(source, None, role, profile, "no such local folder", local=True)
        target, revision = str(local), None
    else:
        target = source
        if revision is not None:
            kwargs["revision"] = revision
    log.debug("loading %s%s for %s/%s", target, f"@{revision}" if revision else "", profile, role)
    try:
        return load(target, **kwargs)
    except _not_found_errors() as err:
        raise _missing(source, revision, role, profile, _reason(err, local=from_folder), local=from_folder) from err


def weight_files(paths_or_folder: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The weight files of a folder (recursively, skipping hidden entries) or of a list of files/folders, in the
    canonical order: by their path relative to the folder they were found in (or their file name), compared as UTF-8 bytes."""
    items = [paths_or_folder] if isinstance(paths_or_folder, (str, os.PathLike)) else list(paths_or_folder)
    found: list[tuple[bytes, Path]] = []
    for item in map(Path, items):
        if item.is_dir():
            for path in item.rglob("*"):
                rel = path.relative_to(item)
                if path.is_file() and path.suffix in WEIGHT_SUFFIXES and not any(p.startswith(".") for p in rel.parts):
                    found.append((rel.as_posix().encode(), path))
        elif item.is_file():
            found.append((item.name.encode(), item))
        else:
            raise ModelError(f"weights {item} not found: check the model path in the profile")
    return [path for _, path in sorted(found, key=lambda pair: pair[0])]


def hash_cache_path() -> Path:
    """Where file digests are remembered: ``$M3CVC_HASH_CACHE``, else ``weight-hashes.json`` beside the engine cache."""
    from .backends.cache import cache_root

    return Path(os.environ.get("M3CVC_HASH_CACHE") or cache_root().parent / "weight-hashes.json").expanduser()


_HASH_LOCK = threading.Lock()


def file_sha256(path: Path) -> bytes:
    """sha256 of a file's bytes, remembered by (resolved path, size, mtime): a multi-GB model is read once, not at
    every start; a file that changes (size or mtime) is hashed again."""
    real = Path(path).resolve()
    stat = real.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    store = hash_cache_path()
    with _HASH_LOCK:
        try:
            known = json.loads(store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        entry = known.get(str(real))
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return bytes.fromhex(entry["sha256"])
    inner = hashlib.sha256()
    with open(real, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            inner.update(chunk)
    digest = inner.digest()
    if stat.st_size >= 1 << 20:  # small files are cheaper to hash than to remember
        from m3cvcav.core.atomic import write_bytes

        with _HASH_LOCK:
            try:
                known = json.loads(store.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                known = {}
            known[str(real)] = {"stamp": stamp, "sha256": digest.hex()}
            try:
                write_bytes(store, json.dumps(known, indent=0, sort_keys=True).encode())
            except OSError as err:  # a read-only home: hashing still works, it is just not remembered
                log.debug("cannot remember weight hashes in %s: %s", store, err)
    return digest


def weights_sha256(paths_or_folder: str | os.PathLike | Iterable[str | os.PathLike]) -> bytes:
    """sha256 identifying a model's weights (32 bytes), as recorded in ``ModelRef``.

    Defined as sha256 over the concatenated sha256 digests of each weight file's bytes, files taken in the order of
    ``weight_files`` (relative POSIX path as UTF-8 bytes). Names fix only the order, so a renamed single file keeps its
    hash; configs and tokenizer files are not part of it. File digests are remembered (``file_sha256``).
    """
    files = weight_files(paths_or_folder)
    if not files:
        raise ModelError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {paths_or_folder}: check the model path")
    outer = hashlib.sha256()
    for path in files:
        outer.update(file_sha256(path))
    return outer.digest()


# -- fetching a profile's models ahead of time (`python -m m3cvcav engines fetch`) ------------------------------------
COMMIT = re.compile(r"[0-9a-f]{40}")
_VARIANT_TAGS = ("fp16", "bf16", "fp32", "non_ema", "ema")
_NOT_LOADED = ["*.bin", "*.pth", "*.pt", "*.ckpt", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.gguf", "*.ot",
               "*.png", "*.jpg", "*.jpeg", "*.gif", "*.mp4", "*.webp"]


@dataclass(frozen=True)
class HubModel:
    """One pinned hub repository a profile loads: the roles using it, and which weight variant they read."""

    repo: str
    revision: str | None  # a commit for `engines fetch`; None (the default branch) when only looked up in the cache
    roles: tuple[str, ...]
    variant: str | None = None

    def ignore_patterns(self) -> list[str]:
        """Files ``from_pretrained`` does not read here: other formats and other weight variants."""
        others = [f"*.{tag}.safetensors" for tag in _VARIANT_TAGS if tag != self.variant]
        return [*_NOT_LOADED, *others]


def hub_models(roles: dict[str, dict]) -> list[HubModel]:
    """The hub repositories of a profile's role tables (``repo`` + ``revision``; local folders skipped), merged per
    (repo, revision, variant). A repository not pinned to a commit is a ``ModelError``."""
    found: dict[tuple[str, str, str | None], list[str]] = {}
    for role, table in roles.items():
        repo = table.get("repo")
        if not isinstance(repo, str) or is_local(repo):
            continue
        if role == "tokenizer" and not table.get("codebooks"):
            continue  # the shipped lite tokenizer: the VAE repo is read only for VQ codebooks
        revision = str(table.get("revision") or "")
        if not COMMIT.fullmatch(revision):
            raise ModelError(f"role {role!r} loads {repo} at revision {revision or '(none)'!r}, not a commit: set "
                             f"[roles.{role}] revision to the 40-hex commit to fetch (the repo's history on the "
                             "hub lists them)")
        found.setdefault((repo, revision, table.get("variant")), []).append(role)
    return [HubModel(repo, rev, tuple(r), variant) for (repo, rev, variant), r in found.items()]


@dataclass(frozen=True)
class FetchPlan:
    """What fetching a model needs: bytes to download, bytes already in the cache, file count."""

    model: HubModel
    download: int
    cached: int
    files: int


def _hub_call(model: HubModel, call: Callable[[], T]) -> T:
    """Run a hub call, turning the hub's errors into one-line ``ModelError`` s that say what to do."""
    from huggingface_hub import errors as hf_errors

    try:
        return call()
    except hf_errors.RevisionNotFoundError as err:
        raise ModelError(f"commit {model.revision} of {model.repo} (roles {', '.join(model.roles)}) cannot be resolved "
                         "on the hub: fix its revision in the profile") from err
    except hf_errors.RepositoryNotFoundError as err:
        raise ModelError(f"repository {model.repo} (roles {', '.join(model.roles)}) is not on the hub or needs a "
                         "login (`hf auth login`): fix its repo in the profile") from err
    except (OSError, hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError) as err:
        from huggingface_hub import constants

        reason = " ".join(str(err).split())[:160]
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set"
        raise ModelError(f"cannot reach {constants.ENDPOINT} for {model.repo} ({reason}): check the network "
                         "(HF_ENDPOINT) and try again") from err


def _quiet(call: Callable[[], T], progress: bool) -> Callable[[], T]:
    """``call`` with huggingface_hub's progress bars off unless ``progress``."""
    if progress:
        return call

    def run() -> T:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        was = are_progress_bars_disabled()
        disable_progress_bars()
        try:
            return call()
        finally:
            if not was:
                enable_progress_bars()

    return run


def pipeline_patterns(model: HubModel, *, local_only: bool = False) -> list[str] | None:
    """For a diffusers pipeline repository (one with a ``model_index.json``): the files ``from_pretrained`` reads,
    ``model_index.json`` and its components' folders, as ``DiffusionPipeline.download`` picks them; a root-level
    single-file checkpoint such as sd-turbo's 5.2 GB ``sd_turbo.safetensors`` is left out. None for other
    repositories (transformers models keep their weights at the root), and with ``local_only`` for a repository
    whose cached snapshot has no ``model_index.json``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    def read_index() -> Path | None:
        try:
            return Path(hf_hub_download(model.repo, "model_index.json", revision=model.revision,
                                        local_files_only=local_only))
        except hf_errors.EntryNotFoundError:
            return None
        except hf_errors.LocalEntryNotFoundError:
            if local_only:
                return None
            raise

    index = _hub_call(model, read_index)
    if index is None:
        return None
    components = [name for name, value in json.loads(index.read_text(encoding="utf-8")).items()
                  if not name.startswith("_") and isinstance(value, list) and value[0] is not None]
    return ["model_index.json", *(f"{name}/*" for name in components)]


def snapshot(model: HubModel, *, local_only: bool = False, **kwargs):
    """``snapshot_download`` of the files of ``model`` the loaders read (``pipeline_patterns``, ``ignore_patterns``):
    the same selection fetches a model and, with ``local_only``, finds it in the cache (huggingface_hub checks a
    cached snapshot's completeness against the selection)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(model.repo, revision=model.revision,
                             allow_patterns=pipeline_patterns(model, local_only=local_only),
                             ignore_patterns=model.ignore_patterns(), local_files_only=local_only, **kwargs)


def plan_fetch(model: HubModel, *, progress: bool = True) -> FetchPlan:
    """Ask the hub (a dry run) which files of ``model`` would download and how large they are."""
    infos = _hub_call(model, _quiet(lambda: snapshot(model, dry_run=True), progress))
    download = sum(i.file_size or 0 for i in infos if i.will_download)
    cached = sum(i.file_size or 0 for i in infos if not i.will_download)
    return FetchPlan(model, download, cached, len(infos))


def fetch(model: HubModel, *, progress: bool = True) -> Path:
    """Download ``model`` into the hub cache (progress bars on stderr) and return its snapshot folder."""
    return Path(_hub_call(model, _quiet(lambda: snapshot(model), progress)))


def verify_snapshot(folder: Path) -> int:
    """Check every file of a hub-cache snapshot against the name of the blob it points to (the hub's ETag: sha256 for
    LFS files, the git blob sha1 otherwise); returns the files checked, ``ModelError`` on a mismatch. LFS digests are
    remembered (``file_sha256``), so later hashing of the weights reads nothing again."""
    checked = 0
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or not path.is_symlink():
            continue
        etag = path.resolve().name
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            ok = file_sha256(path).hex() == etag
        elif re.fullmatch(r"[0-9a-f]{40}", etag):
            data = path.read_bytes()
            ok = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == etag
        else:
            continue
        if not ok:
            raise ModelError(f"{path} does not match the hub's digest {etag[:16]}…: delete {path.resolve()} and fetch "
                             "again")
        checked += 1
    return checked
