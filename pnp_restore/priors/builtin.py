"""The built-in natural-image prior: a compact noise-conditional UNet with EDM preconditioning.

Network
    :class:`UNet` is a small fully-convolutional 3-level UNet (GroupNorm, SiLU,
    residual blocks whose second normalisation is modulated by the noise level
    through a scale-shift (FiLM); no attention, so it is translation-equivariant
    and behaves the same at any image size).
    :class:`EDMDenoiser` wraps it with the preconditioning of Karras et al.,
    "Elucidating the Design Space of Diffusion-Based Generative Models",
    NeurIPS 2022, Table 1 (sigma_data = 0.5, images on [-1, 1])::

        D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x; c_noise(s))
        c_skip = sd^2 / (s^2 + sd^2),  c_out = s sd / sqrt(s^2 + sd^2),
        c_in = 1 / sqrt(s^2 + sd^2),   c_noise = ln(s) / 4.

Prior
    :class:`BuiltinPrior` exposes it through the :class:`~pnp_restore.priors.base.Prior`
    interface on the [0, 1] scale: ``x01 = (x_net + 1) / 2`` so ``sigma_net = 2 sigma``.
    Any image size works (reflect padding to a multiple of 4 happens inside).

Weights
    ``weights/builtin.safetensors`` + ``weights/builtin.json`` (architecture, training
    summary and the file's sha256), read by :func:`load_builtin`. The model card is
    ``docs/builtin-prior.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import file_sha256
from ..errors import CheckpointError
from .edm import EDMPrior
from .load import check_placement, load_module, read_state_dict

Tensor = torch.Tensor

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "builtin.safetensors"
CONFIG_NAME = "builtin.json"


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


class BuiltinPrior(EDMPrior):
    """The built-in prior on the [0, 1] scale: ``denoise(x, sigma)`` = (D(2x - 1; 2 sigma) + 1) / 2.

    An :class:`~pnp_restore.priors.edm.EDMPrior` around an :class:`EDMDenoiser` (any image
    size, ``multiple = 1``), with save/load of the shipped format.

    Args:
        net: an :class:`EDMDenoiser` (trained weights, usually from :func:`load_builtin`).
        info: the JSON metadata it was loaded with (training summary, sha256), kept for reference.
    """

    def __init__(self, net: EDMDenoiser, info: dict | None = None) -> None:
        cfg = net.cfg
        super().__init__(
            net.eval().requires_grad_(False),
            sigma_data=cfg.sigma_data,
            data_range=(-1.0, 1.0),
            sigma_min=cfg.sigma_min,
            sigma_max=cfg.sigma_max,
            channels=cfg.in_channels,
        )
        self.info = info or {}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``builtin.safetensors`` + ``builtin.json`` (with the file's sha256) into ``folder``."""
        return save_weights(self.net, folder, self.info)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, dtype=None) -> BuiltinPrior:
        """Load from a folder holding ``builtin.safetensors`` + ``builtin.json``."""
        return load_builtin(folder, device=device, dtype=dtype)


def save_weights(net: EDMDenoiser, folder: str | Path, info: dict | None = None) -> Path:
    """Save ``net`` as ``folder/builtin.safetensors`` (float32) and ``folder/builtin.json``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / WEIGHTS_NAME).chmod(0o644)
    meta = dict(info or {})
    meta.update(
        config=net.cfg.to_dict(),
        parameters=sum(p.numel() for p in net.parameters()),
        weights=WEIGHTS_NAME,
        sha256=file_sha256(folder / WEIGHTS_NAME),
    )
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_builtin(path: str | Path | None = None, device=None, dtype=None) -> BuiltinPrior:
    """Load the built-in prior.

    Args:
        path: folder with ``builtin.safetensors`` + ``builtin.json``, or the ``.safetensors`` file
            itself (its JSON next to it); ``None`` = the weights shipped with the package.
        device, dtype: where to put it (default CPU, float32).

    Raises:
        CheckpointError: files missing, sha256 mismatch, or weights that do not fit the architecture.
        ConfigError: ``device`` not available here or ``dtype`` not a float dtype.
    """
    check_placement(device, dtype)
    path = Path(path) if path is not None else WEIGHTS_DIR
    folder, weights = (path.parent, path) if path.suffix == ".safetensors" else (path, path / WEIGHTS_NAME)
    cfg_path = folder / CONFIG_NAME
    for p in (weights, cfg_path):
        if not p.is_file():
            raise CheckpointError(f"built-in prior file {p} is missing; reinstall pnp-restore or pass path= to a folder from save_pretrained")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}); reinstall pnp-restore") from None
    digest = file_sha256(weights)
    if meta.get("sha256") and digest != meta["sha256"]:
        raise CheckpointError(
            f"{weights} has sha256 {digest[:12]}..., expected {meta['sha256'][:12]}... from {cfg_path.name}; "
            "the file is corrupt or was replaced: reinstall pnp-restore"
        )
    cfg = UNetConfig.from_dict(meta.get("config", {}))
    net = load_module(lambda: EDMDenoiser(cfg), read_state_dict(weights), f"{weights} (architecture of {cfg_path.name})",
                      hint="re-export it with save_pretrained")
    return BuiltinPrior(net, meta).to(device=device, dtype=dtype)


__all__ = ["BuiltinPrior", "EDMDenoiser", "UNet", "UNetConfig", "file_sha256", "load_builtin", "save_weights"]
