"""The built-in prior's network: a compact noise-conditional UNet with EDM preconditioning.

:class:`UNet` is a small fully-convolutional 3-level UNet (GroupNorm, SiLU, residual blocks
whose second normalisation is modulated by the noise level through a scale-shift (FiLM); no
attention, so it is translation-equivariant and behaves the same at any image size).
:class:`EDMDenoiser` wraps it with the preconditioning of Karras et al., "Elucidating the
Design Space of Diffusion-Based Generative Models", NeurIPS 2022, Table 1 (sigma_data = 0.5,
images on [-1, 1])::

    D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x; c_noise(s))
    c_skip = sd^2 / (s^2 + sd^2),  c_out = s sd / sqrt(s^2 + sd^2),
    c_in = 1 / sqrt(s^2 + sd^2),   c_noise = ln(s) / 4.

The prior around it, its weights and their loading are in :mod:`pnp_restore.priors.builtin`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet` (stored in ``builtin.json``).

    channels: width of each level (full, 1/2, 1/4 resolution).
    blocks: residual blocks per level in the encoder (the decoder has one more).
    sigma_min, sigma_max: training range of the noise level on the network's [-1, 1] scale.
    """

    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 128)
    blocks: int = 1
    emb_dim: int = 128
    groups: int = 16
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


class ResBlock(nn.Module):
    """GN-SiLU-conv, then GN modulated by (1 + scale, shift) from the noise embedding, SiLU-conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (as in EDM/ADM)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm2(h), 1 + scale))
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """F(x_in; c_noise): (B, C, H, W) with H, W multiples of 2^(levels-1) -> (B, C, H, W); c_noise: (B,)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, e = cfg.channels, cfg.emb_dim
        # Random Fourier features of c_noise; scale 2 keeps the embedding smooth over ln(sigma)/4 in ~[-3, 2].
        self.register_buffer("freqs", torch.randn(e // 2) * 2)
        self.emb = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.inp = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        c, skips = ch[0], [ch[0]]
        for lvl, co in enumerate(ch):
            if lvl > 0:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks):
                blocks.append(ResBlock(c, co, e, cfg.groups))
                c = co
                skips.append(c)
            self.enc.append(blocks)
        self.mid = nn.ModuleList([ResBlock(c, c, e, cfg.groups), ResBlock(c, c, e, cfg.groups)])
        self.dec = nn.ModuleList()
        self.up = nn.ModuleList()
        for lvl, co in reversed(list(enumerate(ch))):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks + 1):
                blocks.append(ResBlock(c + skips.pop(), co, e, cfg.groups))
                c = co
            self.dec.append(blocks)
            if lvl > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(min(cfg.groups, c), c)
        self.out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        phase = 2 * math.pi * c_noise[:, None].to(self.freqs.dtype) * self.freqs[None]
        emb = self.emb(torch.cat([phase.cos(), phase.sin()], dim=1).to(x.dtype))
        h = self.inp(x)
        skips = [h]
        for lvl, blocks in enumerate(self.enc):
            if lvl > 0:
                h = self.down[lvl - 1](h)
                skips.append(h)
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for i, blocks in enumerate(self.dec):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.up):
                h = self.up[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


class EDMDenoiser(nn.Module):
    """D(x; sigma) on the network scale ([-1, 1] images, sigma_net), Karras et al. 2022 Table 1.

    x: (B, C, H, W), any H, W (reflect-padded to a multiple of 2^(levels-1) inside); sigma: (B,).
    """

    def __init__(self, cfg: UNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or UNetConfig()
        self.unet = UNet(self.cfg)
        self.factor = 2 ** (len(self.cfg.channels) - 1)  # one stride-2 downsampling per extra level

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        sd = self.cfg.sigma_data
        s = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        # ln(0) is -inf; at sigma = 0 c_out = 0 anyway, so any finite c_noise gives D(x; 0) = x.
        c_noise = s.flatten().clamp_min(1e-20).log() / 4
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        xin = c_in * x
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            xin = F.pad(xin, (0, pw, 0, ph), mode=mode)
        f = self.unet(xin, c_noise)[..., :h, :w]
        return c_skip * x + c_out * f


__all__ = ["EDMDenoiser", "ResBlock", "UNet", "UNetConfig"]
