"""PSLD: Posterior Sampling with Latent Diffusion.

Rout, Raoof, Daras, Caramanis, Dimakis & Shakkottai, "Solving Linear Inverse Problems Provably via
Posterior Sampling with Latent Diffusion Models", NeurIPS 2023 (Algorithm 2); official code
LituRout/PSLD, stable-diffusion/ldm/models/diffusion/psld.py (``DDIMSampler.p_sample_ddim``) driven by
stable-diffusion/scripts/inverse.py. Each deterministic DDIM step on the latent is followed by a
gradient step, differentiated through the denoiser and the decoder (DPS-style, on latents)::

    z0   = D_theta(z_t)                    # the latent denoiser's estimate
    x0   = decode(z0)
    err  = omega ||y - A x0|| + gamma ||encode(A^T y + (I - A^T A) x0) - z0||   # measurement + "gluing"
    z_{t-1} = DDIM(z_t, z0) - grad_{z_t} err

Defaults (scripts/inverse.py argparse): steps = 1000 (``--ddim_steps 1000``), DDIM ``eta = 0``
(``--ddim_eta 0.0``, the deterministic DDIM update), omega = 1 (``--omega 1``, measurement error),
gamma = 0.1 (``--gamma 1e-1``, the gluing error). The residual is on [-1, 1] images as in the code
(the images are ``(x - 0.5) / 0.5``), so ``omega`` / ``gamma`` keep their published meaning.

Coordinates: the code's VP latents ``z_vp = sqrt(ab) z`` are our VE latents ``z = z0 + sigma n``
(latent-scale ``sigma``, ``ab = 1 / (1 + sigma^2)``). DDIM with ``eta = 0`` is then
``z_{t-1} = z0 + sigma_{t-1} (z_t - z0) / sigma_t``, and the code's VP gradient step is
``z_{t-1} -= grad_z err / (sqrt(ab_t) sqrt(ab_{t-1}))`` here (the same update, converted).
x_T: N(0, I) in VP, i.e. ``sqrt(1 + sigma_0^2) n`` here.

Operators. The gluing term needs ``A^T``: for a :class:`~pnp_restore.operators.base.LinearOperator`
``A^T y + (I - A^T A) x0 = x0 + A^T (y - A x0)`` (the same on [0, 1] and [-1, 1] images); for other
operators it is dropped and PSLD is latent DPS (omega term only).
Deviation: the code takes each norm over the whole batch; we take one per sample, so samples stay
independent (identical for batch size 1, the code's default ``--n_samples 1``).
Deviation: classifier-free guidance (``--scale 7.5`` with an empty prompt) belongs to the prior
here (``priors.load(..., guidance=...)``); the default latent prior runs unguided.
Note: the code applies the gradient step at every step including the last; so do we. The output is
``decode(z)`` of the last iterate.
"""

from __future__ import annotations

import math

import torch

from ..operators.base import Operator
from ..priors.base import Denoiser
from .common import Callback, Range, Run, Sigmas, SolverSpec, setup, to_pm1
from .latent_dpe import check_blowup, check_latent, decode, encode, options, start_latent

Tensor = torch.Tensor


def _per_sample_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


def psld_error(run: Run, z: Tensor, sigma: float, omega: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """(err summed over the batch, z0, decode(z0)) at the VE latent ``z`` (needs grad enabled)."""
    z0 = run.den.denoise(z, sigma)
    x0 = decode(run, z0)
    err = omega * _per_sample_norm(run.residual(to_pm1(x0)))
    op = run.operator
    if gamma > 0 and op.linear:
        glued = x0 + op.adjoint(run.y - op.forward(x0))
        err = err + gamma * _per_sample_norm(encode(run, glued) - z0)
    return err.sum(), z0, x0


@torch.no_grad()
def psld(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 1000,
    omega: float = 1.0,
    gamma: float = 0.1,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + sigma_y n`` by PSLD with a latent diffusion prior.

    Args:
        y: measurement (B, ...) on the [0, 1] scale of the images.
        operator: a :class:`~pnp_restore.operators.base.LinearOperator` (measurement + gluing terms) or
            any differentiable operator (measurement term only).
        prior: a latent prior (``denoise`` on latents, differentiated through; ``encode`` / ``decode``).
        sigma_y: measurement noise std on [0, 1]; not used by the update (as in DPS, the step sizes
            replace it).
        steps: DDIM steps (default 1000, the code's ``--ddim_steps``).
        omega, gamma: weights of the measurement and gluing errors (code: 1 and 0.1).
        seed: sample i uses seed ``seed + i`` (only the start is random: DDIM eta = 0).
        callback: ``callback(info)`` per step with ``x`` (decoded ``z0``), ``x0`` (the same), ``z``,
            ``sigma``, ``nfe``.
        x_init: optional [0, 1] start, encoded and noised to the first level.
        sigmas: explicit latent-scale levels (decreasing; a final 0 is added); overrides ``steps``.

    Returns:
        (B, 3, H, W) restored images on [0, 1] (not clamped).
    """
    check_latent(prior, SPEC.name)
    o = options(psld, SPEC, dict(omega=omega, gamma=gamma))
    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, n = run.sigmas, len(run.sigmas) - 1
    hint = f"lower omega / gamma (omega={omega:g}, gamma={gamma:g}) or use more steps"
    log = run.steps(n, hint, pm1=False)
    z = start_latent(run, prior, math.sqrt(1.0 + sig[0] ** 2) if x_init is None else sig[0], x_init, y)
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            err, z0, x0 = psld_error(run, zg, s, o["omega"], o["gamma"])
            (grad,) = torch.autograd.grad(err, zg)
        z0 = z0.detach()
        scale = math.sqrt((1.0 + s**2) * (1.0 + s_next**2))  # 1 / (sqrt(ab_t) sqrt(ab_{t-1}))
        z = z0 + s_next / s * (z - z0) - scale * grad
        check_blowup(SPEC.name, i, n, s, z, hint)
        log(i, s, x0.detach(), x0.detach(), z=z)
    return decode(run, z)


SPEC = SolverSpec(
    "psld", psld,
    "Rout et al., Solving Linear Inverse Problems Provably via Posterior Sampling with Latent Diffusion Models, "
    "NeurIPS 2023",
    linear=False, prior="vp+grad", stochastic=True,
    ranges={"omega": Range(0.0), "gamma": Range(0.0)},
)  # fmt: skip

__all__ = ["SPEC", "psld"]
