"""The m3cvc engines end to end with the tiny test profile: encode → .mkv → decode through the API (IT2V, twice, to the
same frames) and through the CLI in both CMVC modes, with edits of the descriptions; lite refuses TT2V."""
from __future__ import annotations

import json
import logging

import av
import numpy as np
import pytest
import torch

import m3cvcav.api as api
from m3cvcav.__main__ import main
from m3cvcav.bitstream.containers import open_reader
from tiny_models import synthetic_images

torch.set_num_threads(1)


def test_encode_decode_with_tiny_m3cvc(tiny_m3cvc, tmp_path):
    frames = synthetic_images(12, size=64)
    out, back = tmp_path / "out.mkv", tmp_path / "back.mkv"
    # tokens=keep: the tiny random tokenizer's keyframes never beat the base, so by default they would be dropped
    api.encode(iter(frames), out, profile=str(tiny_m3cvc.profile), fps=12, overwrite=True, vf="base=tokens=keep")
    reader = open_reader(out)
    segments = list(reader.segments())
    assert reader.header.profile_id == 2 and [m.model_id for m in reader.header.models] == [17, 18, 19]
    assert segments and all(s.tokens is not None and isinstance(s.frame_text, str) for s in segments)
    assert sum(s.header.frame_count for s in segments) == len(frames)
    decoded = _decode(out, back, tiny_m3cvc.profile)
    assert len(decoded) == len(frames) and decoded[0].shape == (64, 64, 3)
    again = _decode(out, tmp_path / "again.mkv", tiny_m3cvc.profile)  # same stream + weights + seed → same frames
    assert all(np.array_equal(a, b) for a, b in zip(decoded, again))


@pytest.mark.slow
def test_no_codebook_needed_both_modes(tiny_m3cvc, tmp_path, capsys):
    """The m3cvc default: keyframes coded by the shipped lite tokenizer (no codebook, no training), restored by
    img2img guided by D^F; the header records the lite tokenizer; it2v and tt2v streams both decode."""
    source, profile = tmp_path / "in.mkv", tiny_m3cvc.profile_lite_tokens
    _write_input(source, synthetic_images(8, size=64))
    encode = ["-nostats", "-i", str(source), "-c", "m3cvc", "-profile", str(profile), "-vf",
              "select=min=4:max=4,base=tokens=keep"]  # the tiny tokenizer never helps: keep its tokens anyway
    it2v, tt2v = tmp_path / "it2v.mkv", tmp_path / "tt2v.mkv"
    assert main([*encode, "-y", str(it2v)]) == 0
    assert main([*encode, "-mode", "tt2v", "-y", str(tt2v)]) == 0
    header = open_reader(it2v).header
    assert header.profile_id == 2 and sorted(m.model_id for m in header.models) == [18, 19, 0x0401]
    assert _probe(it2v, capsys)["layers"]["tokens"] > 0 and _probe(tt2v, capsys)["layers"]["tokens"] == 0
    for stream in (it2v, tt2v):
        frames = _cli_decode(stream, tmp_path / f"{stream.stem}.out.mkv", profile)
        assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    # a stream coded with the lite tokens does not decode with a VQ profile: one line naming what to do
    assert main(["-i", str(it2v), "-profile", str(tiny_m3cvc.profile), "-y", str(tmp_path / "x.mkv")]) == 1
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line and "it/s]" not in line]
    assert len(lines) == 1 and "model id 1025" in lines[0]  # (diffusers' loading bars aside)


