"""DAPS: Decoupled Annealing Posterior Sampling.

Zhang, Chu, Berner, Meng, Anandkumar & Song, "Improving Diffusion Inverse Problem Solving with
Decoupled Noise Annealing", CVPR 2025 (arXiv:2407.01521, Algorithm 1). The noise is annealed
over levels ``sigma_0 > ... > sigma_{N-1}`` in the variance-exploding (EDM) form
``x_t = x0 + sigma n``, which is exactly our prior's ``denoise(x, sigma)``; at each level:

1. ``x0_hat``: the unconditional probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
   solved from ``x_t`` at ``sigma_i`` down to ``ode_sigma_min`` with ``ode_steps`` Euler steps
   on an EDM ``rho`` schedule (``ode_steps`` denoiser calls, no gradient);
2. ``x0_y``: Langevin dynamics on ``p(x0 | x_t, y) ~ p(y | x0) N(x0; x0_hat, sigma_i^2 I)``
   started at ``x0_hat``: ``langevin_steps`` steps
   ``x0 += lr_i (-grad ||A(x0) - y||^2 / tau_code^2 - (x0 - x0_hat) / sigma_i^2) + sqrt(2 lr_i) z``
   (images and ``sigma_i`` on the code's [-1, 1] scale, where our ``sigma_i`` is doubled),
   whose data gradient is autograd through the operator only (never the network), so any
   differentiable :class:`~pnp_restore.operators.base.Operator` works;
3. ``x_{t_{i+1}} = x0_y + sigma_{i+1} n`` (fresh noise: consecutive levels are decoupled).

The output is ``x0_y`` of the last level (``sigma_N = 0``). NFE = ``steps * ode_steps``.

Defaults and where they come from (official code, zhangbingliang2019/DAPS):
    steps = 200, ode_steps = 5 ("DAPS-1K", NFE 1000): configs/sampler/edm_daps.yaml
    (``annealing_scheduler_config.num_steps: 200``, ``diffusion_scheduler_config.num_steps: 5``),
    used for every pixel-space task by commands/pixel_ffhq.sh and pixel_imagenet.sh;
    sigma_max = 50, sigma_min = 0.05, rho = 7: the same file's ``sigma_max: 100``, ``sigma_min: 0.1``,
    ``timestep: 'poly-7'`` on the network's [-1, 1] scale (ours is half); cores/scheduler.py
    ``EDMScheduler``: ``steps + 1`` points ``(s_max^(1/rho) + r (s_min^(1/rho) - s_max^(1/rho)))^rho``,
    ``r = linspace(0, 1, steps + 1)``, of which the first ``steps`` are the levels (``sigma_min``
    itself is never used) followed by 0;
    ode_sigma_min = 0.005: edm_daps.yaml ``diffusion_scheduler_config.sigma_min: 0.01`` ([-1, 1]);
    the ODE runs on ``EDMScheduler(ode_steps, sigma_max=sigma_i, sigma_min=0.01)``'s ``ode_steps + 1``
    points with torchdiffeq's fixed-grid ``euler`` (cores/scheduler.py ``DiffusionPFODE.sample``),
    and ``x0_hat`` is the ODE state at ``ode_sigma_min`` (not denoised further);
    x_T = ``sigma_max`` times N(0, I) around mid-grey (sampler.py ``DAPS.get_start``: ``randn * sigma_max``
    on [-1, 1]);
    langevin_steps = 100, lr = 1e-4, lr_min_ratio = 0.01, tau: configs/task/*.yaml ``pixel:
    mcmc_sampler_config`` (``num_steps: 100``, ``lr: 1e-4`` for down_sampling, gaussian_blur and
    inpainting_rand; ``lr_min_ratio: 0.01``, ``tau: 0.01`` in every task); per-task ``lr`` /
    ``langevin_steps`` in :data:`DAPS_TASKS`. cores/mcmc.py ``MCMCSampler``: ``mc_algo: langevin``,
    ``prior_solver: gaussian`` (the prior score of ``p(x0 | x_t)`` is ``(x0_hat - x0) / sigma_i^2``);
    ``get_lr``: ``lr_i = lr (1 + r_i (lr_min_ratio - 1))`` with ``r_i = i / (steps + 1)``
    (``step / annealing_scheduler.num_steps`` in sampler.py, ``num_steps`` counting the start point).

Scales. Everything the official code does on [-1, 1] images is done here on the same [-1, 1]
images (``x0_pm = 2 x0 - 1``, residual ``Run.residual``: ``y_pm - A x_pm``, or ``2 (y - A(x))`` for
nonlinear operators), so ``lr`` keeps its published meaning; noise levels are given on our [0, 1]
scale (half the code's). ``tau`` is the standard deviation of the Gaussian likelihood
``p(y | x0) ~ exp(-||A(x0) - y||^2 / (2 tau^2))`` the Langevin samples with, on the [0, 1] scale of
``y``: the code's loss ``||A(x_pm) - y_pm||^2 / tau_code^2`` is that likelihood for
``tau = tau_code / (2 sqrt 2)`` (a factor 2 for the scale and sqrt 2 for its loss without the 1/2),
so the code's ``tau: 0.01`` is ``tau = 0.00354`` here (:data:`TAU`). It is a tuning value, far below
the configs' measurement noise (``sigma: 0.05`` on [-1, 1], our 0.025): the published setting
weights the data ~50x more than the true likelihood. ``tau=None`` uses the true noise,
``tau = sigma_y``, and makes the Langevin target the exact ``p(x0 | x_t, y)`` of the paper's Eq. 7.

Presets (:data:`DAPS_PRESETS`, ``preset=``): the paper's NFE budgets, annealing steps x ODE steps:
DAPS-1K = 200 x 5 (the configs above); DAPS-4K = 400 x 10 and DAPS-100 = 50 x 2 (the paper's
efficiency study, Sec. 5 / appendix; not in the official configs). A preset sets ``steps`` and
``ode_steps``; explicit values win (``steps`` counts as explicit when it differs from its default
200, since ``restore()`` always passes the default).

Stability: the Langevin is explicit Euler on a data term of curvature ``||A||^2 / (4 tau^2)`` ([-1, 1]
scale), so it is stable only while ``lr ||A||^2 < 8 tau^2``. The published ``lr = 1e-4`` with the code's
``tau`` sits exactly at that limit for ``||A|| = 1`` (the decaying ``lr`` then keeps it stable); an operator
with a gain above 1 (a reflect-padded blur: 1.14) diverges with the published values, as it would in the
official code. With ``tau=None`` choose ``lr`` below ``8 sigma_y^2 / ||A||^2``.
Deviation: the official Langevin returns zeros for the whole batch when an iterate turns NaN
(cores/mcmc.py ``sample``); we stop with a :class:`~pnp_restore.errors.DivergenceError` naming the step,
also when the iterate blows up while still finite (beyond :data:`BLOWUP`).
Deviation: ``x_init`` (optional) starts the annealing at ``x_init + sigma_0 n`` instead of the code's
pure noise (SDEdit-style, as the other solvers here).
Note: every quantity is per sample (the code's loss is summed over the batch, whose gradient is
per sample too), so a batch equals the single runs.
Note: the paper's text (arXiv v1) describes DAPS-1K as 250 annealing x 4 ODE steps; we follow the
official code and commands (200 x 5).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator

import torch

from .._rng import SampleRNG
from ..errors import ConfigError, DivergenceError
from ..operators.base import Operator
from ..priors.base import Denoiser
from ..tasks import Task
from .common import (
    COMMON_RANGES,
    MAX_STEPS,
    POSITIVE,
    UNIT,
    Callback,
    Choices,
    Range,
    Run,
    Sigmas,
    SolverSpec,
    check_value,
    check_x_init,
    schedule,
    setup,
    to_pm1,
    from_pm1,
)

Tensor = torch.Tensor

#: The official ``tau: 0.01`` (configs/task/*.yaml) as a likelihood std on our [0, 1] scale (see the module docstring).
TAU = 0.01 / (2.0 * math.sqrt(2.0))

#: The paper's NFE budgets: annealing ``steps`` x ``ode_steps`` (explicit options win).
DAPS_PRESETS: dict[str, dict[str, int]] = {
    "daps-100": {"steps": 50, "ode_steps": 2},
    "daps-1k": {"steps": 200, "ode_steps": 5},
    "daps-4k": {"steps": 400, "ode_steps": 10},
}

#: Per-task Langevin settings of the official configs/task/<task>.yaml, group ``pixel``
#: (``tau: 0.01``, ``lr_min_ratio: 0.01`` everywhere, so not repeated): down_sampling (x4 SR),
#: gaussian_blur, motion_blur, inpainting (128x128 box; inpainting_rand, 70 % random pixels, uses
#: lr 1e-4), phase_retrieval, hdr, nonlinear_blur. The commands run all of them with DAPS-1K.
DAPS_TASKS: dict[Task, dict[str, float]] = {
    Task.SUPER_RESOLUTION: {"lr": 1e-4, "langevin_steps": 100},
    Task.GAUSSIAN_DEBLUR: {"lr": 1e-4, "langevin_steps": 100},
    Task.MOTION_DEBLUR: {"lr": 5e-5, "langevin_steps": 100},
    Task.INPAINTING: {"lr": 5e-5, "langevin_steps": 100},
    Task.PHASE_RETRIEVAL: {"lr": 5e-5, "langevin_steps": 100},
    Task.HDR: {"lr": 2e-5, "langevin_steps": 100},
    Task.NONLINEAR_DEBLUR: {"lr": 1e-5, "langevin_steps": 200},
}

DEFAULT_STEPS = 200

#: a Langevin iterate beyond this ([0, 1] images) has diverged, even while still finite
BLOWUP = 1e4


def edm_sigmas(sigma_max: float, sigma_min: float, points: int, rho: float) -> list[float]:
    """``points`` EDM ``poly-rho`` noise levels from ``sigma_max`` to ``sigma_min`` (both included), decreasing."""
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    if points == 1:
        return [float(sigma_max)]
    return [(hi + k / (points - 1) * (lo - hi)) ** rho for k in range(points)]


def ode_x0(run: Run, x: Tensor, sigma: float, ode_steps: int, ode_sigma_min: float, rho: float) -> Tensor:
    """The probability-flow ODE from ``x`` (``[0, 1]`` VE iterate at ``sigma``) to ``ode_sigma_min``
    by ``ode_steps`` Euler steps on the EDM grid: ``x += (s' - s) (x - D(x, s)) / s`` (``ode_steps`` NFE)."""
    grid = edm_sigmas(sigma, ode_sigma_min, ode_steps + 1, rho)
    for s, s_next in zip(grid[:-1], grid[1:]):
        x = x + (s_next - s) / s * (x - run.den.denoise(x, s))
    return x


def langevin(run: Run, x0_pm: Tensor, sigma: float, steps: int, lr: float, tau: float) -> Tensor:
    """``steps`` Langevin steps on ``p(x0 | x_t, y)`` from ``x0_hat`` (``x0_pm``, on [-1, 1]) at level ``sigma``
    ([0, 1] scale, ``2 sigma`` on [-1, 1]); the data gradient is autograd through the operator only."""
    weight = 1.0 / (8.0 * tau**2)  # 1 / tau_code^2 with tau_code = 2 sqrt(2) tau
    prior_var = (2.0 * sigma) ** 2
    noise_scale = math.sqrt(2.0 * lr)
    x = x0_pm
    for z in _noise(run.rng, x0_pm, steps):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(run.residual(xg).pow(2).sum(), xg)
        score = -weight * grad - (x - x0_pm) / prior_var
        x = x + lr * score + noise_scale * z
    return x


#: Langevin noise is drawn for several steps at once, up to this many numbers per sample
NOISE_CHUNK = 2**20


def _noise(rng: SampleRNG, like: Tensor, steps: int) -> Iterator[Tensor]:
    """``steps`` standard normal tensors shaped like ``like``, drawn per sample in chunks of steps
    (one generator call per sample and chunk; the chunking depends on the image size only, so a
    batch still equals the single runs)."""
    per = max(1, min(steps, NOISE_CHUNK // max(1, like[0].numel())))
    for start in range(0, steps, per):
        k = min(per, steps - start)
        block = rng.randn((like.shape[0], k, *like.shape[1:]), device=like.device, dtype=like.dtype)
        yield from block.unbind(1)


def _options(values: dict) -> dict:
    """``values`` checked against :func:`daps`'s annotations and ``SPEC.ranges`` (one-line ConfigError)."""
    hints = typing.get_type_hints(daps)
    ranges = {**COMMON_RANGES, **SPEC.ranges}
    return {k: check_value(k, v, hints[k], ranges.get(k)) for k, v in values.items()}


def _budget(preset: str | None, steps: int, ode_steps: int | None) -> tuple[int, int]:
    """(annealing steps, ODE steps): explicit values, else the preset's, else DAPS-1K's."""
    chosen = DAPS_PRESETS[preset or "daps-1k"]
    if steps == DEFAULT_STEPS:
        steps = chosen["steps"]
    return steps, chosen["ode_steps"] if ode_steps is None else ode_steps


@torch.no_grad()
def daps(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = DEFAULT_STEPS,
    ode_steps: int | None = None,
    langevin_steps: int = 100,
    lr: float = 1e-4,
    lr_min_ratio: float = 0.01,
    tau: float | None = TAU,
    sigma_max: float = 50.0,
    sigma_min: float = 0.05,
    ode_sigma_min: float = 0.005,
    rho: float = 7.0,
    preset: str | None = None,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + sigma_y n`` by DAPS (any differentiable operator, linear or not).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.Operator` (only ``forward`` is used, through autograd).
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``
            (never differentiated).
        sigma_y: measurement noise std on [0, 1]; used only when ``tau=None``.
        steps: annealing levels (default 200, DAPS-1K; see ``preset``).
        ode_steps: Euler steps of the ODE giving ``x0_hat`` at each level (default 5, or the preset's).
        langevin_steps: Langevin steps per level (per-task values: :data:`DAPS_TASKS`).
        lr: Langevin step size at the first level, on the [-1, 1] image scale as published.
        lr_min_ratio: ``lr`` decays linearly over the levels to ``lr * lr_min_ratio``.
        tau: std of the likelihood the Langevin uses, on [0, 1] (default: the code's ``tau: 0.01``,
            i.e. :data:`TAU`); ``None``: the true noise ``sigma_y`` (exact posterior target).
        sigma_max, sigma_min, rho: the annealing schedule (EDM ``poly-rho``, [0, 1] scale).
        ode_sigma_min: where the ODE stops ([0, 1] scale); must be below every annealing level.
        preset: ``"daps-100"``, ``"daps-1k"`` or ``"daps-4k"`` (:data:`DAPS_PRESETS`); explicit
            ``steps`` / ``ode_steps`` win.
        seed: sample i uses seed ``seed + i``.
        callback: ``callback(info)`` per level with ``x`` (the next ``x_t``), ``x0`` (``x0_y``),
            ``x0_hat``, ``sigma``, ``nfe`` ([0, 1] images).
        x_init: optional [0, 1] start, diffused to the first level (default: pure noise, as the code).
        sigmas: explicit annealing levels ([0, 1] scale, decreasing; a final 0 is added); overrides
            ``steps``, ``sigma_max``, ``sigma_min`` and ``rho``.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    opts = _options(
        dict(steps=steps, ode_steps=ode_steps, langevin_steps=langevin_steps, lr=lr, lr_min_ratio=lr_min_ratio,
             tau=tau, sigma_max=sigma_max, sigma_min=sigma_min, ode_sigma_min=ode_sigma_min, rho=rho, preset=preset)
    )  # fmt: skip
    steps, ode_steps = _budget(opts["preset"], opts["steps"], opts["ode_steps"])
    if sigma_min >= sigma_max:
        raise ConfigError(f"sigma_min must be below sigma_max; got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if tau is None:
        if not sigma_y > 0:
            raise ConfigError("tau=None uses the measurement noise sigma_y, which is 0; pass tau > 0 or sigma_y > 0")
        tau = float(sigma_y)

    def levels(den, n: int, given: Sigmas | None) -> list[float]:
        if given is not None:
            return schedule(den, n, given)
        return edm_sigmas(sigma_max, sigma_min, n + 1, rho)[:-1] + [0.0]

    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback,
                levels=levels)  # fmt: skip
    sig, rng = run.sigmas, run.rng
    n = len(sig) - 1
    if sig[n - 1] <= ode_sigma_min:
        raise ConfigError(
            f"the last annealing level {sig[n - 1]:.4g} is not above ode_sigma_min={ode_sigma_min}; "
            "lower ode_sigma_min or raise sigma_min"
        )
    hint = (
        f"the Langevin is stable only while lr ||A||^2 < 8 tau^2: try a smaller lr (lr={lr:g}) "
        f"or a larger tau (tau={tau:.4g})"
    )
    log = run.steps(n, hint, pm1=False)
    x_init = check_x_init(x_init, run.x_shape, y)
    x = (0.5 if x_init is None else x_init) + sig[0] * rng.randn(run.x_shape, device=y.device, dtype=y.dtype)
    for i in range(n):
        x0_hat = ode_x0(run, x, sig[i], ode_steps, ode_sigma_min, rho)
        step_lr = lr * (1.0 + i / (n + 1) * (lr_min_ratio - 1.0))
        x0 = from_pm1(langevin(run, to_pm1(x0_hat), sig[i], langevin_steps, step_lr, tau))
        peak = float(x0.abs().max())
        if peak > BLOWUP:  # diverging geometrically but still finite (NaN/Inf: ``log`` below)
            raise DivergenceError(
                f"daps diverged at step {i + 1}/{n} (sigma={sig[i]:.4g}): the Langevin iterate reached "
                f"{peak:.3g}; {hint}"
            )
        x = x0 + sig[i + 1] * rng.randn_like(x0) if sig[i + 1] > 0 else x0
        log(i, sig[i], x, x0, x0_hat=x0_hat)
    return x


SPEC = SolverSpec(
    "daps", daps, "Zhang et al., Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing, CVPR 2025",
    linear=False, prior="denoise",
    ranges={
        "ode_steps": Range(1, MAX_STEPS), "langevin_steps": Range(0, MAX_STEPS), "lr": POSITIVE,
        "lr_min_ratio": UNIT, "tau": POSITIVE, "sigma_max": POSITIVE, "sigma_min": POSITIVE,
        "ode_sigma_min": POSITIVE, "rho": POSITIVE, "preset": Choices(tuple(DAPS_PRESETS)),
    },
    tasks=DAPS_TASKS,
)  # fmt: skip

__all__ = ["DAPS_PRESETS", "DAPS_TASKS", "SPEC", "TAU", "daps", "edm_sigmas"]
