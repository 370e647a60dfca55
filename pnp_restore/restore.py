"""One entry point: ``restore(y, operator, prior, solver="ddrm", ...)``."""

from __future__ import annotations

import inspect
import math
import numbers
import time

import torch

from . import solvers
from .errors import ConfigError, ShapeError
from .solvers.common import require_svd

Tensor = torch.Tensor

#: arguments every solver takes; ``restore`` passes them itself.
_COMMON = {"y", "operator", "prior", "denoiser", "sigma_y", "steps", "seed", "callback"}


class _CountingPrior:
    """Forwards everything to ``prior`` and counts ``denoise`` calls (the NFE)."""

    def __init__(self, prior) -> None:
        self._prior = prior
        self.nfe = 0

    def denoise(self, x: Tensor, sigma):
        self.nfe += 1
        return self._prior.denoise(x, sigma)

    def __getattr__(self, name: str):
        return getattr(self._prior, name)


def solver_options(name: str) -> list[str]:
    """The hyper-parameters solver ``name`` accepts besides the common arguments."""
    params = inspect.signature(solvers.get(name)).parameters
    return [p for p in params if p not in _COMMON]


def restore(
    y: Tensor,
    operator,
    prior,
    solver: str = "ddrm",
    *,
    sigma_y: float = 0.0,
    steps: int | None = None,
    seed: int | None = None,
    callback=None,
    return_info: bool = False,
    task: str | None = None,
    **solver_options_,
):
    """Restore ``x`` from ``y = A x + sigma_y n`` with a diffusion prior.

    Args:
        y: (B, C', H', W') float measurement on the [0, 1] scale, finite.
        operator: the degradation ``A`` (:class:`~pnp_restore.operators.base.LinearOperator`).
        prior: a :class:`~pnp_restore.priors.base.Prior` (any ``denoise(x, sigma)`` for pnp_admm).
        solver: one of :data:`pnp_restore.solvers.SOLVERS` (``ddrm``, ``ddnm``, ``dps``,
            ``diffpir``, ``pnp_admm``).
        sigma_y: measurement noise std on the [0, 1] scale, >= 0.
        steps: number of steps; ``None`` uses the solver's published default.
        seed: image i of the batch uses seed ``seed + i``; ``None`` is non-deterministic.
        callback: ``callback(info)`` after every step (``step, steps, sigma, x, x0, nfe``).
        return_info: also return ``{"nfe", "steps", "solver", "time_s", "seed", "options"}``.
        task: ``"super_resolution"``, ``"inpainting"``, ``"gaussian_deblur"`` or
            ``"motion_deblur"`` to use the paper's per-task hyper-parameters
            (:func:`pnp_restore.solvers.task_defaults`, e.g. DPS's zeta); explicit
            ``steps`` and options win over them.
        **solver_options_: the solver's hyper-parameters (e.g. ``eta`` for ddrm, ``zeta`` for dps).

    Returns:
        x (B, C, H, W) on [0, 1], or ``(x, info)``.

    Raises:
        ShapeError: ``y`` is not a (B, C, H, W) float tensor, or the prior models another
            number of channels.
        ConfigError: unknown solver or option, NaN/Inf in ``y``, negative ``sigma_y`` or ``steps``.
        OperatorError: the solver needs an SVD the operator does not have.
    """
    spec = solvers.spec(solver)
    published = solvers.task_defaults(solver, task)
    task_steps = published.pop("steps", None)
    steps = task_steps if steps is None else steps
    solver_options_ = {**published, **solver_options_}
    valid = solver_options(solver)
    unknown = sorted(set(solver_options_) - set(valid))
    if unknown:
        raise ConfigError(f"solver {solver!r} has no option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    if not isinstance(y, Tensor) or y.dim() != 4 or not y.is_floating_point():
        what = f"shape {tuple(y.shape)} dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"y must be a float tensor of shape (B, C, H, W); got {what}")
    if not bool(torch.isfinite(y).all()):
        raise ConfigError("y contains NaN/Inf; clean or mask the measurement first")
    if not isinstance(sigma_y, numbers.Real) or not math.isfinite(sigma_y) or sigma_y < 0:
        raise ConfigError(f"sigma_y must be a finite number >= 0 on the [0, 1] scale; got {sigma_y}")
    if steps is not None and (not isinstance(steps, numbers.Integral) or steps < 1):
        raise ConfigError(f"steps must be a positive integer; got {steps}")
    if spec.needs_svd(sigma_y):
        require_svd(operator, solver, sigma_y)
    x_shape = tuple(operator.x_shape(tuple(y.shape)))
    y_shape = tuple(operator.forward(torch.zeros(x_shape, device=y.device, dtype=y.dtype)).shape)
    if y_shape != tuple(y.shape):
        raise ShapeError(
            f"{type(operator).__name__} produces measurements of shape {y_shape}; got y of shape {tuple(y.shape)} "
            "(a FunctionOperator whose output size differs from its input needs in_shape=)"
        )
    channels = getattr(prior, "channels", None)
    if channels is not None and x_shape[1] != channels:
        raise ShapeError(
            f"the prior models {channels}-channel images but the operator produces {x_shape[1]}-channel ones; "
            "use a matching prior or operator"
        )
    steps = spec.default_steps if steps is None else int(steps)
    counted = _CountingPrior(prior)
    start = time.perf_counter()
    x = spec.fn(
        y, operator, counted, sigma_y=float(sigma_y), steps=steps, seed=seed, callback=callback, **solver_options_
    )
    if not return_info:
        return x
    info = {
        "nfe": counted.nfe,
        "steps": steps,
        "solver": solver,
        "time_s": time.perf_counter() - start,
        "seed": seed,
        "options": solver_options_,
    }
    return x, info


__all__ = ["restore", "solver_options"]
