"""Latent diffusion priors (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"): Stable Diffusion-type pipelines as a denoiser in *latent* space.

A pipeline folder (``StableDiffusionPipeline.save_pretrained`` layout, or a hub snapshot:
``model_index.json``, ``vae/``, ``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) gives

* the VAE (``AutoencoderKL``): :meth:`LatentPrior.encode` / :meth:`LatentPrior.decode` map [0, 1]
  images (B, 3, H, W) to latents (B, 4, H/8, W/8) and back, with the VAE's ``scaling_factor``
  and ``shift_factor`` (``z = (mean - shift) * scale``, as diffusers' pipelines do);
* the ``UNet2DConditionModel`` with its text conditioning fixed at load time (``prompt``, default
  ``""``; classifier-free guidance ``guidance`` > 1 adds an unconditional pass, Ho & Salimans 2022);
* or, for unconditional LDMs (``LDMPipeline`` layout: ``vqvae/`` + ``unet/``, e.g.
  ``CompVis/ldm-celebahq-256``), a ``VQModel`` (latents before quantization; :meth:`decode`
  quantizes, as LDM's ``decode_first_stage``) and a plain ``UNet2DModel``;
* the scheduler config's betas and prediction type (``epsilon`` or ``v_prediction``).

Noise levels are on the latent's own scale (the role [-1, 1] plays for pixel DDPMs):
``denoise(z, sigma) = E[z0 | z]`` for ``z = z0 + sigma n``, and the trained timestep t has
``sigma_t = sqrt((1 - ab_t) / ab_t)``. The network is driven by :class:`DDPMPrior` (timestep
interpolation or snapping, eps / v formulas), whose sigma is on the [0, 1] *image* scale, i.e. half
the network-scale sigma: this module passes ``sigma / 2`` to it and nothing else differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._rng import SampleRNG
from ..errors import CheckpointError, ConfigError, ShapeError
from .base import Prior, sigma_tensor
from .checkpoints import first_line, load_module, read_config, read_state_dict
from .ddpm import DDPMPrior, module_dtype

Tensor = torch.Tensor

# Weight file names per component, preferred first; ``.fp16`` variants are what the hub's
# ``variant="fp16"`` downloads hold.
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                     "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin")
TEXT_ENCODERS = ("CLIPTextModel",)


def pipeline_index(folder: Path) -> dict[str, Any] | None:
    """The ``model_index.json`` of a diffusers pipeline folder, or None if it has none."""
    path = folder / "model_index.json"
    return read_config(path) if path.is_file() else None


def is_latent_pipeline(folder: Path) -> bool:
    """True for a pipeline folder with an autoencoder (``vae`` or ``vqvae``): a latent diffusion model."""
    index = pipeline_index(folder)
    return index is not None and any(index.get(k) for k in ("vae", "vqvae"))


def _weights(folder: Path, names: tuple[str, ...]) -> Path:
    found = next((folder / n for n in names if (folder / n).is_file()), None)
    if found is None:
        raise CheckpointError(f"no {names[0]} (or fp16 / .bin variant) in {folder}; the download is incomplete: fetch it again")
    return found


def _variant(weights: Path) -> str | None:
    return "fp16" if ".fp16." in weights.name else None


def load_diffusers_module(folder: Path, cls: type) -> torch.nn.Module:
    """A diffusers model (``cls``) from ``folder`` (``config.json`` + weights), eval, no gradients.

    Built on the meta device and assigned (no second copy); checkpoints whose keys diffusers
    renames while loading (old attention names of the Stable Diffusion 1.x VAE) go through
    ``cls.from_pretrained``, and any key still missing or left over is a :class:`CheckpointError`.
    """
    config = read_config(folder / "config.json")
    weights = _weights(folder, DIFFUSERS_WEIGHTS)
    state = read_state_dict(weights)
    try:
        return load_module(lambda: cls.from_config(config), state, f"{weights} with its config.json")
    except CheckpointError as mismatch:
        try:
            model, info = cls.from_pretrained(folder, local_files_only=True, variant=_variant(weights), output_loading_info=True)
        except Exception as e:
            raise CheckpointError(str(mismatch)) from e
        if any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")):
            raise CheckpointError(str(mismatch)) from None
        return model.eval().requires_grad_(False)


def encode_prompts(folder: Path, prompts: list[str]) -> Tensor:
    """CLIP text embeddings (len(prompts), L, D) of the pipeline's tokenizer + text encoder, float32.

    As ``StableDiffusionPipeline.encode_prompt``: padded to the tokenizer's ``model_max_length``,
    truncated beyond it, the text encoder's last hidden state (after its final layer norm), the
    attention mask passed only when the encoder's config asks for it.
    """
    import transformers

    index = pipeline_index(folder) or {}
    name = (index.get("text_encoder") or [None, "CLIPTextModel"])[1]
    if name not in TEXT_ENCODERS:
        raise ConfigError(f"{folder}: text encoder {name} is not supported; supported: {', '.join(TEXT_ENCODERS)}")
    enc_dir = folder / "text_encoder"
    weights = _weights(enc_dir, TRANSFORMERS_WEIGHTS)
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a bar for a one-second load is noise
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        encoder = getattr(transformers, name).from_pretrained(enc_dir, local_files_only=True, variant=_variant(weights))
    except Exception as e:  # OSError, ValueError... from transformers
        raise CheckpointError(f"cannot load the tokenizer / text encoder of {folder} ({first_line(e)}); fetch it again") from None
    finally:
        if bar:
            transformers.utils.logging.enable_progress_bar()
    encoder = encoder.float().eval()
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    mask = tokens.attention_mask if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        return encoder(tokens.input_ids, attention_mask=mask)[0].float()


class ConditionedUNet(torch.nn.Module):
    """A ``UNet2DConditionModel`` with fixed text conditioning, callable as ``model(z_t, t)``.

    Args:
        unet: the text-conditioned UNet.
        cond: (1, L, D) embedding of the prompt.
        uncond: (1, L, D) embedding of the negative prompt, or None (no guidance).
        guidance: classifier-free guidance scale w: ``out = out_u + w (out_c - out_u)`` on the
            network's output (eps or v, as diffusers' pipelines combine it). ``uncond`` is needed
            when w != 1; with w == 1 only the conditional pass runs.
    """

    def __init__(self, unet: torch.nn.Module, cond: Tensor, uncond: Tensor | None = None, guidance: float = 1.0) -> None:
        super().__init__()
        if guidance != 1 and uncond is None:
            raise ConfigError("classifier-free guidance != 1 needs the negative prompt's embedding")
        self.unet, self.guidance = unet, float(guidance)
        self.in_channels = unet.config.in_channels
        self.register_buffer("cond", cond)
        self.register_buffer("uncond", uncond if guidance != 1 else None)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        cond = self.cond.to(x.dtype).expand(b, -1, -1)
        if self.uncond is None:
            return self.unet(x, t, encoder_hidden_states=cond).sample
        both = torch.cat([self.uncond.to(x.dtype).expand(b, -1, -1), cond])
        out_u, out_c = self.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=both).sample.chunk(2)
        return out_u + self.guidance * (out_c - out_u)


def pad_to_multiple(x: Tensor, multiple: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """``F.pad`` widths (left, right, top, bottom) that bring ``size`` (default ``x``'s H, W) to a
    multiple of ``multiple``: split evenly, the extra pixel at the bottom/right (as :class:`PaddedPrior`)."""
    h, w = size or x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def _pad(x: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
    """Reflect padding, or replicate where ``x`` is too small to reflect."""
    h, w = x.shape[-2:]
    return F.pad(x, pads, mode="replicate" if max(pads[:2]) >= w or max(pads[2:]) >= h else "reflect")


class LatentPrior(Prior):
    """A latent diffusion model as a denoiser of its latents, with the VAE to go between pixels and latents.

    Args:
        vae: diffusers ``AutoencoderKL`` or ``VQModel``.
        model: ``model(z_t, t)`` on latents (a :class:`ConditionedUNet`, or an unconditional ``UNet2DModel``).
        scaling_factor: overrides the VAE config's (see :func:`load_latent` for VQ models).
        schedule, prediction, respacing, quantize: as :class:`DDPMPrior` (prediction ``"epsilon"`` or ``"v"``).
        vae_tiling: ``None`` (default) lets the VAE tile images larger than its config's
            ``sample_size`` (512 px for Stable Diffusion 1.5: diffusers' ``enable_tiling``, tiles of
            that size overlapping by 25 %, i.e. latent tiles of ``sample_size / 8``); ``False``
            never tiles (exact, more memory); ``True`` is the same as None.

    Attributes:
        channels: image channels (3); ``latent_channels``: latent channels (4); ``factor``: pixels
            per latent pixel (8). ``scaling_factor``, ``shift_factor``: the VAE's (shift 0 when absent).
        sigma_min, sigma_max, :meth:`sigmas`: on the latent scale, ``sqrt((1 - ab_t) / ab_t)``.
        native_size: the (H, W) in pixels the UNet was trained at (UNet ``sample_size`` x factor).
        multiple: 1: a ``UNet2DConditionModel`` takes any latent size (diffusers resizes its skip
            connections); for a ``UNet2DModel`` the latents are reflect-padded to its multiple
            (``unet_multiple``) and cropped back inside :meth:`denoise` / :meth:`vp`.

    Precision: with ``dtype=float16`` / ``bfloat16`` the VAE still runs in float32 when its config
    says ``force_upcast`` (as diffusers' pipelines upcast it to decode); the UNet runs in half precision.
    """

    multiple = 1

    def __init__(
        self,
        vae: torch.nn.Module,
        model: torch.nn.Module,
        schedule: Any,
        prediction: str = "epsilon",
        respacing: str = "uniform",
        quantize: bool = False,
        vae_tiling: bool | None = None,
        scaling_factor: float | None = None,
    ) -> None:
        super().__init__()
        cfg = vae.config
        self.vae = vae
        self.latent_channels, self.channels = cfg.latent_channels, cfg.in_channels
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(cfg.scaling_factor if scaling_factor is None else scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.vae_upcast = bool(getattr(cfg, "force_upcast", False))
        self.quantized = not hasattr(vae, "use_tiling")  # VQModel: no posterior, no tiling
        if not self.quantized and vae_tiling is False:
            vae.disable_tiling()
        elif not self.quantized:
            vae.enable_tiling()
        self.net = DDPMPrior(model, schedule, prediction, respacing=respacing, quantize=quantize, channels=self.latent_channels)
        self.sigma_min, self.sigma_max = 2 * self.net.sigma_min, 2 * self.net.sigma_max
        unet_cfg = getattr(getattr(model, "unet", model), "config", None)
        self.unet_multiple = 1 if hasattr(model, "unet") or unet_cfg is None else 2 ** (len(unet_cfg.down_block_types) - 1)
        size = getattr(unet_cfg, "sample_size", None)
        if size is not None:
            size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
            self.native_size = (size[0] * self.factor, size[1] * self.factor)

    # -- the prior in latent space -------------------------------------------------------------

    @property
    def schedule(self):
        return self.net.schedule

    @property
    def prediction(self) -> str:
        return self.net.prediction

    def timesteps(self, steps: int) -> Tensor:
        """The ``steps`` respaced integer timesteps behind :meth:`sigmas` (decreasing)."""
        return self.net.timesteps(steps)

    def sigmas(self, steps: int) -> Tensor:
        """``sqrt((1 - ab_t) / ab_t)`` at the respaced timesteps: float64, decreasing, latent scale."""
        return 2 * self.net.sigmas(steps)

    @staticmethod
    def alpha_bar(sigma: float | Tensor) -> float | Tensor:
        """VP ``ab = 1 / (1 + sigma^2)`` of a latent-scale sigma (no factor 2: latents are the network's scale)."""
        return 1.0 / (1.0 + sigma**2)

    def check_input(self, z: Tensor) -> None:
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ShapeError(
                f"LatentPrior denoises latents (B, {self.latent_channels}, H/{self.factor}, W/{self.factor}); got shape "
                f"{tuple(z.shape)}: encode images with prior.encode(x) first, or use a latent solver"
            )

    def denoise(self, z: Tensor, sigma: float | Tensor) -> Tensor:
        """E[z0 | z] for ``z = z0 + sigma n``: z (B, latent_channels, h, w), sigma float or (B,) on the latent scale."""
        self.check_input(z)
        s = sigma_tensor(sigma, z)
        return self._vp(z * (1 + s.view(-1, 1, 1, 1) ** 2).rsqrt(), s)[0]

    def vp(self, z_t: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """``(z0, eps)`` for the VP latent ``z_t = sqrt(ab) z0 + sqrt(1 - ab) eps``, ``ab = 1 / (1 + sigma^2)``."""
        self.check_input(z_t)
        return self._vp(z_t, sigma_tensor(sigma, z_t))

    def _vp(self, z_t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """The network's (z0, eps) at latent-scale (B,) sigmas ``s``, padded to ``unet_multiple`` and cropped back."""
        h, w = z_t.shape[-2:]
        pads = pad_to_multiple(z_t, self.unet_multiple)
        if any(pads):
            z_t = _pad(z_t, pads)
        z0, eps = self.net.vp(z_t, s / 2)
        return z0[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w], eps[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w]

    # -- pixels <-> latents --------------------------------------------------------------------

    def _vae_dtype(self) -> torch.dtype:
        return module_dtype(self.vae, torch.float32)

    def encode(self, x: Tensor, *, sample: bool = False, seed: int | None = None) -> Tensor:
        """Latents (B, latent_channels, ceil(H/f), ceil(W/f)) of [0, 1] images x (B, channels, H, W).

        H and W that are not multiples of ``factor`` are reflect-padded (evenly, the extra pixel at
        the bottom/right; replicate when the image is too small to reflect); :meth:`decode` with
        ``size=(H, W)`` crops back. ``z = (mu - shift_factor) * scaling_factor`` with ``mu`` the
        posterior mean (default: deterministic); ``sample=True`` draws ``mu + std n`` with
        per-sample seeds ``seed + i`` instead (what diffusers' img2img pipelines do).
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ShapeError(f"encode expects images (B, {self.channels}, H, W) in [0, 1]; got shape {tuple(x.shape)}")
        pads = pad_to_multiple(x, self.factor)
        x_in = _pad(2 * x - 1, pads) if any(pads) else 2 * x - 1
        out = self.vae.encode(x_in.to(self._vae_dtype()))
        if self.quantized:
            if sample:
                raise ConfigError("a VQ autoencoder has no posterior to sample from; use sample=False")
            z = out.latents
        else:
            z = out.latent_dist.mean
            if sample:
                z = z + out.latent_dist.std * SampleRNG(seed, z.shape[0]).randn_like(z)
        return ((z - self.shift_factor) * self.scaling_factor).to(x.dtype)

    def decode(self, z: Tensor, size: tuple[int, int] | None = None, clamp: bool = False) -> Tensor:
        """Images (B, channels, H, W) on the [0, 1] scale of latents z (B, latent_channels, h, w).

        ``size=(H, W)``: the image size given to :meth:`encode`, cropped back out of the
        (f h, f w) decoded image; None keeps the full decoded size. Values are not clamped to
        [0, 1] unless ``clamp=True`` (gradients through the decoder stay intact).
        """
        self.check_input(z)
        x = self.vae.decode((z / self.scaling_factor + self.shift_factor).to(self._vae_dtype())).sample
        x = ((x + 1) / 2).to(z.dtype)
        if size is not None:
            full = (z.shape[-2] * self.factor, z.shape[-1] * self.factor)
            left, right, top, bottom = pad_to_multiple(x, self.factor, size)
            if (size[0] + top + bottom, size[1] + left + right) != full:
                raise ShapeError(f"latents of shape {tuple(z.shape)} decode to {full}, which is not the padded size of {tuple(size)}")
            x = x[..., top : top + size[0], left : left + size[1]]
        return x.clamp(0, 1) if clamp else x

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.vae_upcast and self._vae_dtype() in (torch.float16, torch.bfloat16):
            self.vae.float()
        return self

    def extra_repr(self) -> str:
        return f"prediction={self.prediction}, guidance={getattr(self.net.model, 'guidance', None)}, factor={self.factor}"


def load_latent(
    folder: str | os.PathLike,
    *,
    prompt: str = "",
    guidance: float = 1.0,
    negative_prompt: str = "",
    respacing: str = "uniform",
    quantize: bool = False,
    vae_tiling: bool | None = None,
) -> LatentPrior:
    """A :class:`LatentPrior` from a Stable Diffusion-type pipeline folder (see the module docstring).

    Args:
        prompt: the text every denoising call is conditioned on (default ``""``, the
            unconditional model that CFG-trained Stable Diffusion models also are).
        guidance: classifier-free guidance scale; 1 (default) runs the conditional UNet once,
            otherwise ``out_neg + guidance (out_prompt - out_neg)`` with the ``negative_prompt``.
        respacing, quantize: see :class:`DDPMPrior`; vae_tiling: see :class:`LatentPrior`.
    """
    import diffusers

    from .diffusers import schedule_from_config

    folder = Path(folder)
    index = pipeline_index(folder) or {}
    vae_key = "vae" if index.get("vae") else "vqvae"
    vae_class = (index.get(vae_key) or [None, "AutoencoderKL"])[1]
    if vae_class not in ("AutoencoderKL", "VQModel"):
        raise ConfigError(f"{folder}: {vae_class} autoencoders are not supported; only AutoencoderKL and VQModel")
    unet_class = read_config(folder / "unet" / "config.json").get("_class_name")
    if unet_class not in ("UNet2DConditionModel", "UNet2DModel"):
        raise ConfigError(f"{folder}: the UNet is a {unet_class}; latent priors need a UNet2DConditionModel or UNet2DModel")
    vae = load_diffusers_module(folder / vae_key, getattr(diffusers, vae_class))
    unet = load_diffusers_module(folder / "unet", getattr(diffusers, unet_class))
    ucfg = unet.config
    if ucfg.in_channels != vae.config.latent_channels or getattr(ucfg, "addition_embed_type", None) is not None:
        raise ConfigError(
            f"{folder}: a UNet with {ucfg.in_channels} input channels (VAE latents: {vae.config.latent_channels}) and "
            f"addition_embed_type={getattr(ucfg, 'addition_embed_type', None)} is not a plain text-to-image model "
            "(inpainting, SDXL: not supported)"
        )
    schedule, prediction, _ = schedule_from_config(read_config(folder / "scheduler" / "scheduler_config.json"))
    if prediction not in ("epsilon", "v"):
        raise ConfigError(f"{folder}: prediction type {prediction!r} is not supported for latent priors; epsilon or v_prediction")
    scale = None
    if vae_class == "VQModel" and "scaling_factor" not in read_config(folder / vae_key / "config.json"):
        # LDM (Rombach et al. 2022) trained its VQ-f4 models on unscaled latents (scale_factor 1.0); diffusers
        # fills a missing key with 0.18215, which CompVis/ldm-celebahq-256's config on main lacks.
        scale = 1.0
    if unet_class == "UNet2DModel":
        if prompt or guidance != 1:
            raise ConfigError(f"{folder} is an unconditional latent model: it takes no prompt or guidance")
        model: torch.nn.Module = unet
    else:
        emb = encode_prompts(folder, [prompt] if guidance == 1 else [prompt, negative_prompt])
        if emb.shape[-1] != ucfg.cross_attention_dim:
            raise CheckpointError(
                f"{folder}: text embeddings of width {emb.shape[-1]} do not fit the UNet's cross_attention_dim {ucfg.cross_attention_dim}"
            )
        model = ConditionedUNet(unet, emb[:1], emb[1:] if guidance != 1 else None, guidance)
    return LatentPrior(vae, model, schedule, prediction, respacing=respacing, quantize=quantize, vae_tiling=vae_tiling,
                       scaling_factor=scale)


__all__ = ["LatentPrior", "ConditionedUNet", "load_latent", "encode_prompts", "is_latent_pipeline", "load_diffusers_module"]
