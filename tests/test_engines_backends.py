"""engines.backends: engine interface, backend selection, ONNX export + onnxruntime parity, TensorRT cache key, engine
cache (lock, temp-file rename, rebuild of entries that fail to load), resolution buckets."""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch

from m3cvcav.engines.backends import (EngineCache, ExportSpec, ShapeProfile, TensorSpec, bucket_profiles,
                                      create_engine, onnx_for, pick_profile, select_backend, trt_engine_key)
from m3cvcav.core.errors import EngineError, UsageError

torch.set_num_threads(1)


def tiny_spec() -> ExportSpec:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU6(), torch.nn.Conv2d(4, 2, 1))
    return ExportSpec("tiny", net, (TensorSpec("image", ("batch", 3, "height", "width")),),
                      (TensorSpec("out", ("batch", 2, "height", "width")),), {"image": torch.rand(1, 3, 16, 16)},
                      bucket_profiles("image", [(64, 64), (32, 32)]))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path / "engines"))
    return EngineCache()


def test_tiny_network_torch_vs_onnxruntime(cache):
    spec = tiny_spec()
    x = np.random.default_rng(1).random((2, 3, 20, 28), dtype=np.float32)
    with create_engine(spec, "torch") as eager, create_engine(spec, "onnxruntime", cache=cache) as ort:
        a, b = eager({"image": x})["out"], ort({"image": x})["out"]
        assert isinstance(a, np.ndarray) and a.shape == (2, 2, 20, 28)
        np.testing.assert_allclose(a, b, atol=1e-5)
        out = ort({"image": torch.from_numpy(x)})["out"]  # torch in -> torch out
        assert isinstance(out, torch.Tensor)
        with pytest.raises(EngineError, match="shape"):
            ort({"image": x[:, :2]})
        with pytest.raises(EngineError, match="takes"):
            ort({"x": x})
        assert (eager.backend, ort.backend) == ("torch", "onnxruntime")  # each engine names what runs it
    assert [e.kind for e in cache.entries()] == ["onnx"]


def test_auto_on_cpu_falls_back_with_reasons(caplog, monkeypatch):
    monkeypatch.setattr("m3cvcav.engines.backends._REPORTED", set())
    with caplog.at_level(logging.INFO - 5, logger="m3cvcav"):
        chosen = select_backend("auto", device="cpu", name="net")
        select_backend("auto", device="cpu", name="net")
    assert chosen == "onnxruntime"
    assert caplog.text.count("net: not using tensorrt:") == 1  # each fallback reason is said once per process
    with caplog.at_level(logging.INFO - 5, logger="m3cvcav"):
        assert select_backend("auto", device="cpu", exportable=False, name="net2") == "torch"
    assert "net2: not using onnxruntime: this network has no ONNX export" in caplog.text
    with pytest.raises(EngineError, match="-engine tensorrt cannot run net"):
        select_backend("tensorrt", device="cpu", name="net")
    with pytest.raises(UsageError, match="unknown -engine"):
        select_backend("tvm")


