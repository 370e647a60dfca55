"""ΠGDM: Pseudoinverse-Guided Diffusion Models.

Song, Vahdat, Mardani & Kautz, "Pseudoinverse-Guided Diffusion Models for Inverse Problems",
ICLR 2023 (openreview.net/forum?id=9_gsMA8MRKQ). The denoised estimate ``x0_hat(x_t)`` is taken as
the mean of a Gaussian ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``, so ``p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T
+ sigma_y^2 I)`` and the guidance is a vector-Jacobian product through the denoiser:

    g = J^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat),     J = d x0_hat / d x_t.

Noise-free, ``A^T (A A^T)^{-1} = A^+`` turns this into the pseudo-inverse guidance
``r_t^2 g = J^T (A^+ y - A^+ A x0_hat)``, which for a nonlinear ``h`` with a right inverse ``h^+``
(a JPEG decoder, say) becomes ``J^T (h^+(y) - h^+(h(x0_hat)))``: ``h`` need not be differentiable.
We compute ``v = r_t^2 g``, the quantity the reference code scales:

* linear, any ``sigma_y``: ``v = J^T A^T (A A^T + sigma_y^2 / r_t^2 I)^{-1} (y - A x0_hat)``, i.e. the
  operator's :meth:`~pnp_restore.operators.base.LinearOperator.prox` at ``z = 0`` with ``lam =
  sigma_y^2 / r_t^2``: closed form through the SVD where the operator has one (``has_svd``),
  conjugate gradient (:mod:`pnp_restore.operators.cg`) otherwise; ``A^+`` (the operator's ``pinv``)
  at ``sigma_y = 0``, the reference's ``H_pinv(y_0) - H_pinv(H(x0_pred))``;
* nonlinear: ``v = J^T (h^+(y) - h^+(h(x0_hat)))`` with the operator's ``pinv`` (an
  :class:`~pnp_restore.errors.OperatorError` if it has none).

Each step is DDIM (Song, Meng & Ermon, ICLR 2021, Eq. 12) plus the guidance:

    x_{t-1} = sqrt(ab') x0_hat + c1 z + c2 eps + weight sqrt(ab') sqrt(ab) v,
    c1 = eta sqrt((1 - ab / ab') (1 - ab') / (1 - ab)),   c2 = sqrt(1 - ab' - c1^2).

``r_t^2``: the paper's ``sigma_t^2 / (1 + sigma_t^2)`` for the variance-exploding ``sigma_t`` on [-1, 1]
(the posterior variance of ``x0`` under a unit-variance Gaussian data model) is ``1 - ab_t`` in VP
terms (``sigma_t^2 = (1 - ab_t) / ab_t``); the two are the same number. deepinv's
``PiGDMDataFidelity`` (deepinv/sampling/noisy_datafidelity.py, commit 437ab3b "PIGDM/MM", not in a
release) uses the same ``r_t^2 = sigma_t^2 / (1 + sigma_t^2)``.

Defaults and where they come from (the reference implementation is the ΠGDM baseline of RED-diff,
Mardani, Song, Kautz & Vahdat 2023, the same four authors: NVlabs/RED-diff; there is no separate
official ΠGDM release):
    steps = 100 (sample_test.sh: the ``algo=pgdm`` commands that set a step count, noisy inpainting
    and HDR, use ``exp.num_steps=100``; the others inherit the script's smoke-test 10, and
    sample_batch.sh runs every algorithm at 1000; utils/functions.py ``get_timesteps``:
    ``skip = 1000 // num_steps``, t = 990, 980, ..., 0, then models/diffusion.py ``alpha(-1) = 1``,
    i.e. a last step to ``ab = 1``: a DDPM prior's uniform respacing gives that schedule);
    eta = 1.0 (sample_test.sh and sample_batch.sh ``algo.eta=1.0`` in every pgdm command; also
    mandt-lab/c-pigdm _configs/algo/pgdm.yaml ``eta: 1.0``; RED-diff's own _configs/algo/pgdm.yaml
    has ``eta: 0.0``, which no published command uses);
    weight = 1.0 (_configs/algo/pgdm.yaml ``grad_term_weight: 1``).
Update (algos/pgdm.py ``PGDM.sample`` with ``awd: True``, the config's value): the guidance enters
through ``x0_hat`` only, with coefficient ``sqrt(ab_s) sqrt(ab_t) grad_term_weight`` (``s`` the next
timestep); ``eps`` is the network's, unguided; ``x0_hat`` is not clamped; the output is the last
iterate (``ab' = 1``: ``x0_hat + weight sqrt(ab) v``). probabilists/azula guidance/pgdm.py
(``PGDMSampler.step``) uses the same coefficient ``alpha_s alpha_t`` (its alphas are our sqrt(ab)).
Note: the exact conditional-score DDIM step (``s -> s + g``) would move ``x0_hat`` by ``(1 - ab) / sqrt(ab) g =
v / sqrt(ab)`` and ``eps`` by ``-sqrt(1 - ab) g``; the reference's ``sqrt(ab) v`` is that ``x0_hat``
move times ``ab``, a damping of the early (noisy) steps, and it leaves ``eps`` alone. We follow the
reference. (The paper's text was not available to check its Algorithm 1 line by line here.)
Per task: the reference uses these settings for every task (sr4, in2_20ff, deblur_gauss and hdr
in sample_test.sh), so :data:`SPEC` has no per-task settings.

Everything runs on [-1, 1] images: the residual is ``y_pm - A x0_pm`` (:meth:`Run.residual`) and
``sigma_y_net = 2 sigma_y`` (the reference adds ``sigma_y * 2`` noise to its [-1, 1] measurements);
for a nonlinear ``h`` (which takes [0, 1] images) ``h^+`` differences are doubled to the [-1, 1] scale.
Deviation: the reference ignores ``sigma_y`` in the guidance (its ``H_pinv`` form only); we use the
paper's noisy form above, identical at ``sigma_y = 0``.
Deviation: the reference starts from ``sqrt(ab_T) A^+ y + sqrt(1 - ab_T) z``; we start from ``z`` like
the other solvers here (at t = 990 of the linear schedule ``sqrt(ab_T) = 0.007``). ``x_init=operator.pinv(y)``
gives (up to ``A^+ A 1`` vs ``1``) the reference's start.
Deviation: for its inpainting masks (``in2_*``) the reference also replaces the observed pixels of
``x0_hat`` by ``y`` and masks the guidance there; a task-specific step we leave out (the solver does
not know which operators are masks).
Note: ``sigma_y`` does not enter the nonlinear guidance (the pseudo-inverse form has no noise term).
"""

