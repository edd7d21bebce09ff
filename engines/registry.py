"""Profiles: which model (factory + settings) plays each role, loaded from TOML.

A profile file has ``name``, ``profile_id`` (stable, in the sequence header), optional ``base`` (a packaged profile name
or a path it overrides field by field) and one ``[roles.<role>]`` table per role with ``factory = "module:callable"``,
``model_id`` (stable numeric id, never derived from order), ``decoder = true`` for models the decoder needs, optional
``sha256`` (hex, pins the weights' hash without loading them) and the factory's own settings. Optional
``[backends.<name>]`` tables (and ``[roles.<role>.backends.<name>]`` over them) set each backend's typed settings
(``engines.backends.config``).

Engines are cached in one place: the ``Profile`` (per role, backend and offload); ``shared_profile(name)`` gives every
caller in a process the same ``Profile`` of a name, so its engines load once. A factory may carry a ``model_ref``
attribute (``settings -> ModelRef``) that names its weights without building the engine: the encoder then records the
decoder's models without loading them.
"""
from __future__ import annotations

import copy
import functools
import importlib
import threading
import tomllib
from importlib import resources
from pathlib import Path

from m3cvcav.core.errors import InputError, ModelError, UsageError, missing_package
from m3cvcav.core.log import get_logger

from m3cvcav.bitstream.containers.tags import PROFILE as PROFILE_TAG
from m3cvcav.bitstream.units import MODES, SequenceHeader  # MODES: CMVC's decoding modes, as streams record them

from .backends.config import parse_backends
from .interfaces import (ClipGenerator, Describer, KeyframeGenerator, KeyframeTokenizer, ModelRef, MotionEstimator,
                         PictureEnhancer, SemanticEmbedder)

log = get_logger(__name__)
ROLES = {"embedder": SemanticEmbedder, "motion": MotionEstimator, "describer": Describer,
         "tokenizer": KeyframeTokenizer, "keyframe_generator": KeyframeGenerator, "clip_generator": ClipGenerator,
         "enhancer": PictureEnhancer}
# Which side of the codec runs each role: the encoder's nodes (select: embedder, motion; describe; tokenize; base: the
# enhancer's choice of variant) and the decoder's (generate: tokens decoded, keyframes and clips made, the enhancer).
SIDES = {"embedder": ("encoder",), "motion": ("encoder",), "describer": ("encoder",),
         "tokenizer": ("encoder", "decoder"), "keyframe_generator": ("decoder",), "clip_generator": ("decoder",),
         "enhancer": ("encoder", "decoder")}
DEFAULT_PROFILE = "lite"


