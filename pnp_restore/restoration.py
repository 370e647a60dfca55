"""One entry point: ``restore(y, operator, prior, solver="ddrm", ...)``.

(The module is ``restoration`` so that ``pnp_restore.restore`` is the function.)
"""

from __future__ import annotations

import time

import torch

from . import solvers, tuned
from .errors import ConfigError
from .operators.base import Operator
from .priors.base import Denoiser
from .solvers.common import Callback, counting
from .tasks import Task

Tensor = torch.Tensor

#: the hyper-parameters solver ``name`` accepts besides the common arguments.
solver_options = solvers.options


def restore(
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    solver: str = "ddrm",
    *,
    sigma_y: float = 0.0,
    steps: int | None = None,
    seed: int | None = None,
    callback: Callback | None = None,
    return_info: bool = False,
    task: str | Task | None = None,
    defaults: str = "paper",
    **solver_options_,
):
    """Restore ``x`` from ``y = A x + sigma_y n`` with a diffusion prior.

    Args:
        y: (B, C', H', W') float measurement on the [0, 1] scale, finite, B >= 1.
        operator: the degradation ``A`` (an :class:`~pnp_restore.operators.base.Operator`; most solvers
            need a :class:`~pnp_restore.operators.base.LinearOperator`, see ``SolverSpec.linear``).
        prior: any object with ``denoise(x, sigma)``, e.g. from :func:`pnp_restore.priors.load`;
            one without ``sigmas(steps)`` gets :func:`~pnp_restore.priors.base.range_sigmas`.
        solver: a pixel solver of :data:`pnp_restore.solvers.SOLVERS` (``ddrm``, ``ddnm``, ``dps``,
            ``diffpir``, ``pnp_admm``, ``daps``, ``pigdm``, ``reddiff``, ``pnpdm``) or, with a latent
            prior, a latent one of :data:`~pnp_restore.solvers.LATENT_SPECS` (``latent_dpe``,
            ``latent_daps``, ``psld``).
        sigma_y: measurement noise std on the [0, 1] scale, >= 0.
        steps: number of steps in [1, :data:`~pnp_restore.solvers.common.MAX_STEPS`];
            ``None`` uses the solver's published default.
        seed: image i of the batch uses seed ``seed + i``; ``None`` is non-deterministic.
        callback: ``callback(info)`` after every step (``step, steps, sigma, x, x0, nfe``).
        return_info: also return ``{"nfe", "steps", "solver", "time_s", "seed", "sigma_y", "options",
            "defaults"}`` (``defaults``: ``"tuned"`` or ``"paper"``, the source actually used).
        task: a :class:`~pnp_restore.tasks.Task` (or its name, e.g. ``"inpainting"``) to use the
            paper's per-task hyper-parameters
            (:func:`pnp_restore.solvers.task_defaults`, e.g. DPS's zeta); explicit
            ``steps`` and options win over them.
        defaults: ``"paper"`` (the published per-task values above) or ``"tuned"``: the prior's
            tuned settings for (``solver``, ``task``) (:mod:`pnp_restore.tuned`; steps, options and
            noise schedule found by ``pnp-restore bench tune``) where it has them, else the paper's.
        **solver_options_: the solver's hyper-parameters (e.g. ``eta`` for ddrm, ``zeta`` for dps),
            checked by :func:`pnp_restore.solvers.validate_options`.

    Returns:
        x (B, C, H, W) on [0, 1], or ``(x, info)``.

    Raises:
        ShapeError: ``y`` is not a non-empty (B, C, H, W) float tensor of the operator's
            measurement shape, or the prior models another number of channels.
        ConfigError: unknown solver or option, an argument of the wrong type or range, a prior
            without ``denoise``, NaN/Inf in ``y`` or a ``y`` on the 0..255 scale.
        OperatorError: ``operator`` is not an Operator, is nonlinear for a solver that needs a linear one,
            or lacks an SVD the solver needs.
    """
    spec = solvers.spec(solver)
    if defaults not in tuned.DEFAULTS:
        raise ConfigError(f"defaults must be one of {', '.join(tuned.DEFAULTS)}; got {defaults!r}")
    found = tuned.entry(prior, solver, task) if defaults == "tuned" else None
    base = tuned.settings(found, steps) if found is not None else solvers.task_defaults(solver, task)
    task_steps = base.pop("steps", None)
    options = solvers.validate_options(solver, {**base, **solver_options_})
    if steps is None:
        steps = spec.default_steps if task_steps is None else task_steps
    args = solvers.validate_args(solver, sigma_y=sigma_y, steps=steps, seed=seed, callback=callback)
    counted = counting(prior)  # the one NFE counter; the solver checks the rest of the problem once
    start = time.perf_counter()
    x = spec.fn(y, operator, counted, **args, **options)
    if not return_info:
        return x
    info = {
        "nfe": counted.nfe,
        "steps": args["steps"],
        "solver": solver,
        "time_s": time.perf_counter() - start,
        "seed": seed,
        "sigma_y": args["sigma_y"],
        "options": options,
        "defaults": "tuned" if found is not None else "paper",
    }
    if found is not None and "sigmas" not in solver_options_:  # the tuned schedule: its parameters, not the list
        info["options"] = {k: v for k, v in options.items() if k != "sigmas"}
        info["schedule"] = found.get("schedule")
    return x, info


__all__ = ["restore", "solver_options"]
