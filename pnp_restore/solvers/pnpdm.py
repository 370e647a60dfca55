"""PnP-DM: split Gibbs sampling with a diffusion model as a plug-and-play prior.

Wu, Sun, Chen, Zhang, Yue & Bouman, "Principled Probabilistic Imaging using Diffusion Models as
Plug-and-Play Priors", NeurIPS 2024. The posterior ``p(x | y)`` is augmented with a copy ``z`` of
the image, ``pi(x, z) ∝ p(x) exp(-||z - x||^2 / (2 rho^2)) p(y | z)``, and a Gibbs sampler
alternates its two conditionals while the coupling ``rho`` is annealed:

1. likelihood step, ``z ~ p(z | x, y) ∝ exp(-||y - A(z)||^2 / (2 sigma_y^2) - ||z - x||^2 / (2 rho^2))``;
2. prior step, ``x ~ p(x | z)``: ``z`` is read as a noisy image at noise level ``rho``, and the
   reverse EDM sampler runs from it at ``sigma = rho`` down to 0 (a posterior sample of the
   denoising problem, the paper's "denoising step");
3. ``rho_k = max(rho * rho_decay^k, rho_min)``.

As ``rho -> 0`` the x-marginal of ``pi`` tends to the posterior. The output is the last ``x``.

Likelihood step (:func:`likelihood_step`):
* linear operators: an exact Gaussian sample by perturb-and-MAP through the operator's
  ``prox``: ``z = argmin ||A z - (y + sigma_y n2)||^2 / (2 sigma_y^2) + ||z - (x + rho n1)||^2 / (2 rho^2)``
  with ``n1, n2 ~ N(0, I)``. With ``Q = A^T A / sigma_y^2 + I / rho^2`` this is
  ``z = Q^-1 (A^T (y + sigma_y n2) / sigma_y^2 + (x + rho n1) / rho^2)``: its mean is the conditional
  mean ``Q^-1 (A^T y / sigma_y^2 + x / rho^2)`` and its covariance
  ``Q^-1 (A^T A / sigma_y^2 + I / rho^2) Q^-1 = Q^-1``, the conditional covariance. For an operator
  with an SVD ``prox`` is the closed form in the singular basis (the official code's
  ``proximal_generator`` of ``LinearSVDOperator``, pnpdm/tasks/__init__.py, and of the circular
  blurs, pnpdm/tasks/gaussian_blur.py); otherwise conjugate gradient (exact to its tolerance).
  ``sigma_y = 0``: the projection of ``x + rho n1`` onto ``{A z = y}``, the exact limit.
* nonlinear operators: unadjusted Langevin, as the official code
  (``proximal_generator`` of pnpdm/tasks/phase_retrieval.py and coded_diffraction_patterns.py):
  ``z <- z - g grad ||A(z) - y||^2 / (2 sigma_y^2) - (g / rho^2) (z - x) + sqrt(2 g) n``, from ``z = x``.

Defaults and where they come from (official code, zihuiwu/PnP-DM-public; its images are on
[-1, 1], so its ``rho`` and EDM noise levels are twice ours; ``sigma_y`` of phase retrieval is on
the measurement scale of a [0, 1] image there too, its operator maps [-1, 1] to [0, 1] first):
    steps = 100 Gibbs iterations (configs/sampler/pnp_edm.yaml ``num_iters: 100``);
    rho = 5.0, rho_decay = 0.9, rho_min = 0.15: commands.sh runs every published experiment with
    ``sampler.rho=10 sampler.rho_decay_rate=0.9`` and ``sampler.rho_min=0.3`` for the linear tasks
    (Gaussian / motion deblurring, super-resolution), ``0.1`` for phase retrieval and coded
    diffraction patterns (:data:`PNPDM_TASKS`). (pnp_edm.yaml's own ``rho: 0.1, rho_decay_rate: 1.0,
    rho_min: 0.0`` is overridden in every run.)
    Prior step: ``mode=edm_sde`` of commands.sh (the EDM entry of its four modes, the one
    ``pnp_edm_batch_bh.yaml`` defaults to), i.e. pnpdm/samplers/pnp_edm/denoiser_edm.py with
    ``discretization: edm, schedule: linear, scaling: none`` (pnp_edm.yaml ``edm_kwargs``):
    ``edm_steps = 100`` (``common_kwargs.num_steps``) Karras levels (rho = 7) over
    [max(0.002, net.sigma_min), min(80, net.sigma_max)] on [-1, 1], i.e. over the prior's
    [sigma_min, sigma_max] clipped to [0.001, 40] here; the sampler uses the part of it below
    ``rho``. Euler-Maruyama steps of the reverse SDE (``lmbd = 2``):
    ``x <- x - 2 (t - t') / t (x - D(x, t)) + sqrt(2 t (t - t')) n``, no noise on the last step to 0;
    ``sde=False`` is the code's probability-flow mode (``lmbd = 1``, no noise; coded diffraction
    patterns). ``S_churn = 0`` (pnp_edm.yaml; the sampler does not use it).
    Langevin: ``langevin_steps = 100`` and step ``1e-4`` on [-1, 1] (phase_retrieval.py
    ``num_iters=100, gamma=1e-4``; coded_diffraction_patterns.py uses 1e-3), which is
    ``langevin_step = 2.5e-5`` on [0, 1] (a Langevin step ``g`` on ``2 z`` is ``g / 4`` on ``z``).

Deviation: the code starts the prior step at the first EDM level *below* ``rho``, treating ``z``
as less noisy than it is; we start at ``rho`` itself (one extra step from ``rho`` to that level),
so the prior step samples ``p(x | z)`` at the right noise level.
Deviation: the code collects 20 of the iterates after 40 burn-in iterations
(``num_burn_in_iters``, ``num_samples_per_run``) and scores the last one (posterior_sample.py
``samples[[-1]]``); we return that last iterate (more samples: more seeds, or the callback's ``x``).
Deviation: initialisation. The code uses ``A^+ y`` for its SVD operators (``LinearSVDOperator.initialize``),
zeros on [-1, 1] for the circular blurs and N(0, I) on [-1, 1] for the nonlinear tasks; we use
``A^+ y`` for every linear operator and N(0, I) on [-1, 1] (``0.5 + 0.5 n`` here) for nonlinear
ones, or ``x_init``. With ``rho = 5`` the first likelihood step hardly depends on it.
Deviation: the code's Langevin step size is fixed per operator; ours is one option
(``langevin_step``) with phase retrieval's value as default: an operator with a larger Jacobian or
a smaller ``sigma_y`` needs ``langevin_step < sigma_y^2 / ||J_A||^2`` to stay stable (a
:class:`DivergenceError` says so).
"""