from __future__ import annotations

import math

import torch

from ..errors import OperatorError
from ..operators.base import NonlinearOperator, Operator
from ..priors.base import Denoiser
from .common import (
    COMMON_RANGES,
    UNIT,
    Callback,
    Range,
    Run,
    Sigmas,
    SolverSpec,
    alpha_bar,
    check_value,
    from_pm1,
    initial_vp,
    setup,
)
from .ddpm import ddim_coefficients

Tensor = torch.Tensor


def has_pinv(operator: Operator) -> bool:
    """Whether ``operator`` has a pseudo-inverse: every linear one; a nonlinear one that defines ``pinv``."""
    own = getattr(type(operator), "pinv", None)
    return operator.linear or (own is not None and own is not NonlinearOperator.pinv)


def require_pinv(operator: Operator) -> None:
    """Raise :class:`OperatorError` unless ``operator`` has a pseudo-inverse (:func:`has_pinv`)."""
    if has_pinv(operator):
        return
    from . import SPECS  # the registry imports this module

    others = [n for n, s in SPECS.items() if not s.linear and n != SPEC.name]
    name = type(operator).__name__
    raise OperatorError(
        f"pigdm needs a pseudo-inverse h^+ of the nonlinear {name} and it has none; implement "
        f"{name}.pinv(y) (a right inverse, e.g. a decoder) or use one of {', '.join(others)}"
    )


def guidance_direction(run: Run, x0: Tensor, lam: float, pinv_y: Tensor | None) -> Tensor:
    """The image-space vector ``u`` with ``v = J^T u`` (see the module docstring), on [-1, 1].

    Linear: ``A^T (A A^T + lam I)^{-1} (y - A x0)`` = the prox at ``z = 0`` (``A^+ r`` at ``lam = 0``).
    Nonlinear: ``2 (h^+(y) - h^+(h(x0)))`` with ``pinv_y = h^+(y)`` on [0, 1].
    ``x0``: (B, C, H, W) detached denoised estimate on [-1, 1].
    """
    op = run.operator
    if op.linear:
        return op.prox(run.zeros(), run.residual(x0), lam, 1.0)
    return 2 * (pinv_y - op.pinv(op.forward(from_pm1(x0))))


def pigdm(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    eta: float = 1.0,
    weight: float = 1.0,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + sigma_y n`` with ΠGDM (DDIM with pseudo-inverse guidance).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: a :class:`~pnp_restore.operators.base.LinearOperator` (SVD used when it has one,
            conjugate gradient otherwise), or a nonlinear operator with ``pinv(y)`` (a right inverse).
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any ``denoise(x, sigma)``; differentiable.
        sigma_y: measurement noise std on the [0, 1] scale (linear operators; see the module docstring).
        steps: number of DDIM steps (denoiser calls with gradient; default 100, the reference's).
        eta: DDIM eta (1.0: DDPM-like noise, the reference's).
        weight: guidance weight (the reference's ``grad_term_weight``, 1.0).
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start, diffused to the first sigma (default: pure noise).
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    eta = check_value("eta", eta, float, SPEC.ranges["eta"])
    weight = check_value("weight", weight, float, SPEC.ranges["weight"])
    sigma_y = check_value("sigma_y", sigma_y, float, COMMON_RANGES["sigma_y"])
    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    require_pinv(operator)
    sig, den, rng = run.sigmas, run.den, run.rng
    n = len(sig) - 1
    log = run.steps(n, f"try a smaller guidance weight (weight={weight}) or more steps")
    pinv_y = None if operator.linear else operator.pinv(y).detach()
    noise_var = (2.0 * sigma_y) ** 2  # on [-1, 1]
    x = initial_vp(rng, run.x_shape, sig[0], y, x_init)
    for i in range(n):
        ab, ab_next = alpha_bar(sig[i]), alpha_bar(sig[i + 1])
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0, eps = den.vp(x, sig[i])
        with torch.no_grad():
            u = guidance_direction(run, x0.detach(), noise_var / (1.0 - ab), pinv_y)
        (v,) = torch.autograd.grad(x0, x, grad_outputs=u)
        x0, eps = x0.detach(), eps.detach()
        c1, c2 = ddim_coefficients(ab, ab_next, eta)
        x = math.sqrt(ab_next) * x0 + c2 * eps + weight * math.sqrt(ab_next * ab) * v
        if c1 > 0:
            x = x + c1 * rng.randn_like(x)
        log(i, sig[i], x, x0, scale=math.sqrt(ab_next))
    return from_pm1(x.detach())


SPEC = SolverSpec(
    "pigdm", pigdm, "Song et al., Pseudoinverse-Guided Diffusion Models for Inverse Problems, ICLR 2023",
    linear=False, prior="vp+grad", ranges={"eta": UNIT, "weight": Range(0.0)},
)

__all__ = ["SPEC", "guidance_direction", "has_pinv", "pigdm", "require_pinv"]
