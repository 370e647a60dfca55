"""DiffPIR: Denoising Diffusion Models for Plug-and-Play Image Restoration.

Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool, CVPR Workshops (NTIRE) 2023,
Algorithm 1. Half-quadratic splitting inside a DDIM-like sampler; per step ``t``:

1. ``x0 = D(x_t)`` (the diffusion denoiser at the step's noise level);
2. data step ``x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2`` with
   ``rho_t = lambda sigma_n^2 / sigma_t^2`` (``sigma_n`` the noise of ``y`` on [0, 1],
   ``sigma_t = sqrt(1-ab_t)/sqrt(ab_t)`` the network's noise level on [-1, 1]), solved by
   ``operator.prox`` (closed form through the SVD, conjugate gradient otherwise);
3. ``eps_hat = (x_t - sqrt(ab_t) x0_hat) / sqrt(1-ab_t)`` and
   ``x_{t-1} = sqrt(ab_{t-1}) x0_hat + sqrt(1-ab_{t-1}) (sqrt(1-zeta) eps_hat + sqrt(zeta) z)``.

The last step returns the denoised estimate without a data step, as the official code.

Defaults and where they come from (official code, yuanzhi-zhu/DiffPIR,
``main_ddpir_sisr.py`` / ``main_ddpir_deblur.py``): steps = 100 (``iter_num``),
lam = 1.0 (``lambda_``), zeta = 0.1, eta = 0 (DDIM eta of the code's update, kept at 0),
``sigma_n = max(0.001, sigma_y)`` (the code never lets the data weight vanish).
The scripts then sweep ``lambda`` (2..12 times the default) with ``zeta = 0.25``; tune both
per task. The code's ``quad`` skip schedule is a property of the DDPM prior's timesteps;
pass ``sigmas=`` to use it.
The data step is done on [0, 1] images as in the official code (``x0_p = x0 / 2 + 0.5``),
so ``rho`` in our prox convention is ``lambda / sigma_t^2`` with ``sigma_t = 2 sigma``.
"""

from __future__ import annotations

import math

import torch

from .._rng import SampleRNG
from .common import (
    Callback,
    Steps,
    VPDenoiser,
    alpha_bar,
    check_measurement,
    from_pm1,
    initial_vp,
    schedule,
    to_pm1,
)

Tensor = torch.Tensor


@torch.no_grad()
def diffpir(
    y: Tensor,
    operator,
    prior,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    lam: float = 1.0,
    zeta: float = 0.1,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas=None,
) -> Tensor:
    """Restore ``y = A x + sigma_y n`` with DiffPIR.

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.LinearOperator` (uses ``prox``).
        prior: a :class:`~pnp_restore.priors.base.Prior`.
        sigma_y: measurement noise std on the [0, 1] scale.
        steps: number of denoiser calls (default 100).
        lam: DiffPIR's lambda (data-step weight ``rho_t = lam sigma_n^2 / sigma_t^2``).
        zeta: fraction of fresh noise in the re-noising step (0 = DDIM, 1 = fully stochastic).
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start (the code uses the upsampled ``y`` for SR), diffused to
            the first sigma; default pure noise.
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    x_shape = check_measurement(y, operator)
    sig = schedule(prior, steps, sigmas)
    n = len(sig) - 1
    rng = SampleRNG(seed, x_shape[0])
    den = VPDenoiser(prior)
    log = Steps(
        "diffpir", n, callback, lambda: den.nfe, f"try a smaller zeta (zeta={zeta}) or a larger lambda (lam={lam})"
    )
    sigma_n = max(0.001, float(sigma_y))
    x = initial_vp(rng, x_shape, sig[0], y, x_init)
    for i in range(n):
        ab, ab_next = alpha_bar(sig[i]), alpha_bar(sig[i + 1])
        x0, _ = den(x, sig[i])
        if i < n - 1:
            rho = lam / (2.0 * sig[i]) ** 2
            x0 = to_pm1(operator.prox(from_pm1(x0), y, rho, sigma_n))
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            z = rng.randn_like(x)
            x = math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next) * (math.sqrt(1 - zeta) * eps + math.sqrt(zeta) * z)
        else:
            x = x0
        log(i, sig[i], from_pm1(x / math.sqrt(ab_next)), from_pm1(x0))
    return from_pm1(x)


__all__ = ["diffpir"]