from __future__ import annotations

import math
import typing

import torch

from .._rng import SampleRNG
from ..errors import ConfigError
from ..operators.base import Operator
from ..priors.base import Denoiser, Prior, karras_sigmas
from ..tasks import Task
from .common import (
    COMMON_RANGES,
    MAX_STEPS,
    POSITIVE,
    Callback,
    CountingPrior,
    Range,
    SolverSpec,
    check_value,
    check_x_init,
    setup,
)

Tensor = torch.Tensor

#: The EDM sampler's default noise range on the [-1, 1] scale, halved (Karras et al. 2022,
#: ``sigma_min=0.002, sigma_max=80``; denoiser_edm.py clips the network's range to it).
EDM_RANGE = (0.001, 40.0)

#: The Langevin likelihood step of phase retrieval (phase_retrieval.py ``num_iters=100, gamma=1e-4`` on
#: [-1, 1], i.e. ``1e-4 / 4`` on [0, 1]).
LANGEVIN_STEPS, LANGEVIN_STEP = 100, 2.5e-5

#: Per-task settings of the official commands.sh (``rho`` and ``rho_min`` halved to [0, 1]).
PNPDM_TASKS: dict[Task, dict[str, float]] = {
    Task.GAUSSIAN_DEBLUR: {"rho": 5.0, "rho_decay": 0.9, "rho_min": 0.15},
    Task.MOTION_DEBLUR: {"rho": 5.0, "rho_decay": 0.9, "rho_min": 0.15},
    Task.SUPER_RESOLUTION: {"rho": 5.0, "rho_decay": 0.9, "rho_min": 0.15},
    Task.PHASE_RETRIEVAL: {"rho": 5.0, "rho_decay": 0.9, "rho_min": 0.05,
                           "langevin_steps": LANGEVIN_STEPS, "langevin_step": LANGEVIN_STEP},
}


