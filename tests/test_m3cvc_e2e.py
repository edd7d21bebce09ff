"""The m3cvc engines end to end through the public API with the tiny test profile: encode → .mkv → decode (IT2V), twice, to the same frames."""
from __future__ import annotations

import av
import numpy as np
import torch

import m3cvcav.api as api
from m3cvcav.bitstream.containers import open_reader
from tiny_models import (synthetic_images, tiny_codebook, tiny_m3cvc, tiny_root, tiny_sd,  # noqa: F401  (fixtures)
                         tiny_vlm, tiny_wan, tiny_wan_vace)

torch.set_num_threads(1)


def test_encode_decode_with_tiny_m3cvc(tiny_m3cvc, tmp_path):
    frames = synthetic_images(12, size=64)
    out, back = tmp_path / "out.mkv", tmp_path / "back.mkv"
    api.encode(iter(frames), out, profile=str(tiny_m3cvc.profile), fps=12, overwrite=True)
    reader = open_reader(out)
    segments = list(reader.segments())
    assert reader.header.profile_id == 2 and [m.model_id for m in reader.header.models] == [17, 18, 19]
    assert segments and all(s.tokens is not None and isinstance(s.frame_text, str) for s in segments)
    assert sum(s.header.frame_count for s in segments) == len(frames)
    decoded = _decode(out, back, tiny_m3cvc.profile)
    assert len(decoded) == len(frames) and decoded[0].shape == (64, 64, 3)
    again = _decode(out, tmp_path / "again.mkv", tiny_m3cvc.profile)  # same stream + weights + seed → same frames
    assert all(np.array_equal(a, b) for a, b in zip(decoded, again))


def _decode(src, dst, profile) -> list[np.ndarray]:
    api.decode(src, dst, profile=str(profile), codec="ffv1", overwrite=True)  # lossless, so frames compare exactly
    with av.open(str(dst)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
