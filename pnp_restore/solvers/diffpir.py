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

The last step goes to sigma = 0 (``ab = 1``), so the result is its data-consistent ``x0_hat``
(Algorithm 1 returns ``x_0``).

Defaults and where they come from (official code, yuanzhi-zhu/DiffPIR): steps = 100
(``iter_num`` of main_ddpir_sisr.py, main_ddpir_deblur.py, configs/sisr.yaml, configs/deblur.yaml),
lam = 1.0 (``lambda_`` in every script and config), zeta = 0.1 (``zeta`` of main_ddpir_sisr.py,
main_ddpir_deblur.py and configs/deblur.yaml), DDIM eta = 0 (``eta``; not exposed),
clamp = True (utils/utils_model.py ``model_fn`` takes ``pred_xstart`` from ``p_sample(...,
clip_denoised=True)``: the denoised estimate is clamped to [-1, 1] before the data step),
``sigma_n = max(0.001, sigma_y)`` (``sigma = max(0.001, noise_level_img)``: the data weight never
vanishes). These are the scripts' base values; the values the official ``main_ddpir.py`` runs
per task are in :data:`DIFFPIR_PARAMS`. The code's ``skip_type = 'quad'`` schedule is given by
:func:`diffpir_timesteps`; for a DDPM prior pass ``sigmas=prior.schedule.sigmas[diffpir_timesteps(steps)]``
(the default schedule is the prior's own, e.g. DDIM's uniform respacing).
The code does the data step on [0, 1] images (``x0_p = x0 / 2 + 0.5``) with
``rho_t = lambda sigma_n^2 / sigma_t^2``, ``sigma_n`` on [0, 1] and ``sigma_t`` on [-1, 1]; the
minimiser does not depend on the image scale, so we take the step on [-1, 1] like the other
solvers (``y_pm = 2 y - A(1)``, noise ``2 sigma_n``). In our prox convention (data term
``||A x - y||^2 / (2 sigma^2)``, weight ``rho / 2 ||x - z||^2``) that is ``rho (2 sigma_n)^2 = rho_t``,
i.e. ``rho = lambda / (4 sigma_t^2)`` with ``sigma_t = 2 sigma``.

Deviation: the official scripts start from ``x_T = sqrt(ab_T) (2 x_y - 1) + sqrt(1 - ab_T) n`` with
``x_y`` the bicubic-upsampled (SR), blurred (deblurring) or masked (inpainting) measurement;
``sqrt(ab_T) = 0.0064`` for their 1000-step linear schedule. We start from pure noise (the paper's
``x_T ~ N(0, I)``); pass ``x_init=x_y`` to get the code's start.
Deviation: the official code's last iteration (t = 0) calls the denoiser, skips the data step,
discards the result and returns the iterate ``x`` at t = 0 (the previous ``x0_hat`` re-noised to
``sigma_t = 0.01`` on [-1, 1]). We follow Algorithm 1: the last step is a full step to sigma = 0,
so the output is the last ``x0_hat``; every denoiser call is used and the output fits ``y``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError
from ..operators.base import LinearOperator
from ..priors.base import Denoiser
from ..tasks import Task
from .common import POSITIVE, UNIT, Callback, Sigmas, SolverSpec, alpha_bar, from_pm1, initial_vp, setup

Tensor = torch.Tensor

#: Per-task hyper-parameters the official ``main_ddpir.py`` runs (configs/<task>.yaml, then its loop):
#: deblurring ``lambda_ * 7`` and ``zeta * 3`` of configs/deblur.yaml (also main_ddpir_deblur.py);
#: inpainting configs/inpaint.yaml (20 steps, noise-free ``y``); super-resolution configs/sisr.yaml,
#: whose ``lambda_ = 1`` the script sweeps over 2..12 times (no single published value).
DIFFPIR_PARAMS: dict[Task, dict[str, float]] = {
    Task.SUPER_RESOLUTION: {"steps": 100, "lam": 1.0, "zeta": 0.25},
    Task.GAUSSIAN_DEBLUR: {"steps": 100, "lam": 7.0, "zeta": 0.3},
    Task.MOTION_DEBLUR: {"steps": 100, "lam": 7.0, "zeta": 0.3},
    Task.INPAINTING: {"steps": 20, "lam": 1.0, "zeta": 1.0},
}