def edm_levels(prior: Denoiser, edm_steps: int) -> list[float]:
    """The EDM sampler's Karras levels (rho = 7, decreasing, [0, 1] scale): ``edm_steps`` of them over the
    prior's [sigma_min, sigma_max] clipped to :data:`EDM_RANGE` (denoiser_edm.py, ``discretization='edm'``)."""
    lo = max(getattr(prior, "sigma_min", Prior.sigma_min), EDM_RANGE[0])
    hi = min(getattr(prior, "sigma_max", Prior.sigma_max), EDM_RANGE[1])
    return karras_sigmas(edm_steps, lo, max(lo, hi)).tolist()


def rho_schedule(steps: int, rho: float, rho_decay: float, rho_min: float) -> list[float]:
    """``rho_k = max(rho * rho_decay^k, rho_min)`` for k = 0..steps-1 (pnp_edm.py ``rho_iter``)."""
    return [max(rho * rho_decay**k, rho_min) for k in range(steps)]


def likelihood_step(
    operator: Operator, x: Tensor, y: Tensor, rho: float, sigma_y: float, rng: SampleRNG,
    langevin_steps: int = LANGEVIN_STEPS, langevin_step: float = LANGEVIN_STEP,
) -> Tensor:
    """A sample of ``p(z | x, y) ∝ exp(-||y - A(z)||^2 / (2 sigma_y^2) - ||z - x||^2 / (2 rho^2))``.

    Exact for a linear operator (perturb-and-MAP through ``operator.prox``, see the module
    docstring); ``langevin_steps`` unadjusted Langevin steps of size ``langevin_step`` from ``z = x``
    otherwise. ``x``: (B, C, H, W) on [0, 1]; ``y``: the measurement; returns ``z`` shaped like ``x``.
    """
    if operator.linear:
        x_pert = x + rho * rng.randn_like(x)
        y_pert = y + sigma_y * rng.randn_like(y) if sigma_y > 0 else y
        return operator.prox(x_pert, y_pert, 1.0 / rho**2, sigma_y)
    z, g = x, langevin_step
    for _ in range(langevin_steps):
        with torch.enable_grad():  # autograd.grad: ~30x faster than torch.func.vjp on small images
            z_ = z.detach().requires_grad_(True)
            az = operator.forward(z_)
            (grad,) = torch.autograd.grad(az, z_, (az.detach() - y) / sigma_y**2)
        z = z - g * grad - (g / rho**2) * (z - x) + math.sqrt(2 * g) * rng.randn_like(z)
    return z


def prior_step(
    den: CountingPrior, z: Tensor, rho: float, levels: list[float], rng: SampleRNG, sde: bool = True
) -> Tensor:
    """A sample of ``p(x | z)`` for ``z = x + rho n``: the EDM Euler(-Maruyama) sampler from ``sigma = rho``
    through the ``levels`` below ``rho`` to 0 (denoiser_edm.py ``Denoiser_EDM.__call__``, linear schedule,
    no scaling). ``sde``: the reverse SDE (``lmbd = 2`` plus noise, none on the last step); else the ODE."""
    ts = [rho] + [t for t in levels if t < rho] + [0.0]
    lmbd = 2.0 if sde else 1.0
    x = z
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x - lmbd * (t - t_next) / t * (x - den.denoise(x, t))
        if sde and t_next > 0:
            x = x + math.sqrt(2 * t * (t - t_next)) * rng.randn_like(x)
    return x


def _check_options(options: dict[str, object]) -> dict[str, object]:
    """The options checked against :func:`pnpdm`'s annotations and ``SPEC.ranges`` (:class:`ConfigError`)."""
    hints = typing.get_type_hints(pnpdm)
    out = {k: check_value(k, v, hints[k], SPEC.ranges.get(k)) for k, v in options.items()}
    if out["rho_min"] > out["rho"]:
        raise ConfigError(
            f"rho_min must be <= rho (the annealing goes down); got rho_min={out['rho_min']}, rho={out['rho']}"
        )
    return out


