"""PnP-ADMM: Plug-and-Play ADMM with any Gaussian denoiser.

Venkatakrishnan, Bouman & Wohlberg, "Plug-and-Play Priors for Model Based
Reconstruction", GlobalSIP 2013; continuation of the penalty after Chan, Wang & Elgendy,
"Plug-and-Play ADMM for Image Restoration: Fixed-Point Convergence and Applications",
IEEE TCI 2017. Scaled-form ADMM for ``min_x ||A x - y||^2 / (2 sigma_y^2) - log p(x)``
with the splitting ``x = z`` and penalty ``rho_k = 1 / sigma_k^2``:

    x <- argmin ||A x - y||^2 / (2 sigma_y^2) + rho_k / 2 ||x - (z - u)||^2   (operator.prox)
    z <- D(x + u, sigma_k)                                                  (denoiser)
    u <- u + x - z

The denoiser at noise ``sigma_k`` plays the proximal map of ``-log p`` with step
``sigma_k^2 = 1 / rho_k``; for a Gaussian prior this is exact, so the iteration converges to
the MAP estimate (= posterior mean).

Schedule (our design, documented here since the papers use hand-tuned BM3D/CNN levels):
``sigma_k`` decreases geometrically from ``sigma_max`` to ``sigma_min`` over the first
``anneal`` fraction of the ``steps`` iterations and then stays at ``sigma_min``, so the
iteration is a fixed-penalty ADMM at the end and converges. Defaults: ``steps = 100``,
``sigma_max = 0.2`` (about 50/255, the starting level of DPIR, Zhang et al. TPAMI 2021),
``sigma_min = max(sigma_y, 0.01)`` and ``anneal = 0.5``.

Chan et al. (Algorithm 1) and their reference MATLAB code (``PlugPlayADMM_deblur.m``,
``PlugPlayADMM_general.m``; defaults ``rho = 1``, ``gamma = 1``, ``max_itr = 20``, ``tol = 1e-4``)
minimise ``||A x - y||^2 / 2 + lambda g(x)`` with the denoiser level ``sigma_k = sqrt(lambda / rho_k)``;
our likelihood data term is theirs divided by ``sigma_y^2``, i.e. their ``lambda = sigma_y^2`` and
``rho = sigma_y^2 rho_k``, which gives the same ``sigma_k = 1 / sqrt(rho_k)``.
Deviation: Chan et al. grow ``rho`` by ``gamma`` when the residual ``Delta_k`` of (x, v, u) did not
drop by a factor ``eta`` (the code: every iteration) and stop when ``Delta_k < tol``; we use the
fixed geometric schedule above (``gamma = (sigma_max / sigma_min)^(2 / n_anneal)``, then 1) and a
fixed number of iterations, so that no sample's schedule depends on the others'.
Deviation: when ``rho`` changes, the scaled dual variable is rescaled by ``rho_k / rho_{k+1}``
(Boyd et al., "Distributed Optimization ... ADMM", 2011, Sec. 3.4.1), which Chan et al. omit.
Start: as the reference code, ``z = 0.5`` (a grey image; ``v = 0.5`` there) and ``u = 0``, so
the first x-iterate is the data step from grey: where ``A`` measures nothing (the holes of an
inpainting mask, the null space of a downsampling) it is grey, elsewhere it follows ``y``.
(Starting from ``A^+ y`` instead, as this module did, leaves black holes, and the denoiser,
whose level has reached ``sigma_min`` after ``anneal * steps`` iterations, cannot lift
them in few iterations: with the built-in prior on a 64x64 BSDS500 training crop with 50%
(80%) of the pixels missing at random, noiseless, 20 iterations gave 17.7 (11.8) dB from
``A^+ y`` and 30.3 (22.1) dB from grey; 100 iterations 31.7 (19.7) and 31.7 (27.5) dB.)
``x_init`` replaces the grey start.
Deviation: the reference code clips ``x + u`` to [0, 1] before denoising and returns the
denoised ``v``; we do not clip, and return the x-iterate, which satisfies the data term
exactly when ``sigma_y = 0``.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..operators.base import LinearOperator
from ..priors.base import Denoiser
from .common import COMMON_RANGES, POSITIVE, UNIT, Callback, Sigmas, SolverSpec, check_value, check_x_init, setup

Tensor = torch.Tensor


def admm_sigmas(steps: int, sigma_max: float, sigma_min: float, anneal: float = 0.5) -> list[float]:
    """Denoiser levels: geometric from ``sigma_max`` to ``sigma_min`` over ``anneal * steps`` iterations, then flat."""
    steps = check_value("steps", steps, int, COMMON_RANGES["steps"])
    if not 0 < sigma_min <= sigma_max or not 0 <= anneal <= 1:
        raise ConfigError(
            "need 0 < sigma_min <= sigma_max and 0 <= anneal <= 1; "
            f"got sigma_min={sigma_min}, sigma_max={sigma_max}, anneal={anneal}"
        )
    n = round(anneal * steps)
    ramp = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64).tolist()
    return (ramp + [sigma_min] * steps)[:steps]


@torch.no_grad()
def pnp_admm(
    y: Tensor,
    operator: LinearOperator,
    denoiser: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    sigma_max: float = 0.2,
    sigma_min: float | None = None,
    anneal: float = 0.5,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A x + sigma_y n`` with PnP-ADMM.

    Args:
        y: measurement (B, ...) on the [0, 1] scale.
        operator: any :class:`~pnp_restore.operators.base.LinearOperator` (uses ``prox``, ``pinv``).
        denoiser: any object with ``denoise(x, sigma)`` (a prior, BM3D, ...).
        sigma_y: measurement noise std on the [0, 1] scale (0 = hard data constraint).
        steps: number of ADMM iterations (= denoiser calls).
        sigma_max, sigma_min, anneal: the denoiser schedule (see the module docstring);
            ``sigma_min`` defaults to ``max(sigma_y, 0.01)``.
        seed: unused (PnP-ADMM is deterministic); accepted for a uniform API.
        x_init: starting point ``z`` on [0, 1]; default the grey image 0.5 (see the module docstring).
        sigmas: explicit per-iteration denoiser levels (overrides the schedule).

    Returns:
        (B, C, H, W) the last x-iterate on [0, 1] (it satisfies the data term exactly when
        ``sigma_y = 0``).
    """

    def levels(den: Denoiser, steps: int, sigmas: Sigmas | None) -> list[float]:
        if sigmas is not None:
            sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist()
            if not sig or min(sig) <= 0:
                raise ConfigError("sigmas must be a non-empty sequence of positive noise levels")
            return sig
        floor = sigma_min if sigma_min is not None else max(float(sigma_y), 0.01)
        return admm_sigmas(steps, max(sigma_max, floor), floor, anneal)

    run = setup(
        "pnp_admm", y, operator, denoiser, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback,
        levels=levels,
    )
    sig, den = run.sigmas, run.den
    log = run.steps(len(sig), "try a larger sigma_min or more steps", pm1=False)
    x_init = check_x_init(x_init, run.x_shape, y)
    z = run.zeros() + 0.5 if x_init is None else x_init.clone()
    u = run.zeros()
    for k, s in enumerate(sig):
        if k > 0:
            u = u * (s / sig[k - 1]) ** 2  # rho_{k-1} / rho_k
        x = operator.prox(z - u, y, 1.0 / s**2, sigma_y)
        z = den.denoise(x + u, s)
        u = u + x - z
        log(k, s, x, z)
    return x


SPEC = SolverSpec(
    "pnp_admm", pnp_admm, "Venkatakrishnan et al., GlobalSIP 2013; Chan et al., IEEE TCI 2017", prior="denoise",
    stochastic=False, ranges={"sigma_max": POSITIVE, "sigma_min": POSITIVE, "anneal": UNIT},
)

__all__ = ["SPEC", "admm_sigmas", "pnp_admm"]
