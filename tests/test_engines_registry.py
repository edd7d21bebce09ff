"""engines.registry: packaged and user TOML profiles, overrides, stable model ids, model_refs and verify."""
from __future__ import annotations

import pytest

import m3cvcav
from m3cvcav.engines.interfaces import ModelRef, MotionEstimator
from m3cvcav.engines.registry import ROLES, available_profiles, load_profile
from m3cvcav.core.errors import ModelError, UsageError


def test_packaged_profiles():
    assert {"lite", "m3cvc"} <= set(available_profiles())
    lite, m3cvc = load_profile(), load_profile("m3cvc")
    assert (lite.name, lite.profile_id, m3cvc.profile_id) == ("lite", 1, 2)
    assert m3cvc.roles() == [r for r in ROLES if r != "enhancer"]  # its generators restore the base themselves
    assert lite.roles() == [r for r in ROLES if r != "tokenizer"]  # lite's pixels: the base layer, enhanced
    assert lite.recorded_roles() == ["enhancer"]  # its weights are recorded; weightless generators are not
    assert m3cvc.settings("tokenizer")["factory"] == "m3cvcav.engines.m3cvc.tokenizer:load_tokenizer"
    for role, module in (("describer", "describer"), ("tokenizer", "tokenizer"), ("keyframe_generator", "keyframe"),
                         ("clip_generator", "clip")):
        assert m3cvc.settings(role)["factory"].startswith(f"m3cvcav.engines.m3cvc.{module}:")
        if role != "tokenizer":  # the shipped lite tokenizer by default: no hub model
            assert m3cvc.settings(role)["repo"] and len(m3cvc.settings(role)["revision"]) == 40
    ids = [m3cvc.settings(r)["model_id"] for r in m3cvc.recorded_roles()]
    assert len(set(ids)) == len(ids)
    assert m3cvc.settings("tokenizer")["model_id"] == 0x0401  # m3cvc's default K*: the shipped lite tokenizer


def test_each_side_runs_the_profiles_roles_of_that_side():
    """What chunked jobs' workers load as they start (plugin.parallel): derived from the profile, one table of sides."""
    lite, m3cvc = load_profile(), load_profile("m3cvc")
    assert lite.roles("encoder") == ["embedder", "motion", "describer", "enhancer"]
    assert lite.roles("decoder") == ["keyframe_generator", "clip_generator", "enhancer"]
    assert m3cvc.roles("decoder") == ["tokenizer", "keyframe_generator", "clip_generator"]
    assert set(lite.recorded_roles()) <= set(lite.roles("decoder"))  # recorded models: a decoder runs them
    with pytest.raises(UsageError, match="runs only in the encoder"):
        load_profile("lite", {"roles": {"describer": {"decoder": True, "model_id": 9}}})


# lite with keyframe tokens added: a profile with one recorded decoder model and no download
LITE_TOKENS = {"factory": "m3cvcav.engines.tokenizer:load_lite", "model_id": 0x0401, "decoder": True}


def test_engine_built_once_and_checked_against_role():
    profile = load_profile("lite", {"roles": {"motion": {"work_size": 160}}})
    motion = profile.engine("motion")
    assert isinstance(motion, MotionEstimator) and motion.work_size == 160 and profile.engine("motion") is motion
    bad = load_profile("lite", {"roles": {"motion": {"factory": "m3cvcav.engines.lite:load_keyframe_generator",
                                                     "model_id": 9}}})
    with pytest.raises(ModelError, match="not a MotionEstimator"):
        bad.engine("motion")
    missing = load_profile("lite", {"roles": {"motion": {"factory": "m3cvcav.engines.nowhere:load"}}})
    with pytest.raises(ModelError, match="not available.*-profile lite"):
        missing.engine("motion")


def test_user_profile_overrides_base(tmp_path):
    user = tmp_path / "my.toml"
    user.write_text('base = "lite"\nname = "mine"\n[roles.motion]\nwork_size = 256\npreset = "fast"\n')
    profile = load_profile(str(user))
    assert profile.name == "mine" and profile.profile_id == 1
    motion = profile.settings("motion")
    assert (motion["work_size"], motion["preset"], motion["factory"]) == (256, "fast", "m3cvcav.engines.lite:load_motion")
    assert profile.settings("embedder") == load_profile("lite").settings("embedder")
    assert profile.engine("motion").work_size == 256
    nested = tmp_path / "nested.toml"
    nested.write_text('base = "my.toml"\nname = "nested"\n[roles.motion]\npreset = "ultrafast"\n')
    deeper = load_profile(str(nested))
    assert deeper.settings("motion")["work_size"] == 256 and deeper.settings("motion")["preset"] == "ultrafast"


