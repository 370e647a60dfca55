"""DPS: Diffusion Posterior Sampling.

Chung, Kim, Mccann, Klasky & Ye, "Diffusion Posterior Sampling for General Noisy
Inverse Problems", ICLR 2023 (Algorithm 1, Gaussian noise). Each DDPM ancestral
step is followed by a gradient step on the measurement residual of the denoised
estimate, differentiated through the denoiser:

    x_{t-1} = x'_{t-1} - zeta * grad_{x_t} || y - A(x0_hat(x_t)) ||

which is the paper's ``zeta_t = zeta / ||y - A x0_hat||`` step on ``||.||^2`` up to the
factor 2 absorbed in ``zeta``, exactly as the official code
(DPS2022/diffusion-posterior-sampling, ``PosteriorSampling``) implements it.

Defaults and where they come from (official code, DPS2022/diffusion-posterior-sampling):
    steps = 1000 (configs/diffusion_config.yaml: ``steps: 1000``, ``timestep_respacing: 1000``,
    linear betas; a DDPM prior's own 1000 timesteps give that schedule);
    zeta = 1.0 (``kwargs.get('scale', 1.0)`` in ``PosteriorSampling``,
    guided_diffusion/condition_methods.py); every task config overrides it, see
    :data:`DPS_SCALES` (configs/super_resolution_config.yaml 0.3, inpainting_config.yaml 0.5,
    gaussian_deblur_config.yaml 0.3, motion_deblur_config.yaml 0.3, nonlinear_deblur_config.yaml 0.3,
    phase_retrieval_config.yaml 1.0);
    clamp = True (configs/diffusion_config.yaml ``clip_denoised: True``: x0_hat clamped to [-1, 1]
    before the posterior mean and the residual, so the gradient flows through the clamp).
    All configs use ``noise: sigma: 0.05`` on [-1, 1], i.e. ``sigma_y = 0.025`` here.
Update (guided_diffusion/gaussian_diffusion.py ``p_sample_loop`` and ``DDPM.p_sample``): x_T ~ N(0, I)
(sample_condition.py); per step the posterior mean of q(x_{t-1} | x_t, x0_hat) plus noise
(none at the last step), then ``x_{t-1} -= scale * grad_{x_t} ||y - A(x0_hat)||``, the last step
included; the output is that last iterate.

Deviation: the reference code takes one norm over the whole batch; we use one norm per
sample so that samples stay independent (identical for batch size 1, the reference's).
Deviation: the reference FFHQ/ImageNet networks learn the reverse variance
("learned_range"); a :class:`Prior` only gives the denoiser, so we use the DDPM posterior
variance ``beta_tilde`` ("fixedsmall", Ho et al. 2020).
Note: the residual is taken on [-1, 1] images, ``||y_pm - A(x0_pm)|| = 2 ||y - A x0||``,
as in the reference code, so ``zeta`` has the published meaning; ``sigma_y`` does not
enter the update (DPS's step size replaces it).
"""

from __future__ import annotations

import math

import torch

from ..operators.base import Operator
from ..priors.base import Denoiser
from ..tasks import Task
from .common import Callback, Range, Sigmas, SolverSpec, alpha_bar, from_pm1, initial_vp, setup
from .ddpm import ddpm_posterior

Tensor = torch.Tensor

#: Per-task step size ``scale`` (our ``zeta``) of the official task configs (configs/<task>_config.yaml).
DPS_SCALES: dict[Task, float] = {
    Task.SUPER_RESOLUTION: 0.3,
    Task.INPAINTING: 0.5,
    Task.GAUSSIAN_DEBLUR: 0.3,
    Task.MOTION_DEBLUR: 0.3,
    Task.NONLINEAR_DEBLUR: 0.3,
    Task.PHASE_RETRIEVAL: 1.0,
}


def dps(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 1000,
    zeta: float = 1.0,
    clamp: bool = True,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A x + noise`` by DPS (Gaussian-noise version).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.Operator`, linear or not (only ``forward``
            is used; gradients come from autograd), as in the paper (Sec. 3.2, phase retrieval, nonlinear blur).
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any ``denoise(x, sigma)``; differentiable.
        sigma_y: measurement noise std (unused by the update, kept for a uniform API).
        steps: number of DDPM steps (denoiser calls with gradient).
        zeta: step size ``scale`` of the reference code, per sample ``zeta * grad ||r||``; the
            published per-task values are in :data:`DPS_SCALES` (1.0 is the code's fallback).
        clamp: clamp the denoised estimate to [-1, 1] as the reference code does.
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start, diffused to the first sigma (default: pure noise).
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    run = setup("dps", y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, den, rng = run.sigmas, run.den, run.rng
    n = len(sig) - 1
    log = run.steps(n, f"try a smaller step size (zeta={zeta}) or more steps")
    x = initial_vp(rng, run.x_shape, sig[0], y, x_init)
    for i in range(n):
        ab, ab_next = alpha_bar(sig[i]), alpha_bar(sig[i + 1])
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0, _ = den.vp(x, sig[i])
            if clamp:
                x0 = x0.clamp(-1, 1)
            residual = run.residual(x0).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(residual.sum(), x)
        x0 = x0.detach()
        c_x0, c_xt, var = ddpm_posterior(ab, ab_next)
        x_next = c_x0 * x0 + c_xt * x.detach()
        if var > 0:
            x_next = x_next + math.sqrt(var) * rng.randn_like(x_next)
        x = x_next - zeta * grad
        log(i, sig[i], x, x0, scale=math.sqrt(ab_next), residual=residual.detach() / 2)
    return from_pm1(x.detach())


SPEC = SolverSpec(
    "dps", dps, "Chung et al., Diffusion Posterior Sampling, ICLR 2023", prior="vp+grad", linear=False,
    ranges={"zeta": Range(0.0)}, tasks={task: {"zeta": zeta} for task, zeta in DPS_SCALES.items()},
)

__all__ = ["DPS_SCALES", "SPEC", "dps"]
