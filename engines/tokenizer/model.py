"""The tokenizer network: a small fully-convolutional encoder (stride 16), a residual EMA vector quantiser, a decoder.

Images enter as float tensors (N, 3, H, W) in [0, 1] with H and W multiples of ``STRIDE`` (``pad_to_stride`` pads
by edge replication; callers crop back). The latent grid has ``latent_dim`` channels at 1/16 of the size; level ``l`` of the
residual quantiser codes what levels ``0..l-1`` left, so decoding the first ``d`` levels gives a coarser image at fewer
tokens (the rate points in ``rates.py``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 16


@dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters of the network (stored in the weight file's metadata)."""

    latent_dim: int = 16
    vocab: int = 512
    levels: int = 4
    widths: tuple[int, ...] = (32, 64, 96, 128)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        return cls(int(d["latent_dim"]), int(d["vocab"]), int(d["levels"]), tuple(int(w) for w in d["widths"]))


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """Pixel-unshuffle to 1/2, then three strided convolutions to 1/16, residual blocks at 1/4, 1/8, 1/16."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.widths
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(12, w0, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w0, w1, 4, stride=2, padding=1), ResBlock(w1),
            nn.Conv2d(w1, w2, 4, stride=2, padding=1), ResBlock(w2),
            nn.Conv2d(w2, w3, 4, stride=2, padding=1), ResBlock(w3), ResBlock(w3),
            nn.SiLU(), nn.Conv2d(w3, cfg.latent_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2))


class Decoder(nn.Module):
    """Mirror of the encoder with pixel-shuffle upsampling; output in [0, 1] (clamped outside training)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.widths
        self.net = nn.Sequential(
            nn.Conv2d(cfg.latent_dim, w3, 3, padding=1), ResBlock(w3), ResBlock(w3),
            _up(w3, w2), ResBlock(w2),
            _up(w2, w1), ResBlock(w1),
            _up(w1, w0), ResBlock(w0), nn.SiLU(),
            nn.Conv2d(w0, 12, 3, padding=1), nn.PixelShuffle(2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(z) * 0.5 + 0.5
        return y if self.training else y.clamp(0.0, 1.0)


class EMAQuantizer(nn.Module):
    """One codebook of ``vocab`` vectors, updated by exponential moving averages (no gradient); dead codes re-seeded."""

    def __init__(self, vocab: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.vocab, self.dim, self.decay, self.eps = vocab, dim, decay, eps
        self.register_buffer("embed", torch.randn(vocab, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(vocab))
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code index for each row of ``x`` (N, dim)."""
        dist = (x.pow(2).sum(1, keepdim=True) - 2.0 * x @ self.embed.t() + self.embed.pow(2).sum(1)[None])
        return dist.argmin(1)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor, gen: torch.Generator | None) -> None:
        pick = torch.randint(0, x.shape[0], (self.vocab,), generator=gen, device=x.device)
        self.embed.copy_(x[pick])
        self.embed_avg.copy_(self.embed * 0.1)
        self.cluster_size.fill_(0.1)
        self.initted.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator | None, dead_below: float) -> int:
        """EMA step over the batch; codes whose EMA count fell under ``dead_below`` get random batch vectors. Returns
        how many were re-seeded."""
        onehot = F.one_hot(idx, self.vocab).type(x.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        size = (self.cluster_size + self.eps) / (n + self.vocab * self.eps) * n
        self.embed.copy_(self.embed_avg / size[:, None])
        dead = self.cluster_size < dead_below
        count = int(dead.sum())
        if count:
            pick = torch.randint(0, x.shape[0], (count,), generator=gen, device=x.device)
            self.embed[dead] = x[pick]
            self.embed_avg[dead] = x[pick] * 0.1
            self.cluster_size[dead] = 0.1
        return count


class ResidualVQ(nn.Module):
    """``levels`` EMA quantisers applied in turn to what the previous levels left."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.levels = nn.ModuleList(EMAQuantizer(cfg.vocab, cfg.latent_dim) for _ in range(cfg.levels))

    def quantize(self, z: torch.Tensor, gen: torch.Generator | None = None, dead_below: float = 0.0):
        """z (N, D, h, w) → (list of per-level quantised tensors, indices (N, L, h, w), commitment loss, re-seeded)."""
        n, d, h, w = z.shape
        residual = z.permute(0, 2, 3, 1).reshape(-1, d)
        quantised, indices, commit, reseeded = [], [], z.new_zeros(()), 0
        for vq in self.levels:
            if self.training and not bool(vq.initted):
                vq._init_from(residual.detach(), gen)
            idx = vq.lookup(residual.detach())
            q = vq.embed[idx]
            commit = commit + F.mse_loss(residual, q.detach())
            if self.training:
                reseeded += vq.update(residual.detach(), idx, gen, dead_below)
            residual = residual - q.detach()
            quantised.append(q.view(n, h, w, d).permute(0, 3, 1, 2))
            indices.append(idx.view(n, h, w))
        return quantised, torch.stack(indices, 1), commit, reseeded

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (N, d, h, w) with d ≤ levels → summed code vectors (N, D, h, w)."""
        out = 0
        for level in range(indices.shape[1]):
            out = out + self.levels[level].embed[indices[:, level]]
        return out.permute(0, 3, 1, 2).contiguous()


class TokenizerNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVQ(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor, depth: int, gen: torch.Generator | None = None, dead_below: float = 0.0):
        """Training pass: reconstruction from the first ``depth`` levels (straight-through), with all levels' stats."""
        z = self.encoder(x)
        quantised, indices, commit, reseeded = self.quantizer.quantize(z, gen, dead_below)
        zq = torch.stack(quantised[:depth]).sum(0)
        zq = z + (zq - z).detach()
        return self.decoder(zq), indices, commit, reseeded

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        z = self.encoder(x)
        return self.quantizer.quantize(z)[1][:, :depth]

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.dequantize(indices))


def pad_to_stride(x: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Pad (N, C, H, W) on the bottom/right by edge replication up to multiples of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
