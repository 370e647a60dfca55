"""Image-quality metrics and resource counters for benchmark rows.

PSNR and SSIM are scikit-image's (``peak_signal_noise_ratio``,
``structural_similarity``) on RGB images in [0, 1]: ``data_range=1``, SSIM over
all channels with ``channel_axis=-1`` (uniform 7x7 window, scikit-image's
defaults), computed in float64 on the restored image clipped to [0, 1] without
uint8 quantisation. LPIPS is v0.1 (AlexNet and VGG, :mod:`.lpips`).
All functions take (B, C, H, W) tensors and return one value per sample.
"""

from __future__ import annotations

import resource
import sys
from functools import lru_cache

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..errors import ShapeError

Tensor = torch.Tensor


def _hwc(x: Tensor) -> np.ndarray:
    """(B, C, H, W) tensor -> (B, H, W, C) float64 numpy in [0, 1]."""
    return x.detach().to("cpu", torch.float64).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _check(x: Tensor, ref: Tensor) -> None:
    if x.shape != ref.shape or x.dim() != 4:
        raise ShapeError(f"metrics compare two (B, C, H, W) batches of one shape; got {tuple(x.shape)}, {tuple(ref.shape)}")


def psnr(x: Tensor, ref: Tensor) -> list[float]:
    """PSNR in dB of ``x`` against ``ref`` (data_range 1), one value per sample."""
    _check(x, ref)
    return [float(peak_signal_noise_ratio(r, a, data_range=1.0)) for a, r in zip(_hwc(x), _hwc(ref))]


def ssim(x: Tensor, ref: Tensor) -> list[float]:
    """SSIM of ``x`` against ``ref`` (data_range 1, channel_axis -1), one value per sample."""
    _check(x, ref)
    return [float(structural_similarity(r, a, data_range=1.0, channel_axis=-1)) for a, r in zip(_hwc(x), _hwc(ref))]


@lru_cache(maxsize=4)
def _lpips_model(net: str, device: str):
    from .lpips import load

    return load(net, device=device)


def lpips(x: Tensor, ref: Tensor, net: str = "alex") -> list[float]:
    """LPIPS v0.1 distance (lower is better), one value per sample; images clipped to [0, 1].

    Raises :class:`~pnp_restore.errors.CheckpointError` if the converted weights are missing.
    """
    _check(x, ref)
    model = _lpips_model(net, str(x.device))
    with torch.no_grad():
        return model(x.clamp(0, 1), ref).tolist()


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory in MiB: ``torch.cuda.max_memory_allocated`` on CUDA, else the
    process' peak resident set size (``ru_maxrss``; never decreases)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory window (CUDA only; CPU RSS has no reset)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


__all__ = ["psnr", "ssim", "lpips", "peak_memory_mb", "reset_peak_memory"]
