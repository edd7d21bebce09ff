"""``python -m m3cvcav engines list|build|purge`` on the lite profile."""
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
    (["engines", "build", "-s", "12"], 2, "bad size '12'"),
    (["engines", "build", "-engine", "torch"], 2, "torch needs no build"),
    (["engines", "frobnicate"], 2, "engines:"),
    (["engines", "build", "-profile", "nope"], 2, "unknown profile 'nope'"),
])
def test_engines_cli_errors(argv, status, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("M3CVC_ENGINE_CACHE", str(tmp_path))
    assert main(argv) == status
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
