"""DDNM and DDNM+: Denoising Diffusion Null-Space Model.

Wang, Yu & Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space
Model", ICLR 2023.

* DDNM (noise-free ``y``, Algorithm 1): range-null space decomposition of the denoised
  estimate, ``x0_hat = A^+ y + (I - A^+ A) x0 = x0 - A^+ (A x0 - y)``, then a DDIM step
  ``x_{t-1} = sqrt(ab') x0_hat + sqrt(1-ab') (eta z + sqrt(1-eta^2) eps)``. Needs only
  ``A^+`` (exact through the SVD, conjugate gradient otherwise), so any operator works.
* DDNM+ (noisy ``y``, Sec. 3.3 and Appendix): the correction and the noise are scaled per
  singular value. With ``a = sqrt(ab')``, ``sigma' = sqrt(1-ab')`` and ``c_i = a sigma_y / s_i``:
  where ``sigma' < c_i`` the correction is scaled by ``lambda_i = sqrt(1-eta^2) sigma' / c_i`` and
  the noise is ``eta sigma' z``; where ``sigma' > c_i`` the correction is full and the
  noise is ``sqrt(sigma'^2 - c_i^2) z``; unmeasured coefficients take the DDIM step.
  Needs the SVD.
* Time-travel (Sec. 3.3, after RePaint, Lugmayr et al. CVPR 2022): every
  ``travel_length`` steps the sampler jumps back ``travel_length`` steps, ``travel_repeat - 1``
  times, by re-noising the last denoised estimate
  (``x = sqrt(ab) x0 + sqrt(1-ab) z``, as the official code ``svd_ddnm.py`` does).

Defaults and where they come from (official code, wyhuai/DDNM): steps = 100
(``time_travel.T_sampling: 100`` in every configs/*.yml; ``skip = 1000 // T_sampling`` gives
t = 990, 980, ..., 0 and then ``ab = 1``, a DDPM prior's uniform respacing), eta = 0.85 (main.py
``--eta`` default, README), travel_length = 1 and travel_repeat = 1 (configs/*.yml: no
time-travel; only configs/oldphoto.yml uses 2 and 2). The schedule of jumps is RePaint's
``get_schedule_jump`` as in the official code, where the paper's travel interval ``s`` equals the
travel length ``l`` (both ``travel_length``).
Update (functions/svd_ddnm.py ``ddnm_diffusion`` for ``sigma_y = 0``, ``ddnm_plus_diffusion`` with
``Lambda`` / ``Lambda_noise`` of functions/svd_operators.py otherwise; the SVD-based version that
guided_diffusion/diffusion.py runs without ``--simplified``): x_T ~ N(0, I); time-travel re-noises the
raw denoised ``x0`` (before the range-null correction); at the last step ``ab' = 1``, so DDNM returns
``x0_hat`` (``A x = y`` exactly) and DDNM+ returns ``x0`` (``lambda_i = 0`` at ``sigma' = 0``).
The ``--simplified`` variant (scalar ``lambda``, no SVD) is not implemented; for ``sigma_y = 0`` it is
DDNM with ``A^+`` as here, up to its extra ``gamma_t`` factor on the noise.

Everything runs on [-1, 1] images with ``sigma_y_net = 2 sigma_y`` as in the official code
(``args.sigma_y = 2 * args.sigma_y``).
Deviation: the official SVD code feeds ``eps`` to the per-coefficient noise without
``V^T`` (correct only for operators whose ``V`` is a permutation); we use ``V^T eps``.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..operators.base import LinearOperator
from ..operators.factors import safe_inverse
from ..priors.base import Denoiser
from .common import UNIT, Callback, Range, Sigmas, SolverSpec, alpha_bar, from_pm1, initial_vp, setup

Tensor = torch.Tensor


def time_travel_indices(steps: int, travel_length: int = 1, travel_repeat: int = 1) -> list[int]:
    """Visiting order of the schedule indices 0 (noisiest) .. ``steps`` (sigma = 0).

    Sampling goes one index at a time; after reaching the index of step ``t`` with
    ``t`` in ``0, L, 2L, ...`` (counted from the clean end, ``t < steps - L``) it walks back
    ``L`` indices, ``travel_repeat - 1`` times (RePaint's jump schedule). Without
    time-travel this is ``[0, 1, ..., steps]``.
    """
    if travel_length < 1 or travel_repeat < 1:
        raise ConfigError("travel_length and travel_repeat must be >= 1")
    left = {t: travel_repeat - 1 for t in range(0, steps - travel_length, travel_length)}
    t, order = steps, []
    while t >= 1:
        t -= 1
        order.append(steps - 1 - t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            for _ in range(travel_length):
                t += 1
                order.append(steps - 1 - t)
    order.append(steps)
    return order[1:]  # order[0] is the starting index 0


@torch.no_grad()
def ddnm(
    y: Tensor,
    operator: LinearOperator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    eta: float = 0.85,
    travel_length: int = 1,
    travel_repeat: int = 1,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A x + sigma_y n`` with DDNM (``sigma_y == 0``) or DDNM+ (``sigma_y > 0``).

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.LinearOperator`; DDNM+ needs ``has_svd``.
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``.
        sigma_y: measurement noise std on the [0, 1] scale; > 0 selects DDNM+.
        steps: number of sampling steps (default 100, the paper's).
        eta: DDIM eta.
        travel_length, travel_repeat: time-travel ``l`` and ``r`` (1, 1 = off).
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] start, diffused to the first sigma (default: pure noise).
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    run = setup("ddnm", y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, den, rng, y_pm = run.sigmas, run.den, run.rng, run.y_pm
    plus = float(sigma_y) > 0
    order = time_travel_indices(len(sig) - 1, travel_length, travel_repeat)
    log = run.steps(len(order), "try more steps")
    sy = 2.0 * float(sigma_y)
    if plus:
        s = operator.singular_values(run.zeros())
        inv_s = safe_inverse(s)

    x = initial_vp(rng, run.x_shape, sig[0], y, x_init)
    k, x0 = 0, None
    for step, k_next in enumerate(order):
        ab_next = alpha_bar(sig[k_next])
        a, sn = math.sqrt(ab_next), math.sqrt(1 - ab_next)
        if k_next < k:  # time-travel back to a noisier level
            x = a * x0 + sn * rng.randn_like(x)
        else:
            x0, eps = den.vp(x, sig[k])
            residual = operator.forward(x0) - y_pm
            z = rng.randn_like(x)
            if not plus:
                x = a * (x0 - operator.pinv(residual)) + sn * (eta * z + math.sqrt(1 - eta**2) * eps)
            else:
                c = a * sy * inv_s  # noise level of the measured coefficients at the next step
                quiet = (s > 0) & (sn < c)  # next iterate less noisy than y there
                loud = (s > 0) & (sn > c)
                lam = torch.where(quiet, s * sn * math.sqrt(1 - eta**2) / (a * sy), torch.ones_like(s))
                d1 = torch.where(loud, (sn**2 - c**2).clamp_min(0).sqrt(), torch.full_like(s, sn * eta))
                d2 = torch.where(quiet | loud, torch.zeros_like(s), torch.full_like(s, sn * math.sqrt(1 - eta**2)))
                # V^T pinv(r) = inv_s U^T r: stay in coefficient space (no V / V^T round trip).
                x0_hat = x0 - operator.V(lam * inv_s * operator.U_adjoint(residual))
                x = a * x0_hat + operator.V(d1 * operator.V_adjoint(z) + d2 * operator.V_adjoint(eps))
        log(step, sig[k], x, x0, scale=a)
        k = k_next
    return from_pm1(x)


SPEC = SolverSpec(
    "ddnm", ddnm, "Wang et al., Zero-Shot Image Restoration Using DDNM, ICLR 2023", svd="noisy",
    ranges={"eta": UNIT, "travel_length": Range(1), "travel_repeat": Range(1)},
)

__all__ = ["SPEC", "ddnm", "time_travel_indices"]
