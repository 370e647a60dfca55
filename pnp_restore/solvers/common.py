"""Shared pieces of the diffusion solvers.

The published algorithms are written for DDPM networks on [-1, 1] images in the
variance-preserving (VP) form ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``. Our priors
are [0, 1]-scale denoisers ``D(x, sigma)``. The two are the same model under

    sigma_net = 2 sigma,   ab = 1 / (1 + sigma_net^2),   x_vp = sqrt(ab) (2 x_ve - 1),
    x0_pm = 2 D(x_ve, sigma) - 1,   eps = (x_vp - sqrt(ab) x0_pm) / sqrt(1 - ab),

so each solver runs its paper's update verbatim in VP/[-1, 1] coordinates and
converts only at the boundary (:class:`VPDenoiser`, :func:`to_pm1`, :func:`measurement_to_pm1`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._rng import SampleRNG
from ..errors import ConfigError, DivergenceError, OperatorError, ShapeError
from ..operators.base import LinearOperator
from ..priors.base import vp_alpha_bar as alpha_bar  # VP alpha_bar of a [0, 1]-scale sigma (floats too)

Tensor = torch.Tensor
Callback = Callable[[dict], None]


def schedule(prior, steps: int, sigmas=None) -> list[float]:
    """Decreasing [0, 1]-scale noise levels with a final 0 appended (``steps + 1`` floats).

    ``sigmas`` overrides ``prior.sigmas(steps)``; a trailing 0 in it is accepted.
    """
    if sigmas is None:
        if int(steps) < 1:
            raise ConfigError(f"steps must be >= 1; got {steps}")
        s = torch.as_tensor(prior.sigmas(int(steps)), dtype=torch.float64).flatten()
    else:
        s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if s.numel() > 1 and s[-1] == 0:
            s = s[:-1]
    if s.numel() < 1 or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()) or bool((s[1:] > s[:-1]).any()):
        raise ConfigError("sigmas must be a non-empty, finite, positive, non-increasing sequence (a final 0 is added)")
    return s.tolist() + [0.0]


def to_pm1(x: Tensor) -> Tensor:
    """[0, 1] image -> [-1, 1]."""
    return 2 * x - 1


def from_pm1(x: Tensor) -> Tensor:
    """[-1, 1] image -> [0, 1]."""
    return (x + 1) / 2


def measurement_to_pm1(y: Tensor, operator: LinearOperator, x_shape: tuple[int, ...]) -> Tensor:
    """The measurement of the [-1, 1] image: ``A(2 x - 1) = 2 y - A(1)`` (A linear)."""
    ones = torch.ones(x_shape, device=y.device, dtype=y.dtype)
    return 2 * y - operator.forward(ones)


class VPDenoiser:
    """A :class:`~pnp_restore.priors.base.Prior` as the x0/eps predictor of a DDPM on [-1, 1].

    ``den(x_vp, sigma) -> (x0, eps)`` in VP / [-1, 1] coordinates, for a [0, 1]-scale
    noise level ``sigma`` (python float). ``den.ve(x, sigma)`` gives x0 on [-1, 1] for a
    variance-exploding input on [-1, 1] (``x = x0 + 2 sigma n``, as DDRM writes it).
    ``nfe`` counts the calls to the prior.
    """

    def __init__(self, prior) -> None:
        self.prior = prior
        self.nfe = 0

    def ve(self, x: Tensor, sigma: float) -> Tensor:
        self.nfe += 1
        return to_pm1(self.prior.denoise(from_pm1(x), sigma))

    def __call__(self, x_vp: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        ab = alpha_bar(sigma)
        x0 = self.ve(x_vp / math.sqrt(ab), sigma)
        eps = (x_vp - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return x0, eps


def check_x_init(x_init: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """``x_init`` on ``like``'s device/dtype, or :class:`ShapeError` if it is not an image batch of ``shape``."""
    if x_init is None:
        return None
    if not isinstance(x_init, Tensor) or tuple(x_init.shape) != tuple(shape):
        got = tuple(x_init.shape) if isinstance(x_init, Tensor) else type(x_init).__name__
        raise ShapeError(f"x_init must have shape {tuple(shape)} (the images behind y); got {got}")
    return x_init.to(like)


def initial_vp(rng: SampleRNG, shape: tuple[int, ...], sigma: float, like: Tensor, x_init: Tensor | None) -> Tensor:
    """x_T: N(0, I) as in the papers, or ``x_init`` ([0, 1]) diffused to ``sigma`` (SDEdit-style start)."""
    x_init = check_x_init(x_init, shape, like)
    noise = rng.randn(tuple(shape), device=like.device, dtype=like.dtype)
    if x_init is None:
        return noise
    ab = alpha_bar(sigma)
    return math.sqrt(ab) * to_pm1(x_init) + math.sqrt(1 - ab) * noise


def require_svd(operator: LinearOperator, solver: str, sigma_y: float = 0.0) -> None:
    """Raise :class:`OperatorError` unless ``operator`` has the SVD hooks.

    The message names the registry's solvers that work without an SVD at this ``sigma_y``.
    """
    if getattr(operator, "has_svd", False):
        return
    from . import SPECS  # the registry imports this module

    what = "with sigma_y > 0 " if SPECS[solver].svd == "noisy" else ""
    no_svd = [n for n, s in SPECS.items() if not s.needs_svd(sigma_y)]
    raise OperatorError(
        f"{solver} {what}needs an operator with an SVD and {type(operator).__name__} has none; "
        f"use one of {', '.join(no_svd)}, or wrap a small operator in DenseSVDOperator"
    )


def check_measurement(y: Tensor, operator: LinearOperator) -> tuple[int, ...]:
    """Shape of the images behind ``y`` (raises :class:`ShapeError` for non-tensors / non-float)."""
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ShapeError(f"y must be a float tensor; got {type(y).__name__ if not isinstance(y, Tensor) else y.dtype}")
    return tuple(operator.x_shape(tuple(y.shape)))


class Steps:
    """Per-step bookkeeping shared by all solvers: NaN/Inf check and callback.

    Args:
        solver: name used in messages.
        steps: number of steps (for "step i/n").
        callback: ``callback(info)`` with ``step, steps, sigma, x, x0, nfe`` ([0, 1] images).
        nfe: function returning the current NFE count.
        hint: what to try when the iterate diverges.
    """

    def __init__(self, solver: str, steps: int, callback: Callback | None, nfe: Callable[[], int], hint: str) -> None:
        self.solver, self.steps, self.callback, self.nfe, self.hint = solver, steps, callback, nfe, hint

    def __call__(self, i: int, sigma: float, x: Tensor, x0: Tensor | None = None, **extra) -> None:
        """Check and report step ``i`` (0-based); ``x``/``x0`` on [0, 1]."""
        bad = not bool(torch.isfinite(x).all()) or (x0 is not None and not bool(torch.isfinite(x0).all()))
        if bad:
            raise DivergenceError(
                f"{self.solver} diverged at step {i + 1}/{self.steps} (sigma={sigma:.4g}): "
                f"NaN/Inf in the iterate; {self.hint}"
            )
        if self.callback is not None:
            info = {"step": i, "steps": self.steps, "sigma": sigma, "x": x, "x0": x0, "nfe": self.nfe()}
            info.update(extra)
            self.callback(info)


__all__ = [
    "Steps",
    "VPDenoiser",
    "alpha_bar",
    "check_measurement",
    "check_x_init",
    "from_pm1",
    "initial_vp",
    "measurement_to_pm1",
    "require_svd",
    "schedule",
    "to_pm1",
]