def diffpir_timesteps(steps: int, T: int = 1000) -> list[int]:
    """The official code's ``skip_type = 'quad'`` timesteps, decreasing from ``T - 1`` to 0.

    ``seq_i = int(sqrt(linspace(0, T^2, steps))_i)`` with the last one lowered by 1, and
    ``t_i = T - 1 - seq_i``: steps are dense near t = 0 (for 100 of 1000: 999, 899, 857, ..., 5, 0).
    """
    if not 2 <= int(steps) <= T:
        raise ConfigError(f"steps must be between 2 and T = {T}; got {steps}")
    seq = [int(v) for v in np.sqrt(np.linspace(0, T**2, int(steps)))]
    seq[-1] -= 1
    if len(set(seq)) < len(seq):
        raise ConfigError(f"the 'quad' schedule repeats timesteps for steps={steps} of T={T}; use fewer steps")
    return [T - 1 - s for s in seq]


@torch.no_grad()
def diffpir(
    y: Tensor,
    operator: LinearOperator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    lam: float = 1.0,
    zeta: float = 0.1,
    clamp: bool = True,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A x + sigma_y n`` with DiffPIR.

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.LinearOperator` (uses ``prox``).
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``.
        sigma_y: measurement noise std on the [0, 1] scale.
        steps: number of denoiser calls (default 100).
        lam: DiffPIR's lambda (data-step weight ``rho_t = lam sigma_n^2 / sigma_t^2``); per-task
            values in :data:`DIFFPIR_PARAMS`.
        zeta: fraction of fresh noise in the re-noising step (0 = DDIM, 1 = fully stochastic).
        clamp: clamp the denoised estimate to [0, 1] ([-1, 1] for the network) before the data step, as the code.
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start, diffused to the first sigma; default pure noise (the code
            uses the upsampled / blurred / masked ``y``, see the module docstring).
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    run = setup("diffpir", y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, den, rng, y_pm = run.sigmas, run.den, run.rng, run.y_pm
    n = len(sig) - 1
    log = run.steps(n, f"try a smaller zeta (zeta={zeta}) or a larger lambda (lam={lam})")
    sigma_n = 2.0 * max(0.001, float(sigma_y))  # on [-1, 1], like y_pm
    x = initial_vp(rng, run.x_shape, sig[0], y, x_init)
    for i in range(n):
        ab, ab_next = alpha_bar(sig[i]), alpha_bar(sig[i + 1])
        x0, _ = den.vp(x, sig[i])
        if clamp:
            x0 = x0.clamp(-1, 1)
        # prox weight rho with rho sigma_n^2 = the paper's lam sigma_n^2 / sigma_t^2 ([0, 1]-scale sigma_n)
        rho = lam / (4.0 * (2.0 * sig[i]) ** 2)
        x0 = operator.prox(x0, y_pm, rho, sigma_n)
        if ab_next < 1:
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            z = rng.randn_like(x)
            x = math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next) * (math.sqrt(1 - zeta) * eps + math.sqrt(zeta) * z)
        else:  # sigma = 0: x_0 is the last data-consistent estimate
            x = x0
        log(i, sig[i], x, x0, scale=math.sqrt(ab_next))
    return from_pm1(x)


SPEC = SolverSpec(
    "diffpir", diffpir, "Zhu et al., Denoising Diffusion Models for Plug-and-Play IR, CVPRW 2023",
    ranges={"lam": POSITIVE, "zeta": UNIT}, tasks=DIFFPIR_PARAMS,
)

__all__ = ["DIFFPIR_PARAMS", "SPEC", "diffpir", "diffpir_timesteps"]
