"""engines.loaders and preflight: hub/local loading through load_pretrained (tiny models built here), offline errors,
weight hashing, and the m3cvc profile failing fast (offline, no hub, a missing extra) before any model loads."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import m3cvcav
from helpers import error_line, media_path, run_cli
from m3cvcav.engines.loaders import load_pretrained, weight_files, weights_sha256
from m3cvcav.core.errors import ModelError

torch.set_num_threads(1)


def test_missing_hub_model_offline_gives_one_clear_line(tmp_path):
    script = (
        "import transformers\n"
        "from m3cvcav.engines.loaders import load_pretrained\n"
        "from m3cvcav.core.errors import ModelError\n"
        "try:\n"
        "    load_pretrained(transformers.AutoConfig.from_pretrained, 'Qwen/Qwen2.5-VL-3B-Instruct', role='describer',"
        " profile='m3cvc', revision='66285546d2b821cf421d4f5eb2576359d3770cd3', use_safetensors=None)\n"
        "except ModelError as err:\n"
        "    print(str(err)); raise SystemExit(err.exit_status)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    msg = lines[0]
    for part in ("'Qwen/Qwen2.5-VL-3B-Instruct'", "role 'describer'", "profile 'm3cvc'",
                 "hf download Qwen/Qwen2.5-VL-3B-Instruct --revision 66285546d2b8",
                 "local folder", "-profile lite"):
        assert part in msg


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelError, match=r"no such local folder.*-profile lite"):
        load_pretrained(lambda *a, **k: None, str(tmp_path / "nowhere"), role="tokenizer", profile="mine")


def test_tiny_transformers_model_round_trip(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.save_pretrained(tmp_path / "bert")
    assert list((tmp_path / "bert").glob("*.safetensors"))
    loaded = load_pretrained(BertModel.from_pretrained, str(tmp_path / "bert"), role="describer", profile="test").eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        assert torch.equal(model(ids).last_hidden_state, loaded(ids).last_hidden_state)
    assert weights_sha256(tmp_path / "bert") == weights_sha256(sorted((tmp_path / "bert").glob("*.safetensors")))


def test_tiny_diffusers_model_round_trip_and_safetensors_only(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=2, norm_num_groups=4,
                        layers_per_block=1, sample_size=16).eval()
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_pretrained(AutoencoderKL.from_pretrained, str(tmp_path / "vae"), role="tokenizer", profile="t")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(vae.encode(x).latent_dist.mean, loaded.encode(x).latent_dist.mean)
    # The same weights as a pickle only: refused, since load_pretrained loads safetensors only.
    vae.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert not list((tmp_path / "pickled").glob("*.safetensors"))
    with pytest.raises(ModelError, match="role 'tokenizer'"):
        load_pretrained(AutoencoderKL.from_pretrained, str(tmp_path / "pickled"), role="tokenizer", profile="t")


def test_trust_remote_code_off_unless_asked_and_none_dropped(tmp_path):
    seen = []
    (tmp_path / "m").mkdir()
    load_pretrained(lambda src, **kw: seen.append(kw), str(tmp_path / "m"), role="describer", profile="p",
                    use_safetensors=None)
    load_pretrained(lambda src, **kw: seen.append(kw), "owner/model", role="describer", profile="p", revision="abc",
                    trust_remote_code=True)
    assert seen[0] == {"trust_remote_code": False}
    assert seen[1] == {"use_safetensors": True, "trust_remote_code": True, "revision": "abc"}


def test_weights_sha256_canonical_order_and_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.safetensors").write_bytes(b"bbb")
    (tmp_path / "sub" / "a.bin").write_bytes(b"aaa")
    (tmp_path / "config.json").write_text(json.dumps({"x": 1}))
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "z.safetensors").write_bytes(b"ignored")
    assert [p.name for p in weight_files(tmp_path)] == ["b.safetensors", "a.bin"]  # "b.safetensors" < "sub/a.bin"
    expected = hashlib.sha256(hashlib.sha256(b"bbb").digest() + hashlib.sha256(b"aaa").digest()).digest()
    assert weights_sha256(tmp_path) == expected
    (tmp_path / "config.json").write_text("{}")  # configs are not weights
    assert weights_sha256(tmp_path) == expected
    (tmp_path / "sub" / "a.bin").write_bytes(b"aab")
    assert weights_sha256(tmp_path) != expected
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no weight files"):
        weights_sha256(tmp_path / "empty")
    with pytest.raises(ModelError, match="not found"):
        weights_sha256(tmp_path / "absent.safetensors")


def test_file_hashes_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    import hashlib
    import os

    from m3cvcav.engines import loaders

    monkeypatch.setenv("M3CVC_HASH_CACHE", str(tmp_path / "hashes.json"))
    big = tmp_path / "model.safetensors"
    big.write_bytes(b"\1" * (1 << 20))
    reads = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if str(path).endswith(".safetensors"):
            reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    first = loaders.weights_sha256(tmp_path)
    assert first == hashlib.sha256(hashlib.sha256(b"\1" * (1 << 20)).digest()).digest() and len(reads) == 1
    assert loaders.weights_sha256(tmp_path) == first and len(reads) == 1  # remembered: not read again
    big.write_bytes(b"\2" * (1 << 20))
    os.utime(big, ns=(1, 1))
    assert loaders.weights_sha256(tmp_path) != first and len(reads) == 2  # changed: hashed again


def test_m3cvc_fails_fast_offline(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    start = time.monotonic()
    r = run_cli("-i", str(media_path("clips/bigbuckbunny.mp4")), "-profile", "m3cvc", "-frames:v", "2",
            str(tmp_path / "o.mkv"), env=env, timeout=120)
    assert time.monotonic() - start < 60
    line = error_line(r.stderr)
    assert r.returncode == 1 and "HF_HUB_OFFLINE" in line and "hf download" in line
    assert "-profile lite" in line and len(r.stderr.decode().strip().splitlines()) == 1


def test_m3cvc_fails_fast_without_a_hub(tmp_path, monkeypatch):
    from m3cvcav.engines import preflight
    from m3cvcav.engines.registry import load_profile

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(preflight, "hub_answer", lambda repo, revision: "Name or service not known")
    with pytest.raises(ModelError, match="does not serve .*Name or service not known.*-profile lite"):
        preflight.check_profile(load_profile("m3cvc"), ["describer"])


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    from m3cvcav.engines import preflight
    from m3cvcav.engines.registry import load_profile

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(m3cvcav.EngineError, match=r"transformers from the optional \[m3cvc\] extra.*-profile lite"):
        preflight.check_profile(load_profile("m3cvc"), ["describer"])
    from m3cvcav.core.errors import missing_package

    assert "[bench] extra" in str(missing_package("matplotlib", "bench rd"))