def test_trt_key_changes_with_each_input():
    base = dict(onnx=b"graph", profiles=bucket_profiles("x", [(256, 256)]), precision="fp16",
                flags={"fp16": True, "workspace": 1 << 30}, trt_version="10.3.0", gpu_name="NVIDIA H100",
                capability=(9, 0))
    key = trt_engine_key(**base)
    assert len(key) == 64 and key == trt_engine_key(**dict(base, flags={"workspace": 1 << 30, "fp16": True}))
    changes = dict(onnx=b"graph2", profiles=bucket_profiles("x", [(512, 512)]), precision="bf16",
                   flags={"fp16": True, "workspace": 2 << 30}, trt_version="10.4.0", gpu_name="NVIDIA H200",
                   capability=(8, 9))
    keys = {name: trt_engine_key(**dict(base, **{name: value})) for name, value in changes.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(keys)


def test_cache_builds_once_reloads_and_rebuilds_corrupt(cache):
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"GOOD" + bytes(len(builds))

    def load(data: bytes):
        return data if data.startswith(b"GOOD") else None

    assert cache.get_or_build("k1", "plan", build, load, {"name": "n"}).startswith(b"GOOD")
    assert cache.get_or_build("k1", "plan", build, load, {"name": "n"}) and len(builds) == 1
    path = cache.path("k1", "plan")
    path.write_bytes(b"garbage")  # e.g. a plan from another TensorRT build
    assert cache.get_or_build("k1", "plan", build, load, {"name": "n"}) == b"GOOD\x00\x00" and len(builds) == 2
    assert sorted(p.name for p in cache.root.iterdir()) == ["k1.json", "k1.lock", "k1.plan"]  # no temp files left
    with pytest.raises(EngineError, match="does not load"):
        cache.get_or_build("k2", "plan", build, lambda data: None, {"name": "bad"})
    entry = {e.key: e for e in cache.entries()}["k1"]
    assert entry.size == 6 and entry.meta["name"] == "n" and entry.meta["kind"] == "plan"


def test_cache_build_failure_leaves_nothing(cache):
    def build() -> bytes:
        raise EngineError("builder failed")

    with pytest.raises(EngineError, match="builder failed"):
        cache.get_or_build("k3", "onnx", build, lambda d: d, {})
    assert not cache.path("k3", "onnx").exists() and cache.entries() == []


def test_cache_lock_serialises_concurrent_builders(cache):
    builds, barrier = [], threading.Barrier(4)

    def build() -> bytes:
        builds.append(1)
        return b"plan"

    def worker() -> None:
        barrier.wait()
        cache.get_or_build("shared", "plan", build, lambda d: d, {})

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1


def test_purge(cache):
    onnx_for(tiny_spec(), cache)
    cache.get_or_build("abc", "plan", lambda: b"x" * 10, lambda d: d, {})
    (cache.root / "timing-10-gpu.cache").write_bytes(b"t")
    freed = cache.purge(["abc"])
    assert freed == 10 and [e.kind for e in cache.entries()] == ["onnx"]
    assert cache.purge() > 0 and cache.entries() == [] and not list(cache.root.glob("timing-*"))


def test_onnx_cache_key_follows_weights(cache):
    spec = tiny_spec()
    first = spec.digest()
    with torch.no_grad():
        spec.module[0].bias.add_(1.0)
    assert spec.digest() != first


def test_bucketing_picks_smallest_covering_profile():
    profiles = bucket_profiles("image", [(512, 512), (256, 256), (1088, 1920)], max_batch=8)
    assert [p.name for p in profiles] == ["256x256", "512x512", "1088x1920"]
    assert profiles[0].opt["image"] == (1, 3, 256, 256) and profiles[2].max["image"] == (8, 3, 1088, 1920)
    assert pick_profile(profiles, {"image": (1, 3, 200, 256)}) == 0
    assert pick_profile(profiles, {"image": (8, 3, 300, 256)}) == 1
    assert pick_profile(profiles, {"image": (2, 3, 720, 1280)}) == 2
    with pytest.raises(EngineError, match="fit no optimisation profile"):
        pick_profile(profiles, {"image": (9, 3, 256, 256)})
    with pytest.raises(EngineError):
        pick_profile(profiles, {"image": (1, 3, 2160, 3840)})
    assert ShapeProfile("p", {"x": (1,)}, {"x": (2,)}, {"x": (3,)}).covers({"x": (3,)})


def test_unknown_precision_rejected():
    from m3cvcav.engines.backends.trt_backend import builder_flags

    assert builder_flags("bf16", 1 << 20) == {"fp16": False, "bf16": True, "workspace": 1 << 20, "tf32": True}
    with pytest.raises(EngineError, match="precision"):
        builder_flags("int4", 1)


def _tensorrt_ready() -> str | None:
    from m3cvcav.engines.backends.trt_backend import unavailable_reason

    return unavailable_reason("cuda")


@pytest.mark.tensorrt
@pytest.mark.cuda
@pytest.mark.skipif(_tensorrt_ready() is not None, reason=f"TensorRT cannot run here: {_tensorrt_ready()}")
def test_tensorrt_engine_matches_torch_and_is_cached(cache):
    spec = tiny_spec()
    x = torch.rand(2, 3, 32, 48, device="cuda")
    with create_engine(spec, "torch", device="cuda") as eager, \
            create_engine(spec, "tensorrt", device="cuda", precision="fp32", cache=cache) as trt:
        torch.testing.assert_close(trt({"image": x})["out"], eager({"image": x})["out"], atol=1e-3, rtol=1e-3)
    plans = [e for e in cache.entries() if e.kind == "plan"]
    assert len(plans) == 1 and plans[0].meta["precision"] == "fp32"
    plans[0].path.write_bytes(b"not a plan")
    with create_engine(spec, "tensorrt", device="cuda", precision="fp32", cache=cache) as trt:
        assert trt({"image": x})["out"].shape == (2, 2, 32, 48)
    assert os.path.getsize(plans[0].path) > 100


def test_external_data_export_round_trips(cache):
    import dataclasses

    import onnx

    spec = dataclasses.replace(tiny_spec(), external_data=True)  # forced: the path every graph over 2 GiB takes
    assert spec.digest() != tiny_spec().digest()
    model = onnx_for(spec, cache)
    assert model.data is not None and model.data.exists() and model.data.name == model.path.name + ".data"
    graph = onnx.load(str(model.path), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    assert model.data.stat().st_size >= spec.weight_bytes() > 0  # the weights are in the data file
    x = np.random.default_rng(2).random((1, 3, 24, 16), dtype=np.float32)
    with create_engine(spec, "torch") as eager, create_engine(spec, "onnxruntime", cache=cache) as ort:
        np.testing.assert_allclose(ort({"image": x})["out"], eager({"image": x})["out"], atol=1e-5)
    assert onnx_for(spec, cache) == model  # cached: not exported again
    (entry,) = cache.entries()
    assert entry.size == len(model) and entry.meta["external_data"] is True
    model.data.unlink()  # a half entry is exported again
    assert onnx_for(spec, cache).data.exists()
    assert cache.purge() > 0 and not list(cache.root.glob("*.onnx*"))


def test_fp16_and_bf16_variants(cache):
    import onnx

    spec = tiny_spec()
    for dtype, onnx_type in (("float16", onnx.TensorProto.FLOAT16), ("bfloat16", onnx.TensorProto.BFLOAT16)):
        variant = spec.variant(dtype)
        assert variant.digest() != spec.digest() and variant.inputs[0].dtype == dtype and spec.dtype == "float32"
        graph = onnx.load(str(onnx_for(variant, cache).path))
        assert {t.data_type for t in graph.graph.initializer} == {onnx_type}
        assert graph.graph.input[0].type.tensor_type.elem_type == onnx_type
    x = np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32)
    from m3cvcav.engines.backends.ort_backend import OrtEngine

    half = spec.variant("float16")
    with OrtEngine("tiny-fp16", onnx_for(half, cache), spec.inputs, spec.outputs) as ort, \
            create_engine(spec, "torch") as eager:
        out = ort({"image": x})["out"]
        assert out.dtype == np.float16
        np.testing.assert_allclose(out.astype(np.float32), eager({"image": x})["out"], atol=2e-2)
    with pytest.raises(EngineError, match="no int8 variant"):
        spec.variant("int8")


def test_typed_backends_from_profile_tables():
    from m3cvcav.engines.backends import Backends, OrtBackend, TrtBackend, backends_of, parse_backends

    b = parse_backends({"tensorrt": {"precision": "bf16", "workspace_gib": 4}, "onnxruntime": {"threads": 2}},
                       "tensorrt")
    assert b.requested == "tensorrt" and b.tensorrt == TrtBackend("bf16", 4.0) and b.onnxruntime == OrtBackend(2)
    assert b.tensorrt.workspace == 4 << 30 and b.config("torch").compile is False
    with pytest.raises(dataclasses_frozen_error()):
        b.tensorrt.precision = "fp32"
    assert backends_of({"backend": "onnxruntime"}) == Backends("onnxruntime")
    assert backends_of({"backend": b}) is b
    for tables, message in (({"tensorrt": {"precision": "int4"}}, "precision one of"),
                            ({"tensorrt": {"speed": 1}}, "unknown setting.*speed.*tensorrt takes precision"),
                            ({"openvino": {}}, "unknown backend.*openvino"),
                            ({"onnxruntime": {"threads": "two"}}, "threads = 'two' must be a int")):
        with pytest.raises(UsageError, match=message):
            parse_backends(tables)
    with pytest.raises(UsageError, match="unknown -engine"):
        Backends("cuda")


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_create_engine_takes_typed_settings(cache):
    from m3cvcav.engines.backends import Backends, OrtBackend

    spec = tiny_spec()
    with create_engine(spec, Backends("onnxruntime", onnxruntime=OrtBackend(threads=1)), device="cpu",
                       cache=cache) as ort:
        assert ort.backend == "onnxruntime" and ort._session.get_session_options().intra_op_num_threads == 1


def test_no_tensorrt_hint_without_cuda():
    from m3cvcav.engines.backends.trt_backend import unavailable_reason

    assert "pip install" not in unavailable_reason("cpu")
