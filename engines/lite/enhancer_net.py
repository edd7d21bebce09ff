"""The lite enhancer's network: a small CNN that runs at the base's coded size and predicts a luma residual on a grid
twice the coded size (sub-pixel convolution); the decoder adds it, bicubically upscaled, to the bicubic upscale of the
base picture. The same residual, scaled, gives the signalled strengths.

    x (N, 3, h, w) RGB in [0, 1]
    conv3x3 3→C, ReLU, (conv3x3 C→C, ReLU) × (layers − 2), conv3x3 C→4, pixel shuffle ×2 → r (N, 1, 2h, 2w)
    (shipped: C = 16, layers = 3)
    output = bicubic(x → H×W) + bicubic(r → H×W)  (r added to R, G and B alike: a luma change, chroma kept)

FLOPs (multiply-adds × 2) per coded pixel: 2·9·(3C + (layers − 2)·C² + 4C); with C = 16, layers = 3: 6 624.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    channels: int = 16
    layers: int = 3  # convolutions, first and last included

    def flops_per_coded_pixel(self) -> int:
        c = self.channels
        return 2 * 9 * (3 * c + (self.layers - 2) * c * c + 4 * c)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class EnhancerNet(nn.Module):
    """``forward(x)`` → the luma residual (N, 1, 2h, 2w) of the coded picture ``x`` (N, 3, h, w) in [0, 1]."""

    def __init__(self, cfg: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        convs = [nn.Conv2d(3, c, 3, padding=1)]
        convs += [nn.Conv2d(c, c, 3, padding=1) for _ in range(cfg.layers - 2)]
        convs.append(nn.Conv2d(c, 4, 3, padding=1))
        self.convs = nn.ModuleList(convs)
        nn.init.zeros_(self.convs[-1].weight)  # starts as plain bicubic
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x - 0.5
        for conv in self.convs[:-1]:
            y = F.relu(conv(y))
        return F.pixel_shuffle(self.convs[-1](y), 2)


def render(x: torch.Tensor, residual: torch.Tensor, size: tuple[int, int], strength: float = 1.0) -> torch.Tensor:
    """The training-time picture (N, 3, H, W) at ``size`` (width, height): bicubic(x) + strength · bicubic(residual),
    as the decoder computes it with OpenCV (unclamped; the decoder rounds and clips to uint8)."""
    w, h = size
    base = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    res = F.interpolate(residual, size=(h, w), mode="bicubic", align_corners=False)
    return base + strength * res
