"""Additive white Gaussian measurement noise."""

from __future__ import annotations

import torch

from .._rng import SampleRNG
from ..errors import ConfigError, ShapeError

Tensor = torch.Tensor


class GaussianNoise:
    """``y -> y + sigma_y * n``, ``n ~ N(0, I)``, with ``sigma_y`` on the [0, 1] image scale.

    DPS's ``sigma = 0.05`` on [-1, 1] images is ``sigma_y = 0.025`` here.

    Args:
        sigma_y: noise std, a float or a per-sample sequence/tensor (B,), finite and >= 0.
    """

    def __init__(self, sigma_y: float | Tensor) -> None:
        s = torch.as_tensor(sigma_y, dtype=torch.float64).detach().cpu()
        if s.dim() > 1 or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ConfigError(f"sigma_y must be a finite float or (B,) tensor >= 0; got {sigma_y!r}")
        self.sigma_y = s

    def __call__(self, y: Tensor, seed: int | None = None) -> Tensor:
        """Noisy copy of ``y`` (B, ...); sample ``i`` draws from a generator seeded ``seed + i``."""
        s = self.sigma_y
        if s.dim() == 1 and s.numel() != y.shape[0]:
            raise ShapeError(f"sigma_y has {s.numel()} values for a batch of {y.shape[0]}; pass a float or (B,) values")
        s = s.to(device=y.device, dtype=y.dtype).reshape(-1, *([1] * (y.dim() - 1)))
        return y + s * SampleRNG(seed, y.shape[0]).randn_like(y)

    def __repr__(self) -> str:
        v = self.sigma_y
        return f"GaussianNoise(sigma_y={v.item() if v.dim() == 0 else v.tolist()})"