@torch.no_grad()
def pnpdm(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    rho: float = 5.0,
    rho_decay: float = 0.9,
    rho_min: float = 0.15,
    edm_steps: int = 100,
    sde: bool = True,
    langevin_steps: int = LANGEVIN_STEPS,
    langevin_step: float = LANGEVIN_STEP,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
) -> Tensor:
    """Sample the posterior of ``y = A(x) + sigma_y n`` with PnP-DM (split Gibbs, annealed coupling).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.Operator`; linear ones get an exact
            likelihood step (``prox``), nonlinear ones Langevin (``forward`` and autograd only).
        prior: any object with ``denoise(x, sigma)`` on [0, 1] images.
        sigma_y: noise std of ``y`` on the [0, 1] scale; must be > 0 for a nonlinear operator.
        steps: Gibbs iterations (each: one likelihood step, one EDM run from ``rho_k``).
        rho, rho_decay, rho_min: coupling schedule ``rho_k = max(rho rho_decay^k, rho_min)``
            ([0, 1] scale; the code's values halved); per-task values in :data:`PNPDM_TASKS`.
        edm_steps: number of levels of the EDM schedule (the prior step uses those below ``rho_k``).
        sde: prior step by the reverse SDE (default, ``edm_sde``) or the probability-flow ODE.
        langevin_steps, langevin_step: the nonlinear likelihood step (unused for linear operators).
        seed: sample i uses seed ``seed + i``.
        callback: ``callback(info)`` after each iteration; ``info["x"]`` the prior sample,
            ``info["z"]`` the likelihood sample, ``info["sigma"]`` the iteration's ``rho``.
        x_init: optional (B, C, H, W) start on [0, 1] (default ``A^+ y``, or noise if nonlinear).

    Returns:
        (B, C, H, W) the last prior-step sample on [0, 1] (not clamped).
    """
    opts = _check_options(dict(rho=rho, rho_decay=rho_decay, rho_min=rho_min, edm_steps=edm_steps, sde=sde,
                               langevin_steps=langevin_steps, langevin_step=langevin_step))
    rhos = rho_schedule(check_value("steps", steps, int, COMMON_RANGES["steps"]), rho, rho_decay, rho_min)
    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=rhos, seed=seed, callback=callback,
                levels=lambda _den, _steps, sig: list(sig))
    sigma_y = check_value("sigma_y", sigma_y, float, COMMON_RANGES["sigma_y"])
    if not operator.linear and sigma_y == 0:
        raise ConfigError(
            "pnpdm needs sigma_y > 0 for a nonlinear operator (its Langevin likelihood step weighs the data by "
            "1 / sigma_y^2); pass the noise level of y"
        )
    levels = edm_levels(run.den, opts["edm_steps"])
    what = f"a smaller langevin_step (langevin_step={langevin_step})" if not operator.linear else "a larger rho_min"
    log = run.steps(len(rhos), f"try {what} or check the prior's denoise at sigma <= {rho}", pm1=False)
    x = check_x_init(x_init, run.x_shape, y)
    if x is None:
        noise = None if operator.linear else run.rng.randn(run.x_shape, device=y.device, dtype=y.dtype)
        x = operator.pinv(y) if operator.linear else 0.5 + 0.5 * noise  # N(0, I) on [-1, 1]
    for k, r in enumerate(rhos):
        z = likelihood_step(operator, x, y, r, sigma_y, run.rng, opts["langevin_steps"], opts["langevin_step"])
        x = prior_step(run.den, z, r, levels, run.rng, opts["sde"])
        log(k, r, x, x, z=z)
    return x


SPEC = SolverSpec(
    "pnpdm", pnpdm, "Wu et al., Principled Probabilistic Imaging using Diffusion Models as Plug-and-Play Priors, "
    "NeurIPS 2024", linear=False, prior="denoise",
    ranges={"rho": POSITIVE, "rho_min": POSITIVE, "rho_decay": Range(0.0, 1.0, lo_open=True),
            "edm_steps": Range(1, MAX_STEPS), "langevin_steps": Range(1, MAX_STEPS),
            "langevin_step": POSITIVE},
    tasks=PNPDM_TASKS,
)

__all__ = [
    "EDM_RANGE",
    "LANGEVIN_STEP",
    "LANGEVIN_STEPS",
    "PNPDM_TASKS",
    "SPEC",
    "edm_levels",
    "likelihood_step",
    "pnpdm",
    "prior_step",
    "rho_schedule",
]
