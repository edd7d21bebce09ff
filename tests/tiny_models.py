"""Tiny random-weight instances of every ``m3cvc`` role's model class, for tests only (never a user profile).

Each builder makes the model from a config (tokenizers from an in-memory vocab + merges, no downloads), saves it with
``save_pretrained`` to a folder, and the engines load it back through the same loader code as real weights. The VLM is a
Llava (Qwen2 text model + CLIP vision tower) because Qwen2-VL's processor needs torchvision, which is not installed here;
the describer only relies on ``AutoModelForImageTextToText`` + ``AutoProcessor`` + a chat template, which both follow.
``tiny_m3cvc`` (session fixture) builds all of them once and writes a test profile TOML pointing at the folders.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TINY_SIZE = 64  # test images are TINY_SIZE × TINY_SIZE
# The scheduler the Wan2.1 diffusers repos ship (scheduler/scheduler_config.json of the 480P / VACE-1.3B ones).
WAN_SCHEDULER = {"beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001, "disable_corrector": [],
                 "dynamic_thresholding_ratio": 0.995, "final_sigmas_type": "zero", "flow_shift": 3.0,
                 "lower_order_final": True, "num_train_timesteps": 1000, "predict_x0": True,
                 "prediction_type": "flow_prediction", "sample_max_value": 1.0, "solver_order": 2, "solver_p": None,
                 "solver_type": "bh2", "steps_offset": 0, "thresholding": False, "timestep_spacing": "linspace",
                 "use_flow_sigmas": True}


def _byte_vocab() -> dict[str, int]:
    """GPT-2's byte-to-unicode alphabet: a byte-level BPE vocabulary with no merges (256 tokens)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = [chr(c) for c in printable]
    chars += [chr(256 + n) for n in range(256 - len(printable))]
    return {c: i for i, c in enumerate(chars)}


def build_vlm(folder: Path) -> Path:
    """Llava(Qwen2 text, CLIP vision) + LlavaProcessor(CLIP image processor, Qwen2 byte-level tokenizer)."""
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, Qwen2Config, Qwen2Tokenizer)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
    tok = Qwen2Tokenizer(vocab=_byte_vocab(), merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         unk_token=None, extra_special_tokens=specials)
    pad, _, eos, image = tok.convert_tokens_to_ids(specials)
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 28},
                                                                     crop_size={"height": 28, "width": 28}),
                               tokenizer=tok, chat_template=CHAT_TEMPLATE, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                       image_size=28, patch_size=14, projection_dim=32),
        text_config=Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                eos_token_id=eos, pad_token_id=pad),
        image_token_index=image, vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _clip_text(hidden: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_vocab()
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(list(vocab))})
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=37,
                                           num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                                           bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                           pad_token_id=vocab["<|endoftext|>"], projection_dim=hidden))
    return tokenizer, encoder


def build_sd(folder: Path) -> Path:
    """A Stable Diffusion pipeline (UNet, AutoencoderKL ×2 downsampling, CLIP text, Euler 'trailing' like SD-Turbo)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer, text_encoder = _clip_text(32)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=8)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=64)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", prediction_type="epsilon", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def _umt5():
    """A T5 unigram tokenizer over a few pieces and a tiny UMT5 encoder (Wan's text encoder class)."""
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(chr(c), -5.0) for c in range(ord("a"), ord("z") + 1)]
    pieces += [(chr(c), -6.0) for c in range(ord("0"), ord("9") + 1)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=64)
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(pieces), d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                          num_heads=4, relative_attention_num_buckets=8))
    return tokenizer, encoder


def _wan_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def build_wan(folder: Path) -> Path:
    """A Wan2.1 first-last-frame image-to-video pipeline (Wan VAE, Wan transformer, UMT5, CLIP vision encoder) on the
    UniPC scheduler the Wan repos ship."""
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    tokenizer, text_encoder = _umt5()
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32, image_dim=4, pos_embed_seq_len=2 * (4 * 4 + 1))
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=4, intermediate_size=16,
                                                     patch_size=1))
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_wan_vae(),
                                   transformer=transformer, scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER),
                                   image_encoder=image_encoder, image_processor=CLIPImageProcessor(crop_size=4, size=4))
    pipe.save_pretrained(folder)
    return folder


def build_wan_vace(folder: Path) -> Path:
    """A Wan2.1 VACE pipeline (Wan VAE, VACE transformer, UMT5) on the UniPC scheduler the Wan repos ship."""
    from diffusers import UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel

    tokenizer, text_encoder = _umt5()
    torch.manual_seed(0)
    transformer = WanVACETransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                            in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                            num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                            rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
    pipe = WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_wan_vae(), transformer=transformer,
                           scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER))
    pipe.save_pretrained(folder)
    return folder


