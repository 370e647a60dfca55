"""Latent decode-prox-encode (DPE): a cheap plug-and-play solver for latent diffusion priors.

Per annealing level ``sigma_i`` (latent scale, :meth:`~pnp_restore.priors.latent.LatentPrior.sigmas`)::

    z0_hat = D_theta(z_i, sigma_i)                   # the latent denoiser (1 NFE)
    x_hat  = decode(z0_hat)                          # [0, 1] image
    x      = argmin_x ||A(x) - y||^2 / (2 sigma_y^2) + ||x - x_hat||^2 / (2 r_i^2)   # data step, pixels
    z_{i+1} = encode(x) + sigma_{i+1} n              # back to the latent, re-noised

No gradient goes through the network or the autoencoder: the data step is the operator's own
``prox`` (closed form / conjugate gradient) for a :class:`~pnp_restore.operators.base.LinearOperator`,
and ``data_steps`` gradient steps on the same objective for any other differentiable operator.
With ``sigma_y = 0`` the data step is the projection onto ``{A x = y}`` (hard data consistency).

What it follows. The step is DiffPIR's (Zhu et al., "Denoising Diffusion Models for Plug-and-Play
Image Restoration", CVPRW 2023: denoise, data prox with ``rho_t = lambda sigma_y^2 / sigma_t^2``,
re-noise) with the prox taken in pixel space between decoder and encoder, as the pixel-space
hard-data-consistency variant of ReSample (Song et al., "Solving Inverse Problems with Latent
Diffusion Models via Hard Data Consistency", ICLR 2024, Sec. 3.1: optimise in pixel space, then
encode) and the few-step latent restoration methods that decode, enforce the data and re-encode.
No single paper defines exactly this loop: the solver is our construction, and every constant
below is ours (no official code to take defaults from).

Choices (ours):
    r_i = sigma_i / (2 sqrt(lam)): the pixel std of ``x0`` given ``z_i``. A latent unit is taken as
    a [-1, 1] pixel unit (Stable Diffusion's VAE ``scaling_factor`` normalises latents to about unit
    variance, like [-1, 1] images), hence the 1/2 on our [0, 1] scale; ``lam`` plays DiffPIR's
    lambda (default 1, DiffPIR's ``lambda_`` for its noisy tasks, main_ddpir*.py).
    steps = 20 (the few-step regime), schedule: the prior's :meth:`sigmas` (its trained timesteps).
    Nonlinear operators: ``data_steps = 20`` gradient steps of size ``data_lr / (L + lam_i)``
    (``lam_i = sigma_y^2 / r_i^2``; ``L`` the squared norm of the operator's Jacobian at ``x_hat``,
    5 power iterations per sample; ``data_lr = 1``, stable below 2) on the objective above times
    ``sigma_y^2``, from ``x_hat``.
    Output: ``decode(encode(x))`` of the last data step (the image the latent represents, as the
    other latent solvers return ``decode(z0)``), not the pixel iterate ``x`` itself.
    Deviation (from DiffPIR): no ``zeta`` mixing of the re-noising direction (fresh noise, DiffPIR's
    ``zeta = 1``), and the levels are the latent prior's, not DiffPIR's [-1, 1] pixel schedule.
"""

from __future__ import annotations

import math
import typing

import torch

from ..errors import ConfigError, DivergenceError
from ..operators.base import Operator
from ..priors.base import Denoiser
from .common import (
    COMMON_RANGES,
    MAX_STEPS,
    POSITIVE,
    Callback,
    Range,
    Run,
    Sigmas,
    SolverSpec,
    check_value,
    check_x_init,
    setup,
)

Tensor = torch.Tensor

#: a pixel iterate beyond this ([0, 1] images) has diverged, even while still finite
BLOWUP = 1e4
#: power iterations estimating the operator's local gain for the nonlinear data step
POWER_ITERS = 5


# -- shared by the latent solvers -------------------------------------------------------------------