@pytest.mark.parametrize("text, match", [
    ('name = "x"\n', "profile_id"),
    ('name = "x"\nprofile_id = 3\n[roles.painter]\nfactory = "a:b"\n', "unknown role"),
    ('name = "x"\nprofile_id = 3\n[roles.motion]\nfactory = "nocolon"\n', "module:callable"),
    ('name = "x"\nprofile_id = 3\n[roles.tokenizer]\nfactory = "a:b"\ndecoder = true\n', "needs a model_id"),
    ('name = "x"\nprofile_id = 3\n[roles.tokenizer]\nfactory = "a:b"\ndecoder = true\nmodel_id = 5\n'
     '[roles.clip_generator]\nfactory = "a:c"\ndecoder = true\nmodel_id = 5\n', "share model_id 5"),
    ('name = "x"\nprofile_id = 3\n[roles', "not valid TOML"),
    ('base = "self.toml"\n', "names itself"),
])
def test_bad_profiles_are_usage_errors(tmp_path, text, match):
    path = tmp_path / "self.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_profile(str(path))


def test_unknown_profile_names():
    with pytest.raises(UsageError, match="unknown profile 'nope'.*lite"):
        load_profile("nope")
    with pytest.raises(UsageError, match="not found"):
        load_profile("/no/such/profile.toml")


def test_model_refs_and_verify():
    pinned = "ab" * 32
    profile = load_profile("lite", {"roles": {"tokenizer": {**LITE_TOKENS, "sha256": pinned, "name": "vq-lite"}}})
    refs = profile.model_refs()
    assert [r.model_id for r in refs] == [5, 0x0401]  # the enhancer, the tokenizer; weightless generators: not
    assert refs[1] == ModelRef(0x0401, bytes.fromhex(pinned), "vq-lite")
    profile.verify(refs)  # the same models: accepted
    with pytest.raises(ModelError, match="tokenizer model \\(id 1025\\) has weights"):
        profile.verify([refs[0], ModelRef(0x0401, b"\0" * 32, "vq-lite")])
    with pytest.raises(ModelError, match="model id 99"):
        profile.verify([ModelRef(99, b"\0" * 32, "other")])
    with pytest.raises(ModelError, match="model id 4"):
        profile.verify([ModelRef(4, b"\0" * 32, "flow-interpolator")])  # not a recorded decoder model


def test_model_refs_reuse_an_engine_built_on_another_backend():
    profile = load_profile("lite", {"roles": {"tokenizer": LITE_TOKENS}})
    tokenizer = profile.engine("tokenizer", backend="torch", offload=True)
    refs = profile.model_refs()
    assert refs[1] == tokenizer.ref
    profile.verify(refs)
    assert ("tokenizer", "torch", True) in profile._engines and not any(  # no second tokenizer built for the refs
        key[0] == "tokenizer" and key != ("tokenizer", "torch", True) for key in profile._engines)


def test_backend_tables_are_typed_and_reach_the_factory(tmp_path):
    from m3cvcav.engines.backends import TrtBackend, backends_of

    user = tmp_path / "b.toml"
    user.write_text('base = "lite"\nname = "b"\n[backends.tensorrt]\nprecision = "bf16"\n'
                    '[roles.embedder.backends.tensorrt]\nworkspace_gib = 1\n')
    profile = load_profile(str(user))
    settings = profile.role_settings("embedder", backend="tensorrt")
    assert backends_of(settings).tensorrt == TrtBackend("bf16", 1.0)  # role table over the profile's, field by field
    assert backends_of(profile.role_settings("motion")).tensorrt == TrtBackend("bf16")
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "lite"\nname = "bad"\n[backends.tensorrt]\nprecision = "int4"\n')
    with pytest.raises(UsageError, match="precision one of"):
        load_profile(str(bad))


def test_shared_profile_is_one_engine_cache():
    from m3cvcav.engines.registry import shared_profile

    profile = shared_profile("lite")
    assert shared_profile("lite") is profile
    motion = profile.engine("motion", backend="torch")
    assert profile.built("torch") == {"motion": motion} and profile.built("onnxruntime") == {}


def test_model_refs_without_building_engines(monkeypatch):
    from m3cvcav.engines import tokenizer

    calls = []
    real = tokenizer.load_lite

    def ref_only(settings):
        calls.append("ref")
        return real(settings).ref

    monkeypatch.setattr(tokenizer.load_lite, "model_ref", ref_only, raising=False)
    profile = load_profile("lite", {"roles": {"tokenizer": LITE_TOKENS}})
    refs = profile.model_refs()
    assert calls == ["ref"] and profile.built() == {} and [r.model_id for r in refs] == [5, 0x0401]
    profile.verify(refs)


def test_registry_names_the_extra_of_a_missing_package(monkeypatch):
    from m3cvcav.engines import registry

    def missing(name):
        raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")

    profile = registry.load_profile("m3cvc")
    monkeypatch.setattr(registry.importlib, "import_module", missing)
    with pytest.raises(m3cvcav.EngineError, match=r"diffusers from the optional \[m3cvc\] extra"):
        profile._factory("keyframe_generator")