def synthetic_images(count: int, size: int = TINY_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Smooth synthetic RGB images (gradients + a moving disc), (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        cx, cy = 0.3 + 0.4 * i / max(1, count - 1), 0.5
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.04).astype(np.float32)
        base = np.stack([xx, yy, 1 - xx], axis=-1) * rng.uniform(0.6, 1.0, 3)
        out.append((np.clip(base * (1 - disc[..., None]) + disc[..., None] * [0.9, 0.2, 0.1], 0, 1) * 255)
                   .astype(np.uint8))
    return out


@dataclass
class TinyM3cvc:
    """Folders of the tiny models and the test profile pointing at them."""

    vlm: Path
    sd: Path
    wan: Path
    wan_vace: Path
    codebook: Path
    profile: Path  # VQ over the tiny VAE (codebook listed)
    profile_lite_tokens: Path  # the m3cvc default: the shipped lite tokenizer, no codebook

    def settings(self, role: str, **overrides) -> dict:
        """The role's settings from the test profile through the registry (for driving a factory directly)."""
        from m3cvcav.engines.registry import load_profile

        profile = load_profile(str(self.profile))
        return {**profile.settings(role), "profile": profile.name, "role": role, **overrides}


def build_codebook(path: Path, sd: Path, vocab: int = 16) -> Path:
    """A k-means codebook over the tiny VAE's latents of synthetic images, with its entropy model when available."""
    from m3cvcav.engines.m3cvc.codebook import save_codebook
    from m3cvcav.engines.tokenizer.vae_codebook import fit_codebook
    from m3cvcav.engines.m3cvc.vae import load_vae

    vae = load_vae({"repo": str(sd), "model_id": 0}, "tokenizer")
    result = fit_codebook(vae, synthetic_images(6, seed=1), vocab=vocab, iters=8, seed=0)
    save_codebook(path, result, codebook_id=1)
    return path


def write_profile(path: Path, vlm: Path, sd: Path, wan: Path, codebook: Path | None) -> Path:
    """A test profile: ``base = "m3cvc"`` with every m3cvc role pointed at the tiny local folders, CPU, 2 steps; the
    tokenizer is VQ over the tiny VAE with ``codebook``, or the shipped lite tokenizer (the m3cvc default) without."""
    common = {"device": "cpu", "dtype": "float32"}
    roles = {
        "describer": {"repo": str(vlm), "clip_frames": 2, "image_size": 64,
                      "max_new_tokens": {"scene": 6, "frame": 8, "clip": 6}},
        "tokenizer": {"repo": str(sd), "subfolder": "vae", "codebooks": [str(codebook)], "model_id": 17} if codebook
        else {},
        "keyframe_generator": {"repo": str(sd), "steps": 2, "strength": 0.5},
        "clip_generator": {"repo": str(wan), "steps": 2, "height": 16, "width": 16, "window": 5,
                           "max_sequence_length": 16},
    }
    lines = ['base = "m3cvc"', 'name = "tiny-m3cvc-test"', ""]
    for role, table in roles.items():
        lines.append(f"[roles.{role}]")
        for key, value in {**table, **(common if role != "tokenizer" or codebook else {})}.items():
            if isinstance(value, dict):
                value = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
            else:
                value = json.dumps(value)
            lines.append(f"{key} = {value}")
        lines.append("")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


_BUILT: dict[str, Path] = {}


def _once(name: str, build: Callable[[], Path]) -> Path:
    """``build()`` once per test process: each test module importing the fixtures below registers its own copy of them,
    so ``scope="session"`` alone would rebuild the models for every module."""
    if name not in _BUILT:
        _BUILT[name] = build()
    return _BUILT[name]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return _once("root", lambda: tmp_path_factory.mktemp("tiny_m3cvc"))


@pytest.fixture(scope="session")
def tiny_vlm(tiny_root) -> Path:
    return _once("vlm", lambda: build_vlm(tiny_root / "vlm"))


@pytest.fixture(scope="session")
def tiny_sd(tiny_root) -> Path:
    return _once("sd", lambda: build_sd(tiny_root / "sd"))


@pytest.fixture(scope="session")
def tiny_wan(tiny_root) -> Path:
    return _once("wan", lambda: build_wan(tiny_root / "wan"))


@pytest.fixture(scope="session")
def tiny_wan_vace(tiny_root) -> Path:
    return _once("wan_vace", lambda: build_wan_vace(tiny_root / "wan_vace"))


@pytest.fixture(scope="session")
def tiny_codebook(tiny_root, tiny_sd) -> Path:
    return _once("codebook", lambda: build_codebook(tiny_root / "codebook.safetensors", tiny_sd))


@pytest.fixture(scope="session")
def tiny_m3cvc(tiny_root, tiny_vlm, tiny_sd, tiny_wan, tiny_wan_vace, tiny_codebook) -> TinyM3cvc:
    """Every tiny m3cvc model, built and saved once per session, and the test profile pointing at them."""
    profile = _once("profile", lambda: write_profile(tiny_root / "tiny_m3cvc.toml", tiny_vlm, tiny_sd, tiny_wan,
                                                     tiny_codebook))
    lite_tokens = _once("profile_lite_tokens", lambda: write_profile(tiny_root / "tiny_m3cvc_lite_tokens.toml",
                                                                     tiny_vlm, tiny_sd, tiny_wan, None))
    return TinyM3cvc(tiny_vlm, tiny_sd, tiny_wan, tiny_wan_vace, tiny_codebook, profile, lite_tokens)
