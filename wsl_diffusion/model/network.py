"""A compact class-conditional U-Net backbone F(x_in, c_noise, class_vector).

The backbone never sees raw sigma or pixels in [-1, 1]: the EDM preconditioning wrapper
(`precond.py`) scales its input and output. It works for any image size and channel count
(8x8 digits up to 64x64 RGB): down-sampling halves the size with a strided convolution (odd
sizes round up) and up-sampling restores exactly the size of the matching skip connection.

Conditioning: the class enters as a float vector of length K (one-hot, soft, or all zeros for the
unconditional model used by classifier-free guidance). A bias-free linear map sends the all-zero
vector to a zero embedding, so "no label" needs no extra token.

timm is not used here: its import alone costs ~3 s per CLI call, and the few layers a small U-Net
needs are clearer written out. (timm serves the baseline and evaluator nets.)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Backbone hyper-parameters. `channel_mult[i]` multiplies `channels` at resolution level i;
    `attention_levels` lists the level indices (0 = full resolution) that get self-attention."""

    channels: int = 48
    channel_mult: tuple[int, ...] = (1, 2)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0
    num_groups: int = 8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        d = dict(d)
        d["channel_mult"] = tuple(d["channel_mult"])
        d["attention_levels"] = tuple(d["attention_levels"])
        return cls(**d)


# Named model sizes. tiny: unit tests; small: digits on CPU (the default; ~0.07 s per batch-128
# step on 2 cores, 97% clean test accuracy as a classifier after 64 kimg); medium: 2.5x the cost
# of small; base: CIFAR-10 on a GPU. On 8x8 inputs a 16-channel U-Net is already compute-bound
# on CPU (~30 GFLOP/s), so width is what costs.
PRESETS: dict[str, NetworkConfig] = {
    "tiny": NetworkConfig(channels=8, channel_mult=(1, 2), blocks_per_level=1, num_groups=4),
    "small": NetworkConfig(channels=16, channel_mult=(1, 2), blocks_per_level=1, num_groups=4),
    "medium": NetworkConfig(channels=32, channel_mult=(1, 2), blocks_per_level=1),
    "base": NetworkConfig(
        channels=128, channel_mult=(1, 2, 2), blocks_per_level=2, attention_levels=(1,),
        dropout=0.1, num_groups=32,
    ),
}


def network_preset(name: str) -> NetworkConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _groups(channels: int, num_groups: int) -> int:
    # GroupNorm needs channels divisible by the group count; fall back to the largest divisor.
    g = min(num_groups, channels)
    while channels % g:
        g -= 1
    return g


class FourierNoiseEmbedding(nn.Module):
    """Sinusoidal features of the scalar c_noise (B,) -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        # c_noise = ln(sigma)/4 lies in about [-2, 2]; scale it up so the low frequencies move.
        angles = (c_noise.float() * 250.0)[:, None] * self.freqs[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, FiLM (scale/shift) from the embedding, GN-SiLU-dropout-conv, residual."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, dropout: float, num_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, num_groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, num_groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map."""

    def __init__(self, channels: int, *, num_groups: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels, num_groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three m d) h w -> three b m (h w) d",
                            three=3, m=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        return x + self.proj(rearrange(out, "b m (h w) d -> b (m d) h w", h=h, w=w))


class UNet(nn.Module):
    """F(x_in, c_noise, class_vector) -> same shape as x_in.

    x_in: (B, C, H, W); c_noise: (B,); class_vector: (B, K) float (one-hot / soft / zeros).
    """

    def __init__(self, *, image_channels: int, num_classes: int, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        ch = config.channels
        emb_dim = 4 * ch
        kw = dict(dropout=config.dropout, num_groups=config.num_groups)

        self.noise_features = FourierNoiseEmbedding(ch)
        self.noise_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Linear(num_classes, emb_dim, bias=False)
        self.emb_out = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        self.stem = nn.Conv2d(image_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [ch]
        c = ch
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.blocks_per_level):
                block = nn.ModuleList([ResBlock(c, ch * mult, emb_dim, **kw)])
                c = ch * mult
                if level in config.attention_levels:
                    block.append(SelfAttention(c, num_groups=config.num_groups))
                self.down.append(block)
                skip_channels.append(c)
            if level < len(config.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skip_channels.append(c)

        self.mid = nn.ModuleList([
            ResBlock(c, c, emb_dim, **kw),
            SelfAttention(c, num_groups=config.num_groups),
            ResBlock(c, c, emb_dim, **kw),
        ])

        self.up = nn.ModuleList()
        for level in reversed(range(len(config.channel_mult))):
            mult = config.channel_mult[level]
            for _ in range(config.blocks_per_level + 1):
                block = nn.ModuleList([ResBlock(c + skip_channels.pop(), ch * mult, emb_dim, **kw)])
                c = ch * mult
                if level in config.attention_levels:
                    block.append(SelfAttention(c, num_groups=config.num_groups))
                self.up.append(block)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(c, c, 3, padding=1)]))  # after resize

        self.out_norm = nn.GroupNorm(_groups(c, config.num_groups), c)
        self.out_conv = nn.Conv2d(c, image_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    @staticmethod
    def _is_resample(block: nn.ModuleList) -> bool:
        return isinstance(block[0], nn.Conv2d)

    def _run_block(self, block: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_vector: torch.Tensor) -> torch.Tensor:
        emb = self.noise_mlp(self.noise_features(c_noise)) + self.class_embed(class_vector.to(x.dtype))
        emb = self.emb_out(emb)  # (B, 4ch)

        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = self._run_block(block, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in self.up:
            if self._is_resample(block):
                # Up-sample to the exact size of the next skip (handles odd sizes), then smooth.
                h = block[0](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
            else:
                h = self._run_block(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out_conv(F.silu(self.out_norm(h)))
