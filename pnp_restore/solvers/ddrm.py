"""DDRM: Denoising Diffusion Restoration Models.

Kawar, Elad, Ermon & Song, "Denoising Diffusion Restoration Models", NeurIPS 2022.
DDRM works in the spectral space of ``A = U diag(s) V^T`` on the variance-exploding
variable ``x_t / sqrt(ab_t)`` of a [-1, 1] DDPM (noise level ``sigma_t`` there). Each
coefficient ``i`` of ``V^T x`` is updated by one of three rules (paper Eq. 7-8):

* ``s_i = 0`` (not measured): DDIM-like step, ``x0 + sqrt(1-eta^2) sigma' eps + eta sigma' z``;
* ``s_i sigma' < sigma_y`` (the next iterate is less noisy than ``ybar_i = (U^T y)_i / s_i``):
  ``x0 + sqrt(1-eta^2) sigma' (ybar_i - x0) / (sigma_y / s_i) + eta sigma' z``;
* ``s_i sigma' > sigma_y`` (noisier than ``ybar_i``):
  ``eta_b ybar_i + (1 - eta_b) x0 + sqrt(sigma'^2 - eta_b^2 sigma_y^2 / s_i^2) z``;

with ``sigma'`` the next noise level and ``z ~ N(0, I)`` in coefficient space. The first
iterate is drawn from DDRM's ``q(x_T | y)``: ``ybar_i + sqrt(sigma_T^2 - sigma_y^2/s_i^2) z``
where ``s_i sigma_T > sigma_y``, pure noise elsewhere.

Defaults and where they come from (official code, bahjat-kawar/ddrm): steps = 20 (README commands
``--timesteps 20``; runners/diffusion.py ``sample_image``: ``skip = num_timesteps // timesteps``,
``seq = range(0, num_timesteps, skip)``, i.e. t = 950, 900, ..., 0 and then ``ab = 1``, which a DDPM
prior's uniform respacing reproduces), eta = 0.85 (main.py ``--eta`` default, used for both
``etaA`` and ``etaC`` in ``efficient_generalized_steps``), eta_b = 1.0 (main.py ``--etaB`` default).
Update (functions/denoising.py ``efficient_generalized_steps``): x_T as above; per step the three
cases with ``sigma'`` of the next timestep; at the last step ``sigma' = 0`` and every case reduces
to ``x0``, which is the output (the reference clamps to [0, 1] only when saving images).

Everything runs on [-1, 1] images with ``sigma_net = 2 sigma`` and ``sigma_y_net = 2 sigma_y``
as in the official code (``sigma_0 = 2 * args.sigma_0``).
Deviation: the official initialisation divides ``V(init)`` by ``sigma_T`` instead of
multiplying by ``sqrt(ab_T)``, which differs by ``1/sqrt(1 - ab_T)`` (``1 + 5e-5`` at the
20-step start t = 950 of the linear schedule); we use the paper's ``x_T = sqrt(ab_T) V(init)``.
Deviation: coefficients with ``s_i = 0`` always take the unmeasured rule. The reference applies
the rules to every entry of its singular-value list, so the values its deblurring and bicubic-SR
operators zero out (``< 3e-2``) take the low-noise rule when ``sigma_y > 0`` (with ``s_i x0 = 0``,
reading the noise in ``U^T y`` as data) and the unmeasured rule when ``sigma_y = 0``, as here.
Deviation: one Gaussian draw per coefficient and step is shared by the three cases
(the reference draws a full tensor per case and keeps the entries of its case; same law).
"""

from __future__ import annotations

import math

import torch

from ..operators.base import LinearOperator
from ..priors.base import Denoiser
from .common import UNIT, Callback, Sigmas, SolverSpec, alpha_bar, check_x_init, from_pm1, setup, to_pm1

Tensor = torch.Tensor


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    return a / torch.where(b > 0, b, torch.ones_like(b))


@torch.no_grad()
def ddrm(
    y: Tensor,
    operator: LinearOperator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 20,
    eta: float = 0.85,
    eta_b: float = 1.0,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A x + sigma_y n`` with DDRM.

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: a :class:`~pnp_restore.operators.base.LinearOperator` with ``has_svd``.
        prior: a :class:`~pnp_restore.priors.base.Prior`, or any object with ``denoise(x, sigma)``.
        sigma_y: measurement noise std on the [0, 1] scale.
        steps: number of denoiser calls (default 20, the paper's).
        eta, eta_b: DDRM's eta (unmeasured and low-noise coefficients) and eta_b.
        seed: sample i uses seed ``seed + i``.
        x_init: optional [0, 1] image used as the mean of the unmeasured coefficients of
            the first iterate (default: 0 on [-1, 1], i.e. pure noise as in the paper).
        sigmas: override of the [0, 1]-scale noise schedule.

    Returns:
        (B, C, H, W) restored images on [0, 1] (not clamped).
    """
    run = setup("ddrm", y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, den, rng = run.sigmas, run.den, run.rng
    n = len(sig) - 1
    log = run.steps(n, f"try more steps or a smaller eta (eta={eta})")

    like = run.zeros()
    s = operator.singular_values(like)
    s0 = 2.0 * float(sigma_y)
    cy = operator.U_adjoint(run.y_pm)
    ybar = _safe_div(cy, s)

    def noise() -> Tensor:
        return operator.V_adjoint(rng.randn_like(like))

    # q(x_T | y): measured coefficients that are less noisy than x_T start at ybar.
    st = 2.0 * sig[0]
    start = s * st > s0
    x_init = check_x_init(x_init, run.x_shape, like)
    mean0 = operator.V_adjoint(to_pm1(x_init)) if x_init is not None else torch.zeros_like(like)
    std0 = torch.where(
        start, (st**2 - _safe_div(torch.full_like(s, s0), s) ** 2).clamp_min(0).sqrt(), torch.full_like(s, st)
    )
    x = operator.V(torch.where(start, ybar, mean0) + std0 * noise())  # VE variable on [-1, 1]

    for i in range(n):
        st, sn = 2.0 * sig[i], 2.0 * sig[i + 1]
        x0, eps = den.vp(math.sqrt(alpha_bar(sig[i])) * x, sig[i])  # x_t = sqrt(ab) x_ve
        c_x0 = operator.V_adjoint(x0)
        c_eps = operator.V_adjoint(eps)  # (x - x0) / st
        z = noise()
        std = eta * sn
        tilde = math.sqrt(sn**2 - std**2)
        measured = s > 0
        after = measured & (s * sn < s0)
        before = measured & (s * sn > s0)
        missing = c_x0 + tilde * c_eps + std * z
        low = c_x0 + tilde * (cy - s * c_x0) / s0 + std * z if s0 > 0 else missing
        high_std = (sn**2 - _safe_div(torch.full_like(s, s0 * eta_b), s) ** 2).clamp_min(0).sqrt()
        high = eta_b * ybar + (1 - eta_b) * c_x0 + high_std * z
        c = torch.where(before, high, torch.where(after, low, missing))
        x = operator.V(c)
        log(i, sig[i], x, x0)
    return from_pm1(x)


SPEC = SolverSpec(
    "ddrm", ddrm, "Kawar et al., Denoising Diffusion Restoration Models, NeurIPS 2022", svd="always",
    ranges={"eta": UNIT, "eta_b": UNIT},
)

__all__ = ["SPEC", "ddrm"]
