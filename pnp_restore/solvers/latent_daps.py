"""LatentDAPS: Decoupled Annealing Posterior Sampling with a latent diffusion prior.

Zhang et al., "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing", CVPR 2025
(Sec. 4 "LatentDAPS"); official code zhangbingliang2019/DAPS, sampler.py ``LatentDAPS``. It is the
pixel DAPS of :mod:`pnp_restore.solvers.daps` run on latents ``z``: per annealing level ``sigma_i``
(latent scale), the probability-flow ODE gives ``z0_hat`` from ``z_i`` (``ode_steps`` Euler steps,
:func:`~pnp_restore.solvers.daps.ode_x0`), an MCMC chain samples
``p(z0 | z_i, y) ~ N(z0; z0_hat, sigma_i^2 I) exp(-||A(decode(z0)) - y||^2 / (2 tau^2))`` from
``z0_hat``, with the data gradient through the decoder (forward_operator ``LatentWrapper``:
the operator applied to ``model.decode(z)``), and ``z_{i+1} = z0 + sigma_{i+1} n``. The output is
``decode(z0)`` of the last level.

Defaults (official code, Stable Diffusion settings):
    steps = 50, sigma_max = 10, sigma_min = 0.1, rho = 7: configs/sampler/sd_edm_daps.yaml
    ``annealing_scheduler_config`` (``num_steps: 50``, ``sigma_max: 10``, ``sigma_min: 0.1``,
    ``timestep: 'poly-7'``); the latent EDM sigmas are on the latent's own scale, as ours (no factor 2);
    ode_steps = 2, ode_sigma_min = 0.001: the same file's ``diffusion_scheduler_config``;
    mcmc_steps = 30, lr = 1e-4, lr_min_ratio = 1, momentum = 0.45, mc_algo = "hmc", tau: the ``sd``
    group of configs/task/down_sampling.yaml (``tau: 0.01`` in every task, on [-1, 1]: our
    :data:`~pnp_restore.solvers.daps.TAU`, see that module for the factor 2 sqrt 2); other tasks'
    ``sd`` groups in :data:`LATENT_DAPS_TASKS`.
    cores/mcmc.py ``MCMCSampler``: ``prior_solver: gaussian``, ``mc_algo: hmc`` is damped HMC,
    ``v <- m v + sqrt(lr) score + sqrt(2 (1 - m)) n``, ``z <- z + sqrt(lr) v``, ``v`` drawn N(0, I)
    at the start of each level (``mc_prepare``); ``mc_algo: langevin`` is
    ``z <- z + lr score + sqrt(2 lr) n``; ``get_lr``: ``lr (1 + r (lr_min_ratio - 1))``,
    ``r = i / (steps + 1)`` as in the pixel solver.
    x_T: ``sigma_max`` times N(0, I) (sampler.py ``get_start``).

Scales: latents are the network's scale; the data term is on the [-1, 1] image scale as published
(``Run.residual`` of the decoded [-1, 1] image), so ``lr`` and ``tau`` keep their published meaning.
Deviation: the official chain returns zeros when an iterate turns NaN; we raise
:class:`~pnp_restore.errors.DivergenceError` naming the level (also for finite blow-up).
Deviation: ``x_init`` (optional) starts at ``encode(x_init) + sigma_0 n`` instead of pure noise.
Note: the ``ldm`` groups (LDM VQ-f4 on FFHQ / ImageNet, configs/sampler/latent_edm_daps.yaml) use
other values (e.g. inpainting 15 steps, lr 9.02e-6); they are not listed (our latent priors are
Stable Diffusion-type pipelines first).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..operators.base import Operator
from ..priors.base import Denoiser
from ..tasks import Task
from .common import MAX_STEPS, POSITIVE, UNIT, Callback, Choices, Range, Run, Sigmas, SolverSpec, schedule, setup, to_pm1
from .daps import TAU, _noise, edm_sigmas, ode_x0
from .latent_dpe import check_blowup, check_latent, decode, options, start_latent

Tensor = torch.Tensor

#: The ``sd`` groups (Stable Diffusion) of the official configs/task/<task>.yaml (``tau: 0.01`` everywhere).
LATENT_DAPS_TASKS: dict[Task, dict[str, float]] = {
    Task.SUPER_RESOLUTION: {"mcmc_steps": 30, "lr": 1e-4, "lr_min_ratio": 1.0, "momentum": 0.45},
    Task.GAUSSIAN_DEBLUR: {"mcmc_steps": 40, "lr": 1e-5, "lr_min_ratio": 1.0, "momentum": 0.9},
    Task.MOTION_DEBLUR: {"mcmc_steps": 30, "lr": 2e-5, "lr_min_ratio": 1.0, "momentum": 0.85},
    Task.INPAINTING: {"mcmc_steps": 58, "lr": 1.11e-6, "lr_min_ratio": 0.43, "momentum": 0.92},
    Task.PHASE_RETRIEVAL: {"mcmc_steps": 95, "lr": 1.1e-4, "lr_min_ratio": 0.027, "momentum": 0.47},
}

DEFAULT_STEPS = 50


def mcmc(
    run: Run, z0_hat: Tensor, sigma: float, steps: int, lr: float, tau: float, algo: str, momentum: float
) -> Tensor:
    """``steps`` Langevin / damped-HMC steps on ``p(z0 | z_t, y)`` from ``z0_hat`` (latent-scale ``sigma``);
    the data gradient is autograd through the decoder and the operator (never the denoiser)."""
    weight = 1.0 / (8.0 * tau**2)  # 1 / tau_code^2, tau_code = 2 sqrt(2) tau (see daps.py)
    z = z0_hat
    v = run.rng.randn_like(z0_hat) if algo == "hmc" and steps > 0 else None
    for eps in _noise(run.rng, z0_hat, steps):
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(run.residual(to_pm1(decode(run, zg))).pow(2).sum(), zg)
        score = -weight * grad + (z0_hat - z) / sigma**2
        if v is None:
            z = z + lr * score + math.sqrt(2.0 * lr) * eps
        else:
            v = momentum * v + math.sqrt(lr) * score + math.sqrt(2.0 * (1.0 - momentum)) * eps
            z = z + math.sqrt(lr) * v
    return z


@torch.no_grad()
def latent_daps(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = DEFAULT_STEPS,
    ode_steps: int = 2,
    mcmc_steps: int = 30,
    lr: float = 1e-4,
    lr_min_ratio: float = 1.0,
    tau: float | None = TAU,
    momentum: float = 0.45,
    mc_algo: str = "hmc",
    sigma_max: float = 10.0,
    sigma_min: float = 0.1,
    ode_sigma_min: float = 0.001,
    rho: float = 7.0,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + sigma_y n`` by LatentDAPS (any differentiable operator on decoded images).

    Args:
        y: measurement (B, ...) on the [0, 1] scale of the images.
        operator: any :class:`~pnp_restore.operators.base.Operator` on [0, 1] images (autograd only).
        prior: a latent prior (``denoise`` on latents, ``encode`` / ``decode``; a
            :class:`~pnp_restore.priors.latent.LatentPrior`); the decoder is differentiated, the denoiser not.
        sigma_y: measurement noise std on [0, 1]; used only when ``tau=None``.
        steps: annealing levels (default 50, sd_edm_daps.yaml).
        ode_steps: Euler steps of the ODE giving ``z0_hat`` per level.
        mcmc_steps, lr, lr_min_ratio, momentum, mc_algo: the chain per level (``"hmc"`` or ``"langevin"``;
            ``lr`` on the published scale, decaying linearly to ``lr * lr_min_ratio``; per-task values in
            :data:`LATENT_DAPS_TASKS`).
        tau: likelihood std on [0, 1] (default: the code's 0.01, :data:`~pnp_restore.solvers.daps.TAU`);
            ``None``: the true noise ``sigma_y`` (the exact ``p(z0 | z_t, y)`` target).
        sigma_max, sigma_min, rho: the annealing schedule (EDM ``poly-rho``, latent scale).
        ode_sigma_min: where the ODE stops (latent scale); below every annealing level.
        seed: sample i uses seed ``seed + i``.
        callback: ``callback(info)`` per level with ``x`` (``decode(z0)``), ``x0`` (``decode(z0_hat)``),
            ``z``, ``sigma``, ``nfe`` (only when given: the decodes cost).
        x_init: optional [0, 1] start, encoded and noised to the first level.
        sigmas: explicit latent-scale levels (decreasing; a final 0 is added); overrides ``steps``,
            ``sigma_max``, ``sigma_min``, ``rho``.

    Returns:
        (B, 3, H, W) restored images on [0, 1] (not clamped).
    """
    check_latent(prior, SPEC.name)
    o = options(latent_daps, SPEC, dict(steps=steps, ode_steps=ode_steps, mcmc_steps=mcmc_steps, lr=lr,
                                         lr_min_ratio=lr_min_ratio, tau=tau, momentum=momentum, mc_algo=mc_algo,
                                         sigma_max=sigma_max, sigma_min=sigma_min, ode_sigma_min=ode_sigma_min,
                                         rho=rho))  # fmt: skip
    if sigmas is None and o["sigma_min"] >= o["sigma_max"]:
        raise ConfigError(f"sigma_min must be below sigma_max; got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if tau is None:
        if not sigma_y > 0:
            raise ConfigError("tau=None uses the measurement noise sigma_y, which is 0; pass tau > 0 or sigma_y > 0")
        tau = float(sigma_y)

    def levels(den, n: int, given: Sigmas | None) -> list[float]:
        return schedule(den, n, given) if given is not None else edm_sigmas(sigma_max, sigma_min, n + 1, rho)[:-1] + [0.0]

    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=o["steps"], sigmas=sigmas, seed=seed,
                callback=callback, levels=levels)  # fmt: skip
    sig, n = run.sigmas, len(run.sigmas) - 1
    if sig[n - 1] <= ode_sigma_min:
        raise ConfigError(f"the last annealing level {sig[n - 1]:.4g} is not above ode_sigma_min={ode_sigma_min}; "
                          "lower ode_sigma_min or raise sigma_min")  # fmt: skip
    hint = f"the chain is unstable: try a smaller lr (lr={lr:g}) or a larger tau (tau={tau:.4g})"
    log = run.steps(n, hint, pm1=False)
    z = start_latent(run, prior, sig[0], x_init, y)
    z0 = z
    for i in range(n):
        z0_hat = ode_x0(run, z, sig[i], o["ode_steps"], ode_sigma_min, rho)
        step_lr = lr * (1.0 + i / (n + 1) * (o["lr_min_ratio"] - 1.0))
        z0 = mcmc(run, z0_hat, sig[i], o["mcmc_steps"], step_lr, tau, o["mc_algo"], o["momentum"])
        check_blowup(SPEC.name, i, n, sig[i], z0, hint)
        z = z0 + sig[i + 1] * run.rng.randn_like(z0) if sig[i + 1] > 0 else z0
        if callback is None:
            log(i, sig[i], z0)  # NaN/Inf check only
        else:
            log(i, sig[i], decode(run, z0), decode(run, z0_hat), z=z)
    return decode(run, z0)


SPEC = SolverSpec(
    "latent_daps", latent_daps,
    "Zhang et al., Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing, CVPR 2025 (LatentDAPS)",
    linear=False, prior="denoise",
    ranges={
        "ode_steps": Range(1, MAX_STEPS), "mcmc_steps": Range(0, MAX_STEPS), "lr": POSITIVE, "lr_min_ratio": UNIT,
        "tau": POSITIVE, "momentum": UNIT, "mc_algo": Choices(("hmc", "langevin")),
        "sigma_max": POSITIVE, "sigma_min": POSITIVE, "ode_sigma_min": POSITIVE, "rho": POSITIVE,
    },
    tasks=LATENT_DAPS_TASKS,
)  # fmt: skip

__all__ = ["LATENT_DAPS_TASKS", "SPEC", "latent_daps"]
