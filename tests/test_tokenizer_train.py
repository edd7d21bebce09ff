"""Tokenizer network and training: shapes at odd sizes, 2 steps from scratch + resume, codebook-only mode over a VAE."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from m3cvcav.cli_train import main as train_main
from m3cvcav.engines.tokenizer.model import STRIDE, NetConfig, TokenizerNet, pad_to_stride
from m3cvcav.engines.tokenizer.train import TrainOptions, lr_at, train
from m3cvcav.core.errors import UsageError

torch.set_num_threads(1)
SMALL = NetConfig(latent_dim=8, vocab=32, levels=2, widths=(8, 8, 16, 16))


def _pool(n: int = 3, size: int = 160) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    return [np.stack([(xx * (i + 1)) % 256, (yy * 3 + i * 40) % 256, (xx + yy) % 256], -1).astype(np.uint8)
            for i in range(n)]


def test_network_shapes_at_odd_size():
    net = TokenizerNet(SMALL).eval()
    x = torch.rand(1, 3, 241, 321)
    xp = pad_to_stride(x)
    assert xp.shape[-2:] == (256, 336) and torch.equal(xp[..., :241, :321], x)
    idx = net.encode_indices(xp, 2)
    assert idx.shape == (1, 2, 256 // STRIDE, 336 // STRIDE) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < SMALL.vocab
    y = net.decode_indices(idx)
    assert y.shape == (1, 3, 256, 336) and 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def _opts(tmp_path, steps):
    return TrainOptions(out=tmp_path, steps=steps, batch=2, crop=112, threads=1, cfg=SMALL, pool=_pool(), log_every=1)


def test_train_two_steps_then_resume_matches_straight_run(tmp_path):
    ckpt = train(_opts(tmp_path / "a", 2))
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 2
    train(TrainOptions(**{**_opts(tmp_path / "a", 3).__dict__, "resume": True}))
    straight = train(_opts(tmp_path / "b", 3))
    resumed = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    direct = torch.load(straight, weights_only=False)
    assert resumed["step"] == direct["step"] == 3
    for key, value in direct["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    log = (tmp_path / "a" / "train.log").read_text()
    assert "resumed from" in log and "perplexity" in log and "usage" in log


def test_warm_restart_starts_a_new_schedule_segment_that_later_resumes_keep(tmp_path):
    train(_opts(tmp_path, 2))
    opts = TrainOptions(**{**_opts(tmp_path, 4).__dict__, "resume": True, "warm_restart": True, "lr": 1e-3})
    assert lr_at(2, opts, start=2) == pytest.approx(1e-3)  # warm-up of a 2-step segment is 1 step
    assert lr_at(2, opts) < 1e-3  # the old schedule would be mid-cosine
    state = torch.load(train(opts), weights_only=False)
    assert state["step"] == 4 and state["sched_start"] == 2
    plain = TrainOptions(**{**_opts(tmp_path, 5).__dict__, "resume": True})
    assert torch.load(train(plain), weights_only=False)["sched_start"] == 2
    assert "warm restart: lr 1.00e-03, schedule 2..4" in (tmp_path / "train.log").read_text()


def test_warm_restart_needs_resume_and_steps_beyond_the_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="needs --resume"):
        train(TrainOptions(**{**_opts(tmp_path, 2).__dict__, "warm_restart": True}))
    train(_opts(tmp_path, 2))
    with pytest.raises(UsageError, match="at step 2"):
        train(TrainOptions(**{**_opts(tmp_path, 2).__dict__, "resume": True, "warm_restart": True}))


def test_resume_without_checkpoint_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        train(TrainOptions(**{**_opts(tmp_path, 2).__dict__, "resume": True}))


def test_cli_rejects_unknown_model_and_bad_crop():
    with pytest.raises(UsageError, match="trainable models are .tokenizer. and .enhancer."):
        train_main(["vae"])
    with pytest.raises(UsageError, match="multiple of 16"):
        train_main(["tokenizer", "--crop", "100"])


def test_codebook_only_mode_over_tiny_vae(tmp_path):
    from diffusers import AutoencoderKL

    from m3cvcav.engines.tokenizer.vae_codebook import CodebookOptions, train_codebook

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, sample_size=32)
    vae.save_pretrained(tmp_path / "vae")
    opts = dict(out=tmp_path / "run", vae=str(tmp_path / "vae"), batch=2, crop=112, threads=1, levels=2, vocab=16,
                pool=_pool())
    train_codebook(CodebookOptions(steps=2, **opts))
    out = train_codebook(CodebookOptions(steps=3, resume=True, **opts))
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["steps"] == "3" and f.metadata()["vae"] == str(tmp_path / "vae")
        embeds = [f.get_tensor(f"quantizer.levels.{i}.embed") for i in range(2)]
    assert all(e.shape == (16, 4) and torch.isfinite(e).all() for e in embeds)
    assert "resumed codebook training" in (tmp_path / "run" / "train.log").read_text()


def test_codebook_only_mode_reports_missing_vae(tmp_path):
    from m3cvcav.engines.tokenizer.vae_codebook import CodebookOptions, train_codebook
    from m3cvcav.core.errors import ModelError

    with pytest.raises(ModelError, match=r"model folder .*nope.* cannot be loaded"):
        train_codebook(CodebookOptions(out=tmp_path, vae=str(tmp_path / "nope"), steps=1, pool=_pool()))
    with pytest.raises(ModelError, match=r"'nobody/no-vae' .* not available here .*hf download nobody/no-vae"):
        train_codebook(CodebookOptions(out=tmp_path, vae="nobody/no-vae", vae_revision="3" * 40, steps=1,
                                       pool=_pool()))


def test_codebook_over_a_pipeline_from_the_hub_cache(tiny_sd, tmp_path, monkeypatch):
    """`--vae stabilityai/sd-turbo --vae-revision <commit>`: a pipeline repo in the hub cache, whose VAE is in vae/ —
    loaded from the cache at that commit, offline (the trainer used to load the repo root, without revision)."""
    from hub_server import HubServer, Repo
    from huggingface_hub import constants, snapshot_download

    from m3cvcav.engines.tokenizer.vae_codebook import CodebookOptions, train_codebook

    commit = "4" * 40
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with HubServer({"tiny/sd": Repo(tiny_sd, commit)}) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        snapshot_download("tiny/sd", revision=commit)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = train_codebook(CodebookOptions(out=tmp_path / "run", vae="tiny/sd", vae_revision=commit, steps=1, batch=1,
                                         crop=112, threads=1, levels=1, vocab=8, pool=_pool()))
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("quantizer.levels.0.embed").shape == (8, 4)
