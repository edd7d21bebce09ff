"""Checks a profile's requirements before any engine is built or anything is downloaded, so that a missing package,
codebook or hub model fails in seconds with one line instead of after minutes of hub retries.

In order: the optional packages its engines import (named with the extra that brings them), the local files it names
(codebooks), then each hub model: present in the Hugging Face cache (``huggingface_hub.scan_cache_dir``), or else
downloadable (``HF_HUB_OFFLINE`` unset and the hub answering one metadata request per model within ``TIMEOUT_S``).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from m3cvcav.core.errors import ModelError, missing_package
from m3cvcav.core.log import get_logger

from .loaders import is_local

log = get_logger(__name__)

TIMEOUT_S = 3.0
# Engine packages -> the Python modules they import that come from an optional extra (setup.py).
OPTIONAL_MODULES = {"m3cvcav.engines.m3cvc": ("transformers", "diffusers", "accelerate", "ftfy")}
_checked: set[tuple[str, tuple[str, ...]]] = set()


def check_packages(profile, roles: Iterable[str]) -> None:
    """Every optional module the roles' factories need is importable, else the one-line error naming the extra."""
    for role in roles:
        module = profile.data["roles"][role]["factory"].split(":")[0]
        for prefix, needed in OPTIONAL_MODULES.items():
            if module.startswith(prefix):
                for name in needed:
                    if importlib.util.find_spec(name) is None:
                        raise missing_package(name, f"-profile {profile.name}")


def check_files(profile, roles: Iterable[str]) -> None:
    """Codebooks and other local files the roles name exist."""
    for role in roles:
        for path in profile.data["roles"][role].get("codebooks", ()):
            if not Path(path).expanduser().is_file():
                raise ModelError(f"profile {profile.name!r} role {role}: codebook {path} does not exist; make it with "
                                 "`python -m m3cvcav train tokenizer --vae ...` or fix the path")


def _cached(repos: dict[str, str | None]) -> set[str]:
    """The repo ids (with their revision, when given) that are in the local Hugging Face cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return set()
    found = set()
    for repo in info.repos:
        want = repos.get(repo.repo_id, "")
        if want == "" and repo.repo_id not in repos:
            continue
        if want is None or any(want == r.commit_hash or want in r.refs for r in repo.revisions):
            found.add(repo.repo_id)
    return found


def hub_answer(repo: str, revision: str | None, timeout: float = TIMEOUT_S) -> str | None:
    """None when the hub answers for ``repo`` at ``revision`` within ``timeout`` seconds, else why not (one short
    phrase); a single metadata request, no retries, nothing downloaded."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(repo, revision=revision, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - requests' and the hub's errors alike mean "cannot fetch it now"
        text = " ".join(str(err).split()) or type(err).__name__
        return text.split(". ")[0][:120]
    return None


def check_hub_models(profile, roles: Iterable[str]) -> None:
    """Hub models absent from the cache must be downloadable now: else one line saying why and what to do."""
    from huggingface_hub import constants

    repos: dict[str, str | None] = {}
    for role in roles:
        table = profile.data["roles"][role]
        repo = table.get("repo")
        if repo and not is_local(str(repo)):
            repos.setdefault(str(repo), table.get("revision"))
    if not repos:
        return
    missing = sorted(set(repos) - _cached(repos))
    if not missing:
        return
    names = ", ".join(missing)
    first = missing[0]
    fetch = (f"python -m m3cvcav engines fetch -profile {profile.name}, or hf download {first}"
             + (f" --revision {repos[first]}" if repos[first] else "")
             + (" and the others" if len(missing) > 1 else ""))
    where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise ModelError(f"-profile {profile.name} needs {names}, not in {where}, and HF_HUB_OFFLINE is set: unset it "
                         f"to download, or fetch first ({fetch}); -profile lite works offline")
    for repo in missing:
        why = hub_answer(repo, repos[repo])
        if why is not None:
            raise ModelError(f"-profile {profile.name} needs {names}, not in {where}, and {constants.ENDPOINT} does "
                             f"not serve {repo} now ({why}): connect, or fetch them where there is a network ({fetch}) "
                             "and copy the cache, then set HF_HUB_OFFLINE=1; -profile lite works offline")
    log.info("downloading %s from %s into %s (once)", names, constants.ENDPOINT, constants.HF_HUB_CACHE)


def check_profile(profile, roles: Iterable[str] | None = None) -> None:
    """All checks above for ``roles`` (default: every role of the profile), once per process per profile."""
    roles = tuple(profile.roles() if roles is None else (r for r in roles if r in profile.roles()))
    key = (profile.name, roles)
    if key in _checked:
        return
    check_packages(profile, roles)
    check_files(profile, roles)
    check_hub_models(profile, roles)
    _checked.add(key)
