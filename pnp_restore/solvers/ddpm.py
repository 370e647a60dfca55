"""Unconditional sampling: DDPM ancestral sampling and DDIM.

* Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
  with respaced steps as in Nichol & Dhariwal, "Improved DDPM", ICML 2021
  (``beta_t = 1 - ab_t / ab_prev``; posterior variance ``beta_tilde``, i.e. "fixedsmall").
* Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (Eq. 12, ``eta``).

They are the references the restoration solvers reduce to when the measurement is
empty, and are used by the tests to check the VP <-> VE conversion.
"""

from __future__ import annotations

import math

import torch

from .._rng import SampleRNG
from ..priors.base import Denoiser
from .common import Callback, Sigmas, Steps, alpha_bar, counting, from_pm1, initial_vp, schedule

Tensor = torch.Tensor


def ddpm_posterior(ab: float, ab_prev: float) -> tuple[float, float, float]:
    """Coefficients of q(x_prev | x_t, x0) for a respaced step: (c_x0, c_xt, variance).

    ``mean = c_x0 x0 + c_xt x_t``, ``var = beta (1 - ab_prev) / (1 - ab)`` with
    ``beta = 1 - ab / ab_prev`` (Ho et al. 2020, Eq. 7).
    """
    beta = 1.0 - ab / ab_prev
    c_x0 = math.sqrt(ab_prev) * beta / (1.0 - ab)
    c_xt = math.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)
    return c_x0, c_xt, beta * (1.0 - ab_prev) / (1.0 - ab)


@torch.no_grad()
def ddim_coefficients(ab: float, ab_next: float, eta: float) -> tuple[float, float]:
    """``(std, c_eps)`` of the DDIM step ``x' = sqrt(ab') x0 + c_eps eps + std z`` (Song et al. 2021, Eq. 12)."""
    std = eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
    return std, math.sqrt(max(1 - ab_next - std**2, 0.0))


def _sample(prior, shape, eta, ancestral, steps, seed, callback, sigmas, x_init, device, dtype, name) -> Tensor:
    sig = schedule(prior, steps, sigmas)
    n = len(sig) - 1
    like = torch.empty(0, device=device, dtype=dtype)
    rng = SampleRNG(seed, shape[0])
    den = counting(prior)
    log = Steps(name, n, callback, lambda: den.nfe, "check the prior or use more steps")
    x = initial_vp(rng, tuple(shape), sig[0], like, x_init)
    for i in range(n):
        ab, ab_next = alpha_bar(sig[i]), alpha_bar(sig[i + 1])
        x0, eps = den.vp(x, sig[i])
        if ancestral:
            c_x0, c_xt, var = ddpm_posterior(ab, ab_next)
            x = c_x0 * x0 + c_xt * x
            std = math.sqrt(var)
        else:
            std, c_eps = ddim_coefficients(ab, ab_next, eta)
            x = math.sqrt(ab_next) * x0 + c_eps * eps
        if std > 0:
            x = x + std * rng.randn_like(x)
        log(i, sig[i], x, x0, scale=math.sqrt(ab_next))
    return from_pm1(x)


def ddpm(
    prior: Denoiser,
    shape: tuple[int, int, int, int],
    *,
    steps: int = 1000,
    seed: int | None = None,
    callback: Callback | None = None,
    sigmas: Sigmas | None = None,
    x_init: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020), respaced to ``steps``.

    Args:
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``.
        shape: (B, C, H, W) of the samples.
        steps: number of denoiser calls; the schedule is ``prior.sigmas(steps)`` or ``sigmas``.
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start, diffused to the first sigma (default: pure noise).

    Returns:
        (B, C, H, W) samples on the [0, 1] scale (not clamped).
    """
    return _sample(prior, shape, 0.0, True, steps, seed, callback, sigmas, x_init, device, dtype, "ddpm")


def ddim(
    prior: Denoiser,
    shape: tuple[int, int, int, int],
    *,
    steps: int = 50,
    eta: float = 0.0,
    seed: int | None = None,
    callback: Callback | None = None,
    sigmas: Sigmas | None = None,
    x_init: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """DDIM sampling (Song et al. 2021, Eq. 12); ``eta=0`` is deterministic, ``eta=1`` is DDPM-like.

    Default ``steps=50`` as in the DDIM paper's main experiments. Arguments as :func:`ddpm`.
    """
    return _sample(prior, shape, eta, False, steps, seed, callback, sigmas, x_init, device, dtype, "ddim")


__all__ = ["ddim", "ddim_coefficients", "ddpm", "ddpm_posterior"]
