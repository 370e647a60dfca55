"""The ADM UNet of Dhariwal & Nichol (2021), "Diffusion Models Beat GANs on Image Synthesis",
and :func:`load_adm` for its published state dicts.

Written for this project from the paper and the architecture of openai/guided-diffusion
(``guided_diffusion/unet.py``): module names and shapes are the same, so the published
state dicts (guided-diffusion's ImageNet/LSUN models, the FFHQ model of DPS and DiffPIR)
load with ``strict=True``. Only the 2-D image model is provided (no classifier, no
super-resolution model). Configs use guided-diffusion's command-line flags
(``create_model`` in ``script_util.py``), so a published ``MODEL_FLAGS`` line can be
passed as a dict.

Numerics as published: GroupNorm(32) computed in float32, attention softmax in float32
(here through ``scaled_dot_product_attention``, mathematically the same as the legacy
q k^T / sqrt(ch)).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from .checkpoints import load_module, read_state_dict, state_dict_mismatch
from .ddpm import DDPMPrior
from .schedules import DiscreteVPSchedule

Tensor = torch.Tensor

# Default channel multipliers per image size (guided-diffusion ``create_model``).
CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}

# guided-diffusion's ``create_model`` defaults, plus the diffusion flags DDPMPrior needs.
DEFAULTS: dict[str, Any] = dict(
    image_size=256, num_channels=128, num_res_blocks=2, channel_mult="", learn_sigma=False,
    class_cond=False, attention_resolutions="16", num_heads=1, num_head_channels=-1,
    num_heads_upsample=-1, use_scale_shift_norm=False, dropout=0.0, resblock_updown=False,
    use_new_attention_order=False, use_fp16=False, use_checkpoint=False, in_channels=3,
    diffusion_steps=1000, noise_schedule="linear", predict_xstart=False, rescale_timesteps=False,
)

PRESETS: dict[str, dict[str, Any]] = {
    # FFHQ 256 model used by DPS (Chung et al. 2023) and DiffPIR (Zhu et al. 2023):
    # DPS configs/model_config.yaml + diffusion_config.yaml.
    "ffhq_10m": dict(
        image_size=256, num_channels=128, num_res_blocks=1, learn_sigma=True, attention_resolutions="16",
        num_heads=4, num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
    # guided-diffusion README, "256x256 model (unconditional)", 256x256_diffusion_uncond.pt
    # (published flags include --use_fp16 True: pass dtype=torch.float16 to run it so).
    "imagenet256_uncond": dict(
        image_size=256, num_channels=256, num_res_blocks=2, learn_sigma=True, attention_resolutions="32,16,8",
        num_heads=4, num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
}


def adm_config(arch: str | dict[str, Any]) -> dict[str, Any]:
    """Full flag dict for a preset name or a (partial) dict of guided-diffusion flags."""
    if isinstance(arch, str):
        if arch not in PRESETS:
            raise ConfigError(f"unknown ADM preset {arch!r}; choose one of {', '.join(PRESETS)} or pass a dict of flags")
        arch = PRESETS[arch]
    unknown = set(arch) - set(DEFAULTS) - {"format", "model_path"}
    if unknown:
        raise ConfigError(f"unknown ADM flags {sorted(unknown)}; valid flags: {', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in arch.items() if k in DEFAULTS}}
    if cfg["rescale_timesteps"] and cfg["diffusion_steps"] != 1000:
        raise ConfigError("rescale_timesteps=True with diffusion_steps != 1000 is not supported")
    return cfg


def _ints(value: str | tuple | list, cast=int) -> tuple:
    return tuple(cast(v) for v in value.split(",")) if isinstance(value, str) else tuple(cast(v) for v in value)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) evaluated in float32 whatever the module's dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (B,) possibly fractional timesteps -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Upsample(nn.Module):
    """Nearest-neighbour x2, optionally followed by a 3x3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class Downsample(nn.Module):
    """Strided 3x3 conv or 2x2 average pooling (``op``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the time embedding, optionally resampling (BigGAN-style)."""

    def __init__(self, ch: int, emb_ch: int, dropout: float, out_ch: int | None = None,
                 scale_shift: bool = False, up: bool = False, down: bool = False) -> None:
        super().__init__()
        out_ch = out_ch or ch
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.updown = up or down
        resample = (lambda: Upsample(ch, False)) if up else (lambda: Downsample(ch, False)) if down else nn.Identity
        self.h_upd, self.x_upd = resample(), resample()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * out_ch if scale_shift else out_ch))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_ch), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:  # resample between the norm/activation and the conv
            h = self.h_upd(self.in_layers[:-1](x))
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb.to(self.emb_layers[1].weight.dtype)).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions; ``new_order`` selects guided-diffusion's QKVAttention
    (split q/k/v, then heads) over QKVAttentionLegacy (split heads, then q/k/v)."""

    def __init__(self, ch: int, num_heads: int = 1, num_head_channels: int = -1, new_order: bool = False) -> None:
        super().__init__()
        if num_head_channels != -1 and ch % num_head_channels:
            raise ConfigError(f"attention channels {ch} are not divisible by num_head_channels {num_head_channels}")
        self.heads = num_heads if num_head_channels == -1 else ch // num_head_channels
        self.new_order = new_order
        self.norm = GroupNorm32(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv1d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        n = qkv.shape[-1]
        if self.new_order:
            q, k, v = (z.reshape(b * self.heads, -1, n) for z in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.heads, -1, n).chunk(3, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj_out(a.transpose(1, 2).reshape(b, c, n))
        return (x + h).reshape(b, c, hgt, wid)


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that passes the time embedding to the ResBlocks."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """ADM UNet; ``forward(x, t, y=None) -> (B, out_channels, H, W)``.

    Args:
        image_size: native resolution (only recorded; the net is fully convolutional and
            accepts any size divisible by 2^(len(channel_mult) - 1)).
        in_channels, model_channels, out_channels: image, base and output channels.
        num_res_blocks: ResBlocks per level.
        attention_resolutions: downsampling factors (not pixel sizes) with attention.
        channel_mult: channel multiplier per level.
        num_classes: class-conditional model with ``label_emb`` when given.
        Others as in guided-diffusion's ``UNetModel``.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: tuple[int, ...], dropout: float = 0.0,
                 channel_mult: tuple[float, ...] = (1, 2, 4, 8), conv_resample: bool = True,
                 num_classes: int | None = None, num_heads: int = 1, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False, use_new_attention_order: bool = False) -> None:
        super().__init__()
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        self.multiple = 2 ** (len(channel_mult) - 1)
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        emb_ch = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_ch)

        def res(c_in: int, c_out: int | None = None, **kw) -> ResBlock:
            return ResBlock(c_in, emb_ch, dropout, c_out, use_scale_shift_norm, **kw)

        def attn(c: int, heads: int) -> AttentionBlock:
            return AttentionBlock(c, heads, num_head_channels, use_new_attention_order)

        ch = int(channel_mult[0] * model_channels)
        input_ch = ch
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch), attn(ch, num_heads), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attn(ch, heads_up))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, H, W) on [-1, 1] (VP-scaled); t: (B,) timesteps; y: (B,) labels."""
        if (y is None) != (self.num_classes is None):
            raise ConfigError("pass class labels y if and only if the ADM model is class-conditional")
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        emb_in = timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype)
        emb = self.time_embed(emb_in)
        if y is not None:
            emb = emb + self.label_emb(y)
        h, hs = x.to(self.input_blocks[0][0].weight.dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)


def build_adm(arch: str | dict[str, Any]) -> ADMUNet:
    """An :class:`ADMUNet` from a preset name or guided-diffusion flags (``create_model``).

    Builds on the current default device: wrap in ``torch.device("meta")`` to get the
    structure without allocating weights.
    """
    cfg = adm_config(arch)
    size = cfg["image_size"]
    if cfg["channel_mult"] in ("", None, ()):
        if size not in CHANNEL_MULT:
            raise ConfigError(f"no default channel_mult for image_size {size}; pass channel_mult, e.g. '1,2,2,4'")
        mult = CHANNEL_MULT[size]
    else:
        mult = _ints(cfg["channel_mult"], float)
    return ADMUNet(
        image_size=size,
        in_channels=cfg["in_channels"],
        model_channels=cfg["num_channels"],
        out_channels=cfg["in_channels"] * (2 if cfg["learn_sigma"] else 1),
        num_res_blocks=cfg["num_res_blocks"],
        attention_resolutions=tuple(size // r for r in _ints(cfg["attention_resolutions"])),
        dropout=cfg["dropout"],
        channel_mult=mult,
        num_classes=1000 if cfg["class_cond"] else None,
        num_heads=cfg["num_heads"],
        num_head_channels=cfg["num_head_channels"],
        num_heads_upsample=cfg["num_heads_upsample"],
        use_scale_shift_norm=cfg["use_scale_shift_norm"],
        resblock_updown=cfg["resblock_updown"],
        use_new_attention_order=cfg["use_new_attention_order"],
    )


def guess_preset(state: dict[str, Tensor]) -> str | None:
    """Name of the preset whose key/shape layout ``state`` has, if any."""
    for name in PRESETS:
        with torch.device("meta"):
            expected = build_adm(name).state_dict()
        if len(expected) == len(state) and not state_dict_mismatch(expected, state):
            return name
    return None


def load_adm(path: str | os.PathLike, arch: str | dict[str, Any] | None, /, **options: Any) -> DDPMPrior:
    """A :class:`DDPMPrior` from a guided-diffusion state dict file (``strict=True``).

    Args:
        path: ``.pt``/``.safetensors`` state dict.
        arch: a preset name, a dict of guided-diffusion flags, or None: the preset whose
            key layout the file has.
        **options: passed to :class:`DDPMPrior` (``clip``, ``respacing``, ``quantize``).

    Raises:
        CheckpointError: unreadable file, unknown layout, or weights that do not fit ``arch``
            (naming the preset they do fit, if any).
        ConfigError: a class-conditional model (it needs labels).
    """
    path = Path(path)
    state = read_state_dict(path)
    if arch is None:
        arch = guess_preset(state)
        if arch is None:
            raise CheckpointError(
                f"cannot tell the architecture of {path}: pass arch= an ADM preset ({', '.join(PRESETS)}), "
                f"a dict of guided-diffusion flags, or an EDM config; or write a JSON config to {path.with_suffix('.json')}"
            )
    cfg = adm_config(arch)
    if cfg["class_cond"]:
        raise ConfigError("class-conditional ADM models need labels and cannot serve as an unconditional prior")
    name = arch if isinstance(arch, str) else "the given ADM config"
    try:
        model = load_module(lambda: build_adm(cfg), state, f"{path} with ADM arch {name}")
    except CheckpointError as e:
        fits = guess_preset(state)
        hint = f"it looks like the {fits!r} preset" if fits else "pass the arch= it was trained with"
        raise CheckpointError(f"{e}; {hint}") from None
    return DDPMPrior(
        model,
        DiscreteVPSchedule(cfg["noise_schedule"], cfg["diffusion_steps"]),
        prediction="sample" if cfg["predict_xstart"] else "epsilon",
        learned_sigma=cfg["learn_sigma"],
        channels=cfg["in_channels"],
        native_size=(cfg["image_size"], cfg["image_size"]),
        multiple=model.multiple,
        **options,
    )


__all__ = ["ADMUNet", "build_adm", "adm_config", "guess_preset", "load_adm", "PRESETS", "DEFAULTS", "timestep_embedding"]