def _decode(src, dst, profile) -> list[np.ndarray]:
    api.decode(src, dst, profile=str(profile), codec="ffv1", overwrite=True)  # lossless, so frames compare exactly
    with av.open(str(dst)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _write_input(path, frames, fps: int = 12) -> None:
    """A lossless (FFV1) video file of ``frames`` for the CLI to encode."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="bgr0")))
        container.mux(stream.encode())


def _cli_decode(src, dst, profile, *mode: str) -> list[np.ndarray]:
    assert main(["-nostats", "-i", str(src), *mode, "-profile", str(profile), "-c:v", "ffv1", "-y", str(dst)]) == 0
    with av.open(str(dst)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _probe(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["probe", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_modes_and_edit_through_the_cli(tiny_m3cvc, tmp_path, capsys, caplog):
    """CMVC's modes: it2v and tt2v streams from one clip, both decode modes, and edits of D^C / D^F that change the
    edited segment's frames and leave a segment that does not depend on them as it was."""
    source, profile = tmp_path / "in.mkv", tiny_m3cvc.profile
    _write_input(source, synthetic_images(12, size=64))
    encode = ["-nostats", "-i", str(source), "-c", "m3cvc", "-profile", str(profile), "-vf",
              "select=min=4:max=4,base=tokens=keep"]
    it2v, tt2v = tmp_path / "it2v.mkv", tmp_path / "tt2v.mkv"
    assert main([*encode, "-y", str(it2v)]) == 0
    assert main([*encode, "-mode", "tt2v", "-y", str(tt2v)]) == 0
    full, text_only = _probe(it2v, capsys), _probe(tt2v, capsys)
    assert [s["mode"] for s in full["segments"]] == ["it2v"] * 3 and full["layers"]["tokens"] > 0
    assert [s["mode"] for s in text_only["segments"]] == ["tt2v"] * 3 and text_only["layers"]["tokens"] == 0
    assert [s["frame_text"] for s in text_only["segments"]] == [s["frame_text"] for s in full["segments"]]
    assert tt2v.stat().st_size < it2v.stat().st_size

    from_tokens = _cli_decode(it2v, tmp_path / "a.mkv", profile)
    from_text = _cli_decode(it2v, tmp_path / "b.mkv", profile, "-mode", "tt2v")  # the token layer is ignored
    with caplog.at_level(logging.INFO, logger="m3cvcav"):
        auto = _cli_decode(tt2v, tmp_path / "c.mkv", profile)  # no tokens: tt2v without being asked
    assert "cannot be decoded in it2v" in caplog.text
    for frames in (from_tokens, from_text, auto):
        assert len(frames) == 12 and frames[0].shape == (64, 64, 3)
    assert not np.array_equal(from_tokens[0], from_text[0])  # keyframe from tokens + D^F vs from D^F alone
    assert all(np.array_equal(a, b) for a, b in zip(from_text, auto))  # same texts, same seeds: same frames

    clip_edit, frame_edit = tmp_path / "clip_edit.mkv", tmp_path / "frame_edit.mkv"
    assert main(["edit", str(tt2v), "--segment", "1", "--clip-text", "the camera pans fast to the left",
                 "-o", str(clip_edit)]) == 0
    assert main(["edit", str(tt2v), "--segment", "1", "--frame-text", "a green square on a black floor",
                 "-o", str(frame_edit)]) == 0
    by_clip, by_frame = (_cli_decode(p, tmp_path / f"{p.stem}.out.mkv", profile) for p in (clip_edit, frame_edit))
    segments = [range(0, 4), range(4, 8), range(8, 12)]  # select=min=4:max=4

    def same(a, b, frames: range) -> bool:
        return all(np.array_equal(a[i], b[i]) for i in frames)

    # D^C of segment 1 only prompts segment 1's clip; D^F of segment 1 makes keyframe 1, which segment 1 starts from
    # and segment 0's clip moves towards; segment 2 (keyframes 2 and 3) depends on neither.
    assert not same(by_clip, auto, segments[1])
    assert same(by_clip, auto, segments[0]) and same(by_clip, auto, segments[2])
    assert not same(by_frame, auto, segments[1]) and same(by_frame, auto, segments[2])


def test_lite_refuses_tt2v(tmp_path, capsys):
    source = tmp_path / "in.mkv"
    _write_input(source, synthetic_images(4, size=64))
    assert main(["-i", str(source), "-c", "m3cvc", "-mode", "tt2v", "-y", str(tmp_path / "out.mkv")]) == 1
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "-profile m3cvc" in message[0]
    assert not (tmp_path / "out.mkv").exists()
    assert main(["-nostats", "-i", str(source), "-c", "m3cvc", "-y", str(tmp_path / "lite.mkv")]) == 0
    capsys.readouterr()
    assert main(["-i", str(tmp_path / "lite.mkv"), "-mode", "tt2v", "-y", str(tmp_path / "back.mkv")]) == 1
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "-profile m3cvc" in message[0]
    assert main(["-i", str(source), "-c", "m3cvc", "-mode", "t2v", "-y", str(tmp_path / "out.mkv")]) == 2


def test_the_encoder_conditions_the_diffusion_per_segment(tiny_m3cvc, tmp_path):
    """m3cvc streams are 2.1 with GEN_PARAMS in every segment saying what the decoder's diffusion does over the base:
    ``off`` shows the base pictures exactly as the AV1 base decodes and upscales; ``on`` runs the keyframe generator
    at the profile's strength and the clip generator; ``auto`` takes the strength from the base's quality; ``measure``
    runs the generators at the encoder. Lite streams carry none and stay 2.0."""
    from m3cvcav.bitstream import av1
    from m3cvcav.filters.conditioning import MAX_STRENGTH, quantise

    frames = synthetic_images(12, size=64)
    profile = tiny_m3cvc.profile_lite_tokens
    streams = {}
    for choice in ("off", "on", "auto", "measure"):
        out = tmp_path / f"{choice}.mkv"
        api.encode(iter(frames), out, profile=str(profile), fps=12, overwrite=True,
                   vf=f"select=min=6:max=6,base=diffusion={choice}")
        reader = open_reader(out)
        segments = list(reader.segments())
        assert reader.header.version == (2, 1) and len(segments) == 2
        assert all(s.params.conditioned and s.params.seed == s.header.index for s in segments)
        streams[choice] = (out, segments)
    assert all(s.params.keyframe_strength == 0 and not s.params.clip_diffusion for s in streams["off"][1])
    assert all(s.params.keyframe_strength == quantise(0.5) and s.params.clip_diffusion for s in streams["on"][1])
    for s in streams["auto"][1]:
        assert 0 <= s.params.keyframe_strength <= quantise(MAX_STRENGTH)
        assert s.params.clip_diffusion == (s.params.keyframe_strength > 0)

    def decoded(choice: str) -> list[np.ndarray]:
        with api.open(streams[choice][0], profile=str(profile)) as stream:
            return [f.to_ndarray(format="rgb24") for f in stream.decode()]

    off = decoded("off")
    base = [av1.upscale(p, (64, 64)) for s in streams["off"][1] for p in av1.decode(s.base.units)]
    assert len(off) == 12 and all(np.array_equal(a, b) for a, b in zip(off, base))
    on = decoded("on")
    assert len(on) == 12 and not np.array_equal(on[0], off[0])  # the generators ran over the same base
    assert len(decoded("measure")) == 12

    lite = tmp_path / "lite.mkv"
    api.encode(iter(frames), lite, fps=12, overwrite=True, vf="select=min=6:max=6")
    reader = open_reader(lite)
    assert reader.header.version == (2, 0) and all(s.params is None for s in reader.segments())


def test_keyframe_tokens_travel_only_where_they_help(tiny_m3cvc, tmp_path):
    """The decoder starts a keyframe from its tokens where a segment has them: the encoder drops tokens whose keyframe
    is worse than the base's first picture (MS-SSIM against the source) — the tiny random tokenizer's always are —
    which saves their bytes and gives the decoder the better picture."""
    frames = synthetic_images(12, size=64)
    kept, auto = tmp_path / "keep.mkv", tmp_path / "auto.mkv"
    for path, choice in ((kept, "keep"), (auto, "auto")):
        api.encode(iter(frames), path, profile=str(tiny_m3cvc.profile), fps=12, overwrite=True,
                   vf=f"select=min=6:max=6,base=tokens={choice}")
    assert all(s.tokens is not None for s in open_reader(kept).segments())
    assert all(s.tokens is None for s in open_reader(auto).segments())
    assert auto.stat().st_size < kept.stat().st_size