def check_latent(prior, solver: str) -> None:
    """Raise :class:`ConfigError` unless ``prior`` is a latent prior (``denoise``, ``encode``, ``decode``)."""
    if not all(callable(getattr(prior, m, None)) for m in ("denoise", "encode", "decode")):
        raise ConfigError(
            f"{solver} needs a latent prior (with encode/decode, e.g. a Stable Diffusion pipeline from "
            f"pnp_restore.priors.load); got {type(prior).__name__}: use a pixel solver for pixel priors"
        )


def latent_shape(prior, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(B, latent_channels, ceil(H / factor), ceil(W / factor)): the latents of images of ``x_shape``."""
    b, _, h, w = x_shape
    f = int(getattr(prior, "factor", 1))
    return (b, int(prior.latent_channels), -(-h // f), -(-w // f))


def decode(run: Run, z: Tensor) -> Tensor:
    """[0, 1] images of ``run.x_shape`` (H, W) from latents ``z`` (not clamped; differentiable)."""
    return run.den.decode(z, size=tuple(run.x_shape[-2:]))


def encode(run: Run, x: Tensor) -> Tensor:
    """Latents of [0, 1] images ``x`` (the autoencoder's mean, deterministic)."""
    return run.den.encode(x)


def check_blowup(solver: str, i: int, n: int, sigma: float, x: Tensor, hint: str) -> None:
    """:class:`DivergenceError` naming step ``i`` when ``x`` has NaN/Inf or is beyond :data:`BLOWUP`."""
    peak = float(x.abs().max())
    if not math.isfinite(peak) or peak > BLOWUP:
        what = "NaN/Inf in the iterate" if not math.isfinite(peak) else f"the iterate reached {peak:.3g}"
        raise DivergenceError(f"{solver} diverged at step {i + 1}/{n} (sigma={sigma:.4g}): {what}; {hint}")


def start_latent(run: Run, prior, sigma: float, x_init: Tensor | None, like: Tensor) -> Tensor:
    """``sigma n`` around 0 (the latent prior's mean), or ``encode(x_init) + sigma n`` (SDEdit-style)."""
    x_init = check_x_init(x_init, run.x_shape, like)
    shape = latent_shape(prior, run.x_shape)
    noise = sigma * run.rng.randn(shape, device=like.device, dtype=like.dtype)
    return noise if x_init is None else encode(run, x_init) + noise


def options(fn, spec: SolverSpec, values: dict) -> dict:
    """``values`` checked against ``fn``'s annotations and ``spec.ranges`` (one-line ConfigError)."""
    hints = typing.get_type_hints(fn)
    ranges = {**COMMON_RANGES, **spec.ranges}
    return {k: check_value(k, v, hints[k], ranges.get(k)) for k, v in values.items()}


# -- the solver ----------------------------------------------------------------------------------------


def gain(op: Operator, x: Tensor, iters: int = POWER_ITERS) -> Tensor:
    """(B, 1, 1, 1) estimate of ``||J_A(x)||^2`` (the curvature of ``||A(.) - y||^2 / 2`` at ``x``) by power
    iteration on ``J^T J`` from a constant image (deterministic, no random numbers drawn)."""
    v = torch.ones_like(x)
    norm = v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    for _ in range(iters):
        w = op.vjp(x, op.jvp(x, v / norm))
        norm = w.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(torch.finfo(x.dtype).tiny)
        v = w
    return norm


def data_step(
    run: Run, x_hat: Tensor, sigma_y: float, r: float, data_steps: int, data_lr: float
) -> Tensor:
    """``argmin_x ||A(x) - y||^2 / (2 sigma_y^2) + ||x - x_hat||^2 / (2 r^2)``: the operator's prox
    (linear) or ``data_steps`` gradient steps from ``x_hat`` of size ``data_lr / (L + lam)`` (other operators;
    ``L`` the local curvature :func:`gain` at ``x_hat``, ``lam = sigma_y^2 / r^2``)."""
    op, y = run.operator, run.y
    if op.linear:
        return op.prox(x_hat, y, 1.0 / r**2, sigma_y)
    lam = sigma_y**2 / r**2
    step = data_lr / (gain(op, x_hat) + lam) if data_steps > 0 else None
    x = x_hat
    for _ in range(data_steps):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            loss = 0.5 * (op.forward(xg) - y).pow(2).sum() + 0.5 * lam * (xg - x_hat).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, xg)
        x = x - step * grad
    return x.detach()


@torch.no_grad()
def latent_dpe(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float = 0.0,
    steps: int = 20,
    lam: float = 1.0,
    data_steps: int = 20,
    data_lr: float = 1.0,
    seed: int | None = None,
    callback: Callback | None = None,
    x_init: Tensor | None = None,
    sigmas: Sigmas | None = None,
) -> Tensor:
    """Restore ``y = A(x) + sigma_y n`` with a latent diffusion prior by decode-prox-encode steps.

    Args:
        y: measurement (B, ...) on the [0, 1] scale of the images.
        operator: any :class:`~pnp_restore.operators.base.Operator` on decoded [0, 1] images
            (linear: its ``prox``; otherwise its forward through autograd).
        prior: a latent prior: ``denoise(z, sigma)`` on latents (latent-scale sigma),
            ``encode(x)`` / ``decode(z, size=...)`` for [0, 1] images (a
            :class:`~pnp_restore.priors.latent.LatentPrior`).
        sigma_y: measurement noise std on [0, 1] (0: hard data consistency).
        steps: annealing levels (default 20; the prior's ``sigmas(steps)``).
        lam: DiffPIR's lambda: the data step trusts ``x_hat`` within ``r_i = sigma_i / (2 sqrt(lam))``.
        data_steps, data_lr: gradient steps (and their relative size) of the data step for
            nonlinear operators (unused for linear ones).
        seed: sample i uses seed ``seed + i``.
        callback: ``callback(info)`` per level with ``x`` (the data step's image), ``x0`` (``x_hat``),
            ``z`` (the next latent), ``sigma``, ``nfe``.
        x_init: optional [0, 1] start, encoded and noised to the first level.
        sigmas: explicit latent-scale levels (decreasing; a final 0 is added); overrides ``steps``.

    Returns:
        (B, 3, H, W) restored images on [0, 1] (not clamped).
    """
    check_latent(prior, SPEC.name)
    opts = options(latent_dpe, SPEC, dict(lam=lam, data_steps=data_steps, data_lr=data_lr))
    run = setup(SPEC, y, operator, prior, sigma_y=sigma_y, steps=steps, sigmas=sigmas, seed=seed, callback=callback)
    sig, n = run.sigmas, len(run.sigmas) - 1
    hint = "lower data_lr or data_steps (nonlinear operators), or check that the operator takes [0, 1] images"
    log = run.steps(n, hint, pm1=False)
    z = start_latent(run, prior, sig[0], x_init, y)
    x = None
    for i in range(n):
        x_hat = decode(run, run.den.denoise(z, sig[i]))
        r = sig[i] / (2.0 * math.sqrt(opts["lam"]))
        x = data_step(run, x_hat, float(sigma_y), r, opts["data_steps"], opts["data_lr"])
        check_blowup(SPEC.name, i, n, sig[i], x, hint)
        z0 = encode(run, x)
        z = z0 + sig[i + 1] * run.rng.randn_like(z0) if sig[i + 1] > 0 else z0
        log(i, sig[i], x, x_hat, z=z)
    return decode(run, z)


SPEC = SolverSpec(
    "latent_dpe", latent_dpe,
    "decode-prox-encode latent PnP (our construction after DiffPIR, Zhu et al., CVPRW 2023, and ReSample's "
    "pixel-space data consistency, Song et al., ICLR 2024)",
    linear=False, prior="denoise",
    ranges={"lam": POSITIVE, "data_steps": Range(0, MAX_STEPS), "data_lr": Range(0.0, 2.0, lo_open=True)},
)  # fmt: skip

__all__ = ["SPEC", "check_latent", "latent_dpe", "latent_shape"]
