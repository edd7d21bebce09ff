"""``python -m m3cvcav engines list|build|purge`` on the lite profile; ``engines fetch`` against a loopback hub."""
from __future__ import annotations

import json

import pytest
import torch

from m3cvcav.__main__ import main

torch.set_num_threads(1)


def test_engines_build_list_purge(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path / "cache"))
    assert main(["engines", "list"]) == 0
    assert "empty" in capsys.readouterr().out
    assert main(["engines", "build", "-profile", "lite", "-s", "640x360", "-engine", "auto"]) == 0
    out = capsys.readouterr().out
    assert "embedder" in out and "efficientnet-lite0" in out
    assert main(["engines", "list", "-json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    onnx = [e for e in listed["entries"] if e["name"] == "efficientnet-lite0"]
    assert len(onnx) == 1 and onnx[0]["kind"] == "onnx" and onnx[0]["size"] > 1_000_000
    assert (tmp_path / "cache" / f"{onnx[0]['key']}.onnx").stat().st_size == onnx[0]["size"]
    assert main(["engines", "list"]) == 0
    assert onnx[0]["key"][:16] in capsys.readouterr().out
    assert main(["engines", "purge"]) == 0
    assert "purged" in capsys.readouterr().out
    assert not list((tmp_path / "cache").glob("*.onnx"))


@pytest.mark.parametrize("argv, status, message", [
    (["engines", "build", "-s", "12"], 2, "-s '12': give the size as WIDTHxHEIGHT"),
    (["engines", "build", "-engine", "torch"], 2, "torch needs no build"),
    (["engines", "frobnicate"], 2, "engines:"),
    (["engines", "build", "-profile", "nope"], 2, "unknown profile 'nope'"),
])
def test_engines_cli_errors(argv, status, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path))
    assert main(argv) == status
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


COMMIT = "1" * 40


def _hub_profile(path, revision: str = COMMIT):
    """The m3cvc profile with its hub roles pointed at tiny repos on the test hub (the tokenizer is the shipped one)."""
    path.write_text(f'base = "m3cvc"\nname = "hub-test"\n'
                    f'[roles.describer]\nrepo = "tiny/vlm"\nrevision = "{revision}"\n'
                    f'[roles.keyframe_generator]\nrepo = "tiny/sd"\nrevision = "{revision}"\ndevice = "cpu"\n'
                    f'[roles.clip_generator]\nrepo = "tiny/wan"\nrevision = "{revision}"\ndevice = "cpu"\n')
    return path


def _run(args: list[str], env: dict) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "m3cvcav", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=240)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
def test_engines_fetch_from_a_loopback_hub(tiny_vlm, tiny_sd, tiny_wan, tmp_path, monkeypatch, capsys):
    """`engines fetch` against tiny repos served in the hub's layout on 127.0.0.1 (HF_ENDPOINT): disk needed said
    first, every file downloaded and verified against the hub's digests, the offline command printed; then, offline,
    the profile's decoder models are found in the cache with the same weights as the source folders; a commit the
    hub does not have is one line. A pipeline repo's root-level single-file checkpoint (sd-turbo's 5.2 GB
    ``sd_turbo.safetensors``, which no loader reads) is not fetched."""
    import shutil

    from hub_server import HubServer, Repo
    from safetensors.torch import save_file

    from m3cvcav.engines.m3cvc.common import pipeline_files
    from m3cvcav.engines.loaders import weights_sha256

    profile = _hub_profile(tmp_path / "hub.toml")
    hf = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
          "M3CVC_HASH_CACHE": str(tmp_path / "h.json")}
    sd_repo = shutil.copytree(tiny_sd, tmp_path / "sd-repo")
    save_file({"w": torch.zeros(64)}, str(sd_repo / "sd_turbo.safetensors"))
    repos = {"tiny/vlm": Repo(tiny_vlm, COMMIT), "tiny/sd": Repo(sd_repo, COMMIT), "tiny/wan": Repo(tiny_wan, COMMIT)}
    with HubServer(repos) as hub:
        status, out, err = _run(["engines", "fetch", "-profile", str(profile), "-quiet"],
                                {**hf, "HF_ENDPOINT": hub.endpoint})
        assert status == 0, err
        lines = out.splitlines()
        need = next(i for i, line in enumerate(lines) if line.startswith("disk needed:"))
        assert need < next(i for i, line in enumerate(lines) if "verified" in line)  # the disk is said first
        for repo, source in repos.items():
            count = sum(1 for p in source.folder.rglob("*") if p.is_file() and p.name != "sd_turbo.safetensors")
            assert f"{repo}@{COMMIT[:12]}" in out and f"{repo}: {count} files verified" in out
        assert not any(p.endswith("/sd_turbo.safetensors") for m, p in hub.requests if m == "GET")
        assert "HF_HUB_OFFLINE=1 python -m m3cvcav" in lines[-1] and str(profile) in lines[-1]
        downloads = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
        status, out, _ = _run(["engines", "fetch", "-profile", str(profile), "-quiet"],
                              {**hf, "HF_ENDPOINT": hub.endpoint})
        assert status == 0 and "0 B to download" in out  # already cached: nothing fetched again
        assert [p for m, p in hub.requests if m == "GET" and "/resolve/" in p] == downloads

        # in this process (what HF_ENDPOINT sets at import): a commit the hub does not have is one line
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
        capsys.readouterr()
        assert main(["engines", "fetch", "-profile", str(_hub_profile(tmp_path / "bad.toml", "2" * 40)), "-quiet"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "cannot be resolved" in err
        assert "2" * 40 in err and "fix its revision" in err

    # offline, hub gone: the encoder names the decoder's models from the cache alone, with the source's weights
    code = ("from m3cvcav.engines.registry import load_profile; "
            f"print(*[f'{{r.model_id}}={{r.sha256.hex()}}' for r in load_profile({str(profile)!r}).model_refs()])")
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **hf, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    refs = dict(item.split("=") for item in done.stdout.split())
    local = {"role": "x", "profile": "t"}
    assert set(refs) == {"18", "19", str(0x0401)}
    assert refs["18"] == weights_sha256(pipeline_files({**local, "repo": str(tiny_sd)})).hex()
    assert refs["19"] == weights_sha256(pipeline_files({**local, "repo": str(tiny_wan)})).hex()


def test_engines_fetch_refuses_unpinned_repos(tmp_path, capsys):
    profile = _hub_profile(tmp_path / "main.toml", "main")
    assert main(["engines", "fetch", "-profile", str(profile)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a commit" in err[0] and "revision" in err[0]


def test_every_shipped_hub_model_is_pinned():
    from m3cvcav.engines.loaders import hub_models
    from m3cvcav.engines.registry import load_profile

    profile = load_profile("m3cvc")
    models = hub_models({role: profile.settings(role) for role in profile.roles()})
    assert {m.repo for m in models} == {"Qwen/Qwen2.5-VL-3B-Instruct", "stabilityai/sd-turbo",
                                        "Wan-AI/Wan2.1-VACE-1.3B-diffusers"}
