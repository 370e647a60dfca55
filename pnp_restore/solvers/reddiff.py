"""RED-diff: regularisation by denoising diffusion, a variational solver.

Mardani, Song, Kautz & Vahdat, "A Variational Perspective on Solving Inverse Problems with
Diffusion Models", ICLR 2024 (Algorithm 1). The posterior is approximated by a point mass at
``mu``, found by Adam on a loss that adds to the data fit a score-matching regulariser sampled
at one diffusion time per step, from the noisiest to the cleanest:

    x_t  = sqrt(ab_t) mu + sqrt(1 - ab_t) eps,        eps ~ N(0, I)
    loss = ||y - A(mu)||^2 / (2 m) + lam w_t <sg(eps_hat(x_t) - eps), mu> / d
    mu  <- Adam step on loss

(``m``, ``d``: the number of entries of the measurement and of the image, as the means of the
official code; ``sg``: stop-gradient, so the denoiser is never differentiated, and only the
forward model is, by autograd: any :class:`~pnp_restore.operators.base.Operator` works.)
Everything runs in VP/[-1, 1] coordinates (``mu`` is the [-1, 1] image, the residual is
:meth:`~pnp_restore.solvers.common.Run.residual`); the output is the final ``mu`` on [0, 1].
RED-diff is mode-seeking: the output depends on the noise draws only through the stochastic
regulariser, it is not a posterior sample.

Defaults and where they come from (official code, NVlabs/RED-diff):
    Adam with ``betas = (0.9, 0.99)``, no weight decay (algos/reddiff.py ``REDDIFF.sample``);
    lr = 0.1 (_configs/algo/reddiff.yaml ``lr``);
    lam = 0.25 (_configs/algo/reddiff.yaml ``grad_term_weight``, also the README's example and every
    RED-diff line of sample_test.sh);
    weight = "linear": ``w_t = sqrt(1 - ab_t) / sqrt(ab_t)`` = ``2 sigma`` on our [0, 1] scale, the
    inverse square root of the SNR (reddiff.yaml ``denoise_term_weight: "linear"``; the code's other
    choices ``sqrt``, ``square``, ``log`` (``log(1 + w)``), ``trunc_linear`` (``min(w, 1)``), ``const``,
    ``power2over3`` are offered too, see :data:`WEIGHTS`);
    obs_weight = 1 (reddiff.yaml ``obs_weight``; not exposed: under Adam only ``lam / obs_weight`` matters);
    steps = 1000, uniform timesteps ``t = 1000 - 1000/steps, ..., 0`` (utils/functions.py ``get_timesteps``
    with _configs/exp/default.yaml ``start_step: 1000``, ``end_step: 0``, iterated in reverse;
    sample_batch.sh, the batch script for the paper's sr4 / in2_20ff runs, sets ``num_steps=1000``).
    A DDPM prior's own ``sigmas(steps)`` (uniform respacing) is exactly this schedule; other priors
    use their default schedule.
    Start ``mu = A^+ y_pm`` (``REDDIFF.initialize``: ``H.H_pinv(y_0)`` for every task, on [-1, 1], so
    an inpainting hole starts at 0, i.e. mid-grey), regularised when ``sigma_y > 0`` (see the deviation
    below); the code's alternative, ``A^+ y`` diffused to the first timestep, is commented out there and
    not offered (pass ``x_init`` for any other start).
    ``sigma_x0 = 0`` (reddiff.yaml: ``mu`` is perturbed by ``sigma_x0`` noise before use; not exposed),
    ``awd: True`` (the network's own ``eps`` prediction is used: :meth:`CountingPrior.vp` gives it
    for DDPM networks), ``cond_awd: False`` and ``eta`` (which enters only with ``cond_awd``): not exposed.
    ``sigma_y`` does not enter the update: the code uses it only to add noise to ``y``
    (main.py, ``sigma_y * 2`` on [-1, 1], i.e. our [0, 1]-scale ``sigma_y``); the paper's
    ``1 / (2 sigma_v^2)`` data weight is absorbed in ``lam``.
Per-task settings (:data:`REDDIFF_PARAMS`) are those of sample_test.sh, the script the README gives
for running each task: inpainting (``in2_20ff``) ``lr = 0.25``; super-resolution (``sr4``) the
yaml defaults; Gaussian deblurring, HDR, phase retrieval, nonlinear deblurring and JPEG
``lr = 0.5``, all with ``lam = 0.25``. (sample_batch.sh instead runs sr4 and in2_20ff with
``grad_term_weight = 1.0`` and the yaml ``lr``; the repository records no other per-task values.)

Deviation: the code averages both terms over the whole batch (``.mean()`` over all images); we
average per image and sum over the batch, so each image's gradient is its own (batch == single
runs exactly). The code's gradients are ours divided by the batch size, which Adam's
normalisation cancels up to its ``eps = 1e-8``: identical for batch size 1.
Deviation: the code returns ``x0_pred`` of its last iteration, i.e. ``mu`` *before* the last Adam
step; we return ``mu`` after it (Algorithm 1 "return mu"), so the last denoiser call is used.
Deviation: for a linear operator and ``sigma_y > 0`` the start is the Tikhonov-regularised
pseudo-inverse ``argmin_x ||A x - y_pm||^2 / (2 (2 sigma_y)^2) + ||x||^2 / 2`` (``operator.prox``; the MAP
under the N(0, I) law of x_T), which is ``A^+ y_pm`` when ``sigma_y = 0``. The code's ``H_pinv`` drops
small singular values (below 3e-2 for its 1-D deblurring factors, 1e-3 for a general H); our operators'
``pinv`` is exact, and on noisy ``y`` it amplifies the noise by ``1 / s`` (a 5-tap Gaussian blur of a
16x16 image: ~200x the posterior mean's error), which Adam, moving ``mu`` by about ``lr`` per step,
takes hundreds of steps to undo.
Deviation: a nonlinear operator without a pseudo-inverse (the code's nonlinear ``H_pinv`` are ad hoc:
``0.5 y`` for HDR, ``|F^-1 y|`` for phase retrieval, ``y`` for JPEG) starts from ``mu = 0`` (mid-grey),
unless ``x_init`` is given; one that implements ``pinv`` starts from ``2 A^+(y) - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..operators.base import NonlinearOperator, Operator
from ..priors.base import Denoiser
from ..tasks import Task
from .common import (
    POSITIVE,
    Callback,
    Choices,
    Range,
    Run,
    Sigmas,
    SolverSpec,
    alpha_bar,
    check_value,
    check_x_init,
    from_pm1,
    setup,
    to_pm1,
)

Tensor = torch.Tensor

#: Adam's betas of the official code (algos/reddiff.py; its comment notes the usual 0.999).
ADAM_BETAS = (0.9, 0.99)

#: ``denoise_term_weight`` of the official code: the regulariser's weight as a function of
#: ``snr_inv = sqrt(1 - ab_t) / sqrt(ab_t)`` (= 2 sigma for a [0, 1]-scale sigma).
WEIGHTS: dict[str, Callable[[float], float]] = {
    "linear": lambda w: w,
    "sqrt": math.sqrt,
    "square": lambda w: w * w,
    "log": lambda w: math.log(w + 1.0),
    "trunc_linear": lambda w: min(w, 1.0),
    "power2over3": lambda w: w ** (2.0 / 3.0),
    "const": lambda w: 1.0,
}

#: Per-task ``lam`` (``grad_term_weight``) and Adam ``lr`` of the official sample_test.sh (see the module docstring).
REDDIFF_PARAMS: dict[Task, dict[str, float]] = {
    Task.INPAINTING: {"lam": 0.25, "lr": 0.25},
    Task.SUPER_RESOLUTION: {"lam": 0.25, "lr": 0.1},
    Task.GAUSSIAN_DEBLUR: {"lam": 0.25, "lr": 0.5},
    Task.HDR: {"lam": 0.25, "lr": 0.5},
    Task.PHASE_RETRIEVAL: {"lam": 0.25, "lr": 0.5},
    Task.NONLINEAR_DEBLUR: {"lam": 0.25, "lr": 0.5},
    Task.JPEG: {"lam": 0.25, "lr": 0.5},
}


def initial_mu(run: Run, x_init: Tensor | None, sigma_y: float) -> Tensor:
    """The starting ``mu`` on [-1, 1]: ``x_init`` ([0, 1]), else the regularised ``A^+ y_pm`` (linear; see
    the module docstring), ``2 A^+(y) - 1`` (a nonlinear operator with its own ``pinv``) or 0 (mid-grey)."""
    x_init = check_x_init(x_init, run.x_shape, run.y)
    op = run.operator
    if x_init is not None:
        return to_pm1(x_init)
    if op.linear:  # argmin ||A x - y_pm||^2 / (2 (2 sigma_y)^2) + ||x||^2 / 2: A^+ y_pm when sigma_y = 0
        return op.prox(run.zeros(), run.y_pm, 1.0, 2.0 * float(sigma_y)).to(run.y)
    if isinstance(op, NonlinearOperator) and type(op).pinv is not NonlinearOperator.pinv:
        return to_pm1(op.pinv(run.y)).to(run.y)
    return run.zeros()


def per_image_mean(t: Tensor) -> Tensor:
    """(B,) means over all but the first dimension."""
    return t.flatten(1).mean(1)


def reddiff(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 1000,
    lam: float = 0.25,
    lr: float = 0.1,
    weight: str = "linear",
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + noise`` with RED-diff (Adam on the point estimate ``mu``).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.Operator`, linear or not (only ``forward`` is
            differentiated, by autograd; ``pinv`` gives the start where the operator has one).
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``
            (not differentiated).
        sigma_y: measurement noise std on [0, 1]; it only regularises the start (the update does not use
            it, as in the official code: ``lam`` sets the balance).
        steps: number of Adam steps = denoiser calls (default 1000, one per DDPM timestep).
        lam: weight of the score-matching regulariser (the code's ``grad_term_weight``); per-task
            values in :data:`REDDIFF_PARAMS`.
        lr: Adam's learning rate, on the [-1, 1] image scale.
        weight: the regulariser's time weighting ``w_t`` as a function of ``sqrt(1 - ab_t) / sqrt(ab_t)``
            (one of :data:`WEIGHTS`; the code's ``denoise_term_weight``).
        seed: sample i uses seed ``seed + i`` (the regulariser's noise).
        callback: ``callback(info)`` per step with ``x`` = ``mu`` and ``x0`` = the denoised ``x_t`` ([0, 1]).
        x_init: optional [0, 1] start for ``mu`` (default: the pseudo-inverse, see the module docstring).
        sigmas: override of the [0, 1]-scale noise levels, visited in the given (decreasing) order.

    Returns:
        (B, C, H, W) the final ``mu`` on [0, 1] (not clamped).
    """
    lam = check_value("lam", lam, float, SPEC.ranges["lam"])
    lr = check_value("lr", lr, float, SPEC.ranges["lr"])
    weight = check_value("weight", weight, str, SPEC.ranges["weight"])
    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    levels, den, rng = run.sigmas[:-1], run.den, run.rng  # RED-diff never calls the denoiser at sigma = 0
    log = run.steps(len(levels), f"try a smaller learning rate (lr={lr}) or lambda (lam={lam})")
    with torch.no_grad():
        mu = initial_mu(run, x_init, sigma_y).clone()
    mu.requires_grad_(True)
    adam = torch.optim.Adam([mu], lr=lr, betas=ADAM_BETAS, weight_decay=0.0)
    for i, s in enumerate(levels):
        ab = alpha_bar(s)
        w = lam * WEIGHTS[weight](math.sqrt((1 - ab) / ab))
        with torch.no_grad():
            eps = rng.randn_like(mu)
            x0, eps_hat = den.vp(math.sqrt(ab) * mu + math.sqrt(1 - ab) * eps, s)
            direction = eps_hat - eps
        with torch.enable_grad():
            loss = per_image_mean(run.residual(mu).pow(2)) / 2 + w * per_image_mean(direction * mu)
            adam.zero_grad(set_to_none=True)
            loss.sum().backward()
        adam.step()
        log(i, s, mu.detach(), x0)
    return from_pm1(mu.detach())


SPEC = SolverSpec(
    "reddiff", reddiff,
    "Mardani et al., A Variational Perspective on Solving Inverse Problems with Diffusion Models, ICLR 2024",
    linear=False, prior="vp",
    ranges={"lam": Range(0.0), "lr": POSITIVE, "weight": Choices(tuple(WEIGHTS))},
    tasks=REDDIFF_PARAMS,
)

__all__ = ["ADAM_BETAS", "REDDIFF_PARAMS", "SPEC", "WEIGHTS", "reddiff"]
