"""The one prior interface every solver is written against.

A prior is a denoiser in the variance-exploding parameterisation on the
[0, 1] image scale::

    x = x0 + sigma * n,   n ~ N(0, I),   x0 in [0, 1]
    prior.denoise(x, sigma) ~= E[x0 | x]

``sigma`` is a float or a per-sample tensor of shape (B,). Each concrete prior
maps to its own network's range internally (e.g. [-1, 1] and a VP timestep for
DDPM networks). By Tweedie's formula the score is
``(denoise(x, sigma) - x) / sigma**2``.

The diffusion solvers work in the variance-preserving (VP) form of a DDPM on [-1, 1]
(Ho et al. 2020), ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps``, with ``ab = 1 / (1 + (2 sigma)^2)``
(:func:`vp_alpha_bar`). ``prior.vp(x_t, sigma) -> (x0, eps)`` is that view: DDPM-type priors
implement it natively (:class:`~pnp_restore.priors.ddpm.DDPMPrior`: network in, network out),
every other prior gets it from ``denoise`` (:func:`vp_from_denoise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

from ..errors import ConfigError, ShapeError

Tensor = torch.Tensor


def sigma_tensor(sigma: float | Tensor, x: Tensor) -> Tensor:
    """``sigma`` as a (B,) tensor on ``x``'s device and dtype; rejects negatives."""
    s = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    s = s.reshape(-1)
    if s.numel() != x.shape[0]:
        raise ShapeError(f"sigma has {s.numel()} values for a batch of {x.shape[0]}; pass a float or a (B,) tensor")
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
        raise ConfigError(f"sigma must be finite and >= 0; got {s.tolist()}")
    return s


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022, EDM) schedule: ``steps`` decreasing sigmas, float64.

    sigma_i = (sigma_max^(1/rho) + i/(steps-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.
    The final 0 is *not* appended; solvers step to 0 themselves.
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1; got {steps}")
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


@runtime_checkable
class Denoiser(Protocol):
    """What every solver needs from a prior: ``denoise(x, sigma) -> E[x0 | x]``.

    ``x``: (B, C, H, W) on the [0, 1] scale, ``x = x0 + sigma n``; ``sigma``: float or (B,)
    on the same scale. Optional attributes used when present: ``sigmas(steps)``,
    ``sigma_min``/``sigma_max``, ``channels`` and ``vp(x_t, sigma)``.
    """

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor: ...


def _scalar_or_column(v: float | Tensor) -> float | Tensor:
    return v.reshape(-1, 1, 1, 1) if isinstance(v, Tensor) else v


def _sqrt(v: float | Tensor) -> float | Tensor:
    return v.sqrt() if isinstance(v, Tensor) else math.sqrt(v)


def vp_from_denoise(
    denoise: Callable[[Tensor, float | Tensor], Tensor], x_t: Tensor, sigma: float | Tensor
) -> tuple[Tensor, Tensor]:
    """The VP view ``(x0, eps)`` on [-1, 1] of a [0, 1]-scale denoiser (any prior without its own ``vp``).

    ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` with ``ab = vp_alpha_bar(sigma)``: ``x_t / sqrt(ab)``
    is the variance-exploding image on [-1, 1] at noise ``2 sigma``, i.e. ``(x_t / sqrt(ab) + 1) / 2``
    on [0, 1] at noise ``sigma``; then ``x0 = 2 denoise(.) - 1`` and ``eps`` follows from ``x_t``.

    Args:
        denoise: ``denoise(x, sigma)`` on the [0, 1] scale.
        x_t: (B, C, H, W) VP iterate on the [-1, 1] scale.
        sigma: float or (B,) tensor on the [0, 1] scale, > 0.
    """
    ab = _scalar_or_column(vp_alpha_bar(sigma))
    x0 = 2 * denoise((x_t / _sqrt(ab) + 1) / 2, sigma) - 1
    eps = (x_t - _sqrt(ab) * x0) / _sqrt(1 - ab)
    return x0, eps


class Prior(torch.nn.Module):
    """Base class of priors. Subclasses implement :meth:`denoise`.

    Attributes:
        sigma_min, sigma_max: range of noise levels (on the [0, 1] scale) the
            denoiser was trained for; solvers' default schedules stay inside it.
        channels: number of image channels the prior models (None = any).
        native_size: (H, W) the network was trained at, or None if any size works.
        multiple: spatial sizes must be a multiple of this (padding handles the rest).
    """

    sigma_min: float = 0.001
    sigma_max: float = 40.0
    channels: int | None = None
    native_size: tuple[int, int] | None = None
    multiple: int = 1

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """E[x0 | x] for x = x0 + sigma * n; x: (B, C, H, W), sigma: float or (B,)."""
        raise NotImplementedError

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return self.denoise(x, sigma)

    def vp(self, x_t: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` on [-1, 1] for the VP iterate ``x_t`` (see the module docstring).

        This generic version goes through :meth:`denoise` (:func:`vp_from_denoise`); priors
        built on a VP network override it to call the network directly.
        """
        return vp_from_denoise(self.denoise, x_t, sigma)

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """grad_x log p_sigma(x) = (E[x0|x] - x) / sigma^2 (Tweedie)."""
        s = sigma_tensor(sigma, x).view(-1, 1, 1, 1)
        return (self.denoise(x, sigma) - x) / s**2

    def sigmas(self, steps: int) -> Tensor:
        """Default decreasing schedule of ``steps`` noise levels (float64, [0, 1] scale).

        Generic priors use :func:`range_sigmas` (Karras over [sigma_min, sigma_max]);
        discrete-time priors override it with their own respaced timesteps.
        """
        return range_sigmas(self, steps)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ShapeError(f"{type(self).__name__}.denoise expects (B, C, H, W); got shape {tuple(x.shape)}")
        if self.channels is not None and x.shape[1] != self.channels:
            raise ShapeError(
                f"{type(self).__name__} models {self.channels}-channel images; got {x.shape[1]} channels"
            )


def range_sigmas(denoiser, steps: int) -> Tensor:
    """The Karras schedule over the denoiser's [sigma_min, sigma_max] (float64, decreasing).

    The default of every :class:`Prior`, and the schedule the solvers give a bare denoiser (any
    object with only ``denoise(x, sigma)``): its ``sigma_min``/``sigma_max`` attributes if it has
    them, else :class:`Prior`'s [0.001, 40] (on the [0, 1] scale; 40 is ``alpha_bar = 1.6e-4``, close
    to the 4e-5 where Ho et al.'s 1000-step linear DDPM starts).
    """
    lo = getattr(denoiser, "sigma_min", Prior.sigma_min)
    hi = getattr(denoiser, "sigma_max", Prior.sigma_max)
    return karras_sigmas(steps, lo, hi)


def vp_alpha_bar(sigma: float | Tensor) -> float | Tensor:
    """VP alpha_bar for a [0, 1]-scale VE sigma: the network sees [-1, 1], so
    sigma_net = 2 sigma and alpha_bar = 1 / (1 + sigma_net^2)."""
    return 1.0 / (1.0 + (2.0 * sigma) ** 2)


def sigma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """Inverse of :func:`vp_alpha_bar`: [0, 1]-scale sigma = sqrt((1 - a) / a) / 2."""
    return torch.sqrt((1.0 - alpha_bar) / alpha_bar) / 2.0


__all__ = ["Denoiser", "Prior", "vp_from_denoise", "sigma_tensor", "karras_sigmas", "range_sigmas", "vp_alpha_bar", "sigma_from_alpha_bar"]