def available_profiles() -> list[str]:
    folder = resources.files("m3cvcav.engines").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def merge(base: dict, over: dict) -> dict:
    """``over`` laid over ``base``: tables merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    is_path = name_or_path.endswith(".toml") or "/" in name_or_path
    if is_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UsageError(f"profile file {path} not found: pass an existing .toml or one of {available_profiles()}")
        text, where = path.read_text(encoding="utf-8"), str(path.resolve())
    else:
        if name_or_path not in available_profiles():
            raise UsageError(f"unknown profile {name_or_path!r}: use one of {', '.join(available_profiles())} "
                             "or a path to a .toml file")
        text = resources.files("m3cvcav.engines").joinpath(f"profiles/{name_or_path}.toml").read_text(encoding="utf-8")
        where = name_or_path
    if where in seen:
        raise UsageError(f"profile {name_or_path} names itself as its base (through {' -> '.join(seen)})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"profile {name_or_path} is not valid TOML ({err}): fix the file") from err
    base = data.pop("base", None)
    if base is None:
        return data
    if is_path and ("/" in base or base.endswith(".toml")):
        base = str((Path(name_or_path).expanduser().parent / base))
    parent = _read(base, (*seen, where))
    parent.pop("name", None)
    return merge(parent, data)


def _validate(data: dict, source: str) -> None:
    for key in ("name", "profile_id", "roles"):
        if key not in data:
            raise UsageError(f"profile {source} has no {key!r}: add it (see docs/engines.md)")
    if not isinstance(data["profile_id"], int) or not 0 <= data["profile_id"] < 1 << 16:
        raise UsageError(f"profile {source}: profile_id must be an integer in [0, 65535]")
    parse_backends(data.get("backends"), where=f"profile {source}: backends")
    ids: dict[int, str] = {}
    for role, table in data["roles"].items():
        if "backends" in table:
            parse_backends(merge(data.get("backends", {}), table["backends"]),
                           where=f"profile {source}: roles.{role}.backends")
        if role not in ROLES:
            raise UsageError(f"profile {source}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        factory = table.get("factory", "")
        if not isinstance(factory, str) or factory.count(":") != 1:
            raise UsageError(f"profile {source}: role {role} needs factory = \"module:callable\"")
        if "model_id" in table:
            mid = table["model_id"]
            if not isinstance(mid, int) or not 0 <= mid < 1 << 16:
                raise UsageError(f"profile {source}: role {role} model_id must be an integer in [0, 65535]")
            if mid in ids and table.get("decoder") and data["roles"][ids[mid]].get("decoder"):
                raise UsageError(f"profile {source}: roles {ids[mid]} and {role} share model_id {mid}")
            ids.setdefault(mid, role)
        elif table.get("decoder"):
            raise UsageError(f"profile {source}: role {role} is needed by the decoder and so needs a model_id")
        if table.get("decoder") and "decoder" not in SIDES[role]:
            raise UsageError(f"profile {source}: role {role} runs only in the encoder: decoder = true is for the "
                             f"roles a decoder runs ({', '.join(r for r in ROLES if 'decoder' in SIDES[r])})")


class Profile:
    """A loaded profile; engines are built on first use and cached per (role, backend, offload)."""

    def __init__(self, data: dict, source: str) -> None:
        _validate(data, source)
        self.data, self.source = data, source
        self.name: str = data["name"]
        self.profile_id: int = data["profile_id"]
        self._engines: dict[tuple[str, str, bool], object] = {}
        self._lock = threading.RLock()

    def roles(self, side: str | None = None) -> list[str]:
        """The profile's roles, in ``ROLES`` order; with ``side`` ("encoder" or "decoder"), those that side runs."""
        return [r for r in ROLES if r in self.data["roles"] and (side is None or side in SIDES[r])]

    def settings(self, role: str) -> dict:
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: roles are {', '.join(ROLES)}")
        if role not in self.data["roles"]:
            raise ModelError(f"profile {self.name!r} has no {role}: use a profile that defines [roles.{role}]")
        return copy.deepcopy(self.data["roles"][role])

    def role_settings(self, role: str, *, backend: str = "auto", offload: bool = False) -> dict:
        """What the role's factory receives: its table, ``backends`` (the profile's tables merged with the role's),
        ``backend`` (-engine), ``offload`` when asked, ``profile`` and ``role``."""
        settings = self.settings(role)
        if offload:
            settings["offload"] = True
        settings["backends"] = merge(self.data.get("backends", {}), settings.get("backends", {}))
        return {**settings, "backend": backend, "profile": self.name, "role": role}

    def _factory(self, role: str):
        factory_name = self.data["roles"][role]["factory"]
        module_name, attr = factory_name.split(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except ModuleNotFoundError as err:
            if err.name and not err.name.startswith("m3cvcav"):  # an optional package: name the extra that brings it
                raise missing_package(err.name, f"profile {self.name!r} role {role}") from err
            raise ModelError(f"profile {self.name!r} role {role}: factory {factory_name} is not available "
                             f"({err}); install what it needs or use -profile lite") from err
        except (ImportError, AttributeError) as err:
            raise ModelError(f"profile {self.name!r} role {role}: factory {factory_name} is not available "
                             f"({err}); install what it needs or use -profile lite") from err

    def engine(self, role: str, *, backend: str = "auto", offload: bool = False):
        """The role's engine, built by its factory with ``role_settings``; ``offload`` (-offload) sets the role's
        ``offload`` setting (models on the GPU only while they run). Built once per (role, backend, offload)."""
        key = (role, backend, offload)
        with self._lock:
            if key in self._engines:
                return self._engines[key]
            settings = self.role_settings(role, backend=backend, offload=offload)
            # a factory may build on another role's engine (the lite describer on the embedder): the one cache's
            settings["engine_of"] = functools.partial(self.sibling, backend=backend, offload=offload)
            factory = self._factory(role)
            engine = factory(settings)
            if not isinstance(engine, ROLES[role]):
                raise ModelError(f"profile {self.name!r} role {role}: {settings['factory']} returned a "
                                 f"{type(engine).__name__}, which is not a {ROLES[role].__name__}")
            log.log(15, "%s/%s: %s", self.name, role, settings["factory"])
            self._engines[key] = engine
            return engine

    def sibling(self, role: str, *, backend: str = "auto", offload: bool = False):
        """Another role's engine for a factory (``settings["engine_of"](role)``), or None when the profile has none."""
        return self.engine(role, backend=backend, offload=offload) if role in self.data["roles"] else None

    def built(self, backend: str | None = None, offload: bool | None = None) -> dict[str, object]:
        """The engines built so far by role (of one backend / offload choice when given)."""
        return {r: e for (r, b, o), e in self._engines.items()
                if (backend is None or b == backend) and (offload is None or o == offload)}

    def recorded_roles(self) -> list[str]:
        """The roles whose models a stream records (``decoder = true``): those of ``roles("decoder")`` with weights
        (lite's passthrough generators have none)."""
        return [r for r in self.roles("decoder") if self.data["roles"][r].get("decoder")]

    def can_tt2v(self) -> bool:
        """Whether the keyframe generator makes images from text (``text_to_image = false`` in its settings: not)."""
        return "keyframe_generator" in self.roles() and \
            bool(self.data["roles"]["keyframe_generator"].get("text_to_image", True))

    def check_mode(self, mode: str) -> None:
        """Refuse a mode this profile cannot run: tt2v needs a keyframe generator that makes images from text."""
        if mode not in MODES:
            raise UsageError(f"-mode {mode!r}: give it2v (pictures + text) or tt2v (text only)")
        if mode == "tt2v" and not self.can_tt2v():
            raise ModelError(f"profile {self.name} cannot make keyframes from text (-mode tt2v): use -profile m3cvc")

    def _ref(self, role: str) -> ModelRef:
        """The role's ModelRef: pinned in the profile, else from an engine already built, else from the factory's
        ``model_ref`` (no engine built), else from building the engine."""
        table = self.data["roles"][role]
        if "sha256" in table:
            return ModelRef(table["model_id"], bytes.fromhex(table["sha256"]), table.get("name", role))
        built = [engine for (r, _, _), engine in self._engines.items() if r == role]
        cheap = getattr(self._factory(role), "model_ref", None)
        if built:
            ref = built[0].ref
        elif cheap is not None:
            ref = cheap(self.role_settings(role))
        else:
            ref = self.engine(role).ref
        if ref.model_id != table["model_id"]:
            raise ModelError(f"profile {self.name!r} role {role}: the engine reports model_id {ref.model_id}, the "
                             f"profile says {table['model_id']}; fix the factory")
        return ref

    def model_refs(self) -> list[ModelRef]:
        """The models the decoder needs (roles with ``decoder = true``), by ascending model_id."""
        return sorted((self._ref(r) for r in self.recorded_roles()), key=lambda ref: ref.model_id)

    def roles_for(self, refs: list[ModelRef]) -> list[str]:
        """The role of each model a stream names, by model id; ``ModelError`` for an id this profile lacks (a stream
        made with another profile fails here, before any weights are loaded or hashed)."""
        by_id = {self.data["roles"][r]["model_id"]: r for r in self.recorded_roles()}
        for ref in refs:
            if ref.model_id not in by_id:
                raise ModelError(f"the stream needs model id {ref.model_id} ({ref.name or 'unnamed'}), which profile "
                                 f"{self.name!r} does not have: decode with the profile it was encoded with")
        return [by_id[ref.model_id] for ref in refs]

    def verify(self, refs: list[ModelRef]) -> None:
        """``ModelError`` unless every model a stream names is installed here with the same weights."""
        for ref, role in zip(refs, self.roles_for(refs)):
            installed = self._ref(role).sha256
            if installed != ref.sha256:
                raise ModelError(f"the stream's {role} model (id {ref.model_id}) has weights {ref.sha256.hex()[:16]}…, "
                                 f"the installed ones are {installed.hex()[:16]}…: install the weights it was encoded "
                                 f"with (profile {self.name!r})")

    def close(self) -> None:
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if close:
                close()
        self._engines.clear()


class Engines:
    """A profile's engines on one backend (``-engine``), offloaded when asked (``-offload``): what the nodes take as
    ``engines=``. A view of the process's shared :class:`Profile` (``profile``), whose cache builds each engine once."""

    def __init__(self, name: str = DEFAULT_PROFILE, backend: str = "auto", offload: bool = False):
        self.profile = shared_profile(name)
        self.name, self.profile_id = self.profile.name, self.profile.profile_id
        self.backend, self.offload = backend, offload

    def engine(self, role: str):
        return self.profile.engine(role, backend=self.backend, offload=self.offload)

    def roles(self) -> list[str]:
        return self.profile.roles()

    def optional(self, role: str):
        """The role's engine, or None when the profile has no such role (lite: no keyframe generator)."""
        return self.engine(role) if role in self.roles() else None

    def check_mode(self, mode: str) -> None:
        self.profile.check_mode(mode)

    def can_tt2v(self) -> bool:
        return self.profile.can_tt2v()

    def backends(self) -> str:
        """Which backend each engine used so far ran on, e.g. ``embedder=onnxruntime,motion=opencv``."""
        built = self.profile.built(self.backend, self.offload)
        return ",".join(f"{role}={backend_of(engine)}" for role, engine in sorted(built.items()))


def backend_of(engine: object) -> str:
    """The backend an engine ran on: its network engine's, its networks' (m3cvc: ``backend`` / ``backends``), a wrapped
    engine's, torch for modules, else opencv."""
    state = getattr(engine, "__dict__", {})
    if isinstance(state.get("backends"), dict):
        return "+".join(sorted(set(state["backends"].values())))
    if isinstance(state.get("backend"), str):
        return state["backend"]
    if "engine" in state and getattr(state["engine"], "backend", ""):
        return state["engine"].backend
    for inner in ("embedder", "net", "motion"):
        value = state.get(inner)
        if value is None:
            continue
        if inner == "net":
            return "torch"
        return backend_of(value)
    return "opencv" if any(type(v).__module__ == "cv2" for v in state.values()) else "none"


def stream_profile(profile: str | None, tags: dict[str, str], header: SequenceHeader) -> str:
    """The profile that decodes a stream: the one asked for, else the one its tags name, else the installed profile
    with its ``profile_id``; InputError when there is none."""
    if profile or tags.get(PROFILE_TAG):
        return profile or tags[PROFILE_TAG]
    for name in available_profiles():
        if load_profile(name).profile_id == header.profile_id:
            return name
    raise InputError(f"the stream was made with profile id {header.profile_id}, which is not installed: pass "
                     "-profile")


_SHARED_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _shared(name_or_path: str) -> Profile:
    return load_profile(name_or_path)


def shared_profile(name_or_path: str = DEFAULT_PROFILE) -> Profile:
    """The process-wide ``Profile`` of a name or path, loaded once: every caller shares its engines (the one cache)."""
    with _SHARED_LOCK:
        return _shared(name_or_path)


def load_profile(name_or_path: str = DEFAULT_PROFILE, overrides: dict | None = None) -> Profile:
    """A packaged profile by name (``lite``, ``m3cvc``) or a TOML file path, with ``overrides`` merged over it."""
    data = _read(name_or_path)
    if overrides:
        data = merge(data, overrides)
    return Profile(data, name_or_path)
