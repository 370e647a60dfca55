"""Training-free solvers: DDPM/DDIM, DPS, DDRM, DDNM(+), DiffPIR, PnP-ADMM.

Each restoration solver is a plain function
``solver(y, operator, prior, *, sigma_y=0.0, steps=..., seed=None, callback=None, x_init=None, **hyper) -> x``.
:data:`SOLVERS` maps names to them and :data:`SPECS` holds their metadata.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError
from .common import COMMON_RANGES, Range, check_value
from .ddnm import ddnm
from .ddpm import ddim, ddpm
from .ddrm import ddrm
from .diffpir import DIFFPIR_PARAMS, diffpir, diffpir_timesteps  # noqa: F401
from .dps import DPS_SCALES, dps  # noqa: F401
from .pnp_admm import pnp_admm


@dataclass(frozen=True)
class SolverSpec:
    """What a solver needs and where it comes from.

    Attributes:
        fn: the solver function.
        paper: citation.
        default_steps: the published number of steps (denoiser calls).
        svd: when the operator needs an SVD: ``"never"``, ``"always"`` or ``"noisy"`` (sigma_y > 0).
        stochastic: whether ``seed`` matters.
        ranges: allowed values of the numeric hyper-parameters (their types come from ``fn``'s
            annotations; see :func:`validate_options`).
    """

    fn: Callable
    paper: str
    default_steps: int
    svd: str = "never"
    stochastic: bool = True
    ranges: dict[str, Range] = field(default_factory=dict)

    def needs_svd(self, sigma_y: float = 0.0) -> bool:
        return self.svd == "always" or (self.svd == "noisy" and float(sigma_y) > 0)


_UNIT = Range(0.0, 1.0)
_POSITIVE = Range(0.0, lo_open=True)

SPECS: dict[str, SolverSpec] = {
    "ddrm": SolverSpec(
        ddrm, "Kawar et al., Denoising Diffusion Restoration Models, NeurIPS 2022", 20, "always",
        ranges={"eta": _UNIT, "eta_b": _UNIT},
    ),
    "ddnm": SolverSpec(
        ddnm, "Wang et al., Zero-Shot Image Restoration Using DDNM, ICLR 2023", 100, "noisy",
        ranges={"eta": _UNIT, "travel_length": Range(1), "travel_repeat": Range(1)},
    ),
    "dps": SolverSpec(dps, "Chung et al., Diffusion Posterior Sampling, ICLR 2023", 1000, ranges={"zeta": Range(0.0)}),
    "diffpir": SolverSpec(
        diffpir, "Zhu et al., Denoising Diffusion Models for Plug-and-Play IR, CVPRW 2023", 100,
        ranges={"lam": _POSITIVE, "zeta": _UNIT},
    ),
    "pnp_admm": SolverSpec(
        pnp_admm, "Venkatakrishnan et al., GlobalSIP 2013; Chan et al., IEEE TCI 2017", 100, stochastic=False,
        ranges={"sigma_max": _POSITIVE, "sigma_min": _POSITIVE, "anneal": _UNIT},
    ),
}

#: name -> restoration solver function
SOLVERS: dict[str, Callable] = {name: spec.fn for name, spec in SPECS.items()}


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}")


#: Tasks with published per-task hyper-parameters (the names of DPS's configs).
TASKS = ("super_resolution", "inpainting", "gaussian_deblur", "motion_deblur")


def task_defaults(name: str, task: str | None) -> dict:
    """The paper's hyper-parameters of solver ``name`` for ``task`` (may include ``steps``).

    DPS tunes ``zeta`` per task (:data:`DPS_SCALES`) and DiffPIR ``lam``, ``zeta`` and
    the number of steps (:data:`DIFFPIR_PARAMS`); the other solvers publish one setting,
    so this is ``{}`` for them and for ``task=None``.
    """
    spec(name)
    if task is None:
        return {}
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)} (or None)")
    if name == "dps":
        return {"zeta": DPS_SCALES[task]}
    if name == "diffpir":
        return dict(DIFFPIR_PARAMS[task])
    return {}


#: Arguments every solver takes that are not hyper-parameters (``restore`` passes them itself).
COMMON = ("y", "operator", "prior", "denoiser", "sigma_y", "steps", "seed", "callback")


def options(name: str) -> list[str]:
    """The hyper-parameters solver ``name`` accepts besides the common arguments."""
    return [p for p in inspect.signature(get(name)).parameters if p not in COMMON]


def _check(name: str, values: dict) -> dict:
    """``values`` checked against solver ``name``'s annotations and ranges (names assumed valid)."""
    hints = typing.get_type_hints(get(name))
    ranges = {**COMMON_RANGES, **spec(name).ranges}
    return {k: check_value(k, v, hints.get(k), ranges.get(k)) for k, v in values.items()}


def validate_options(solver: str, options_: dict) -> dict:
    """Check solver hyper-parameters; returns them converted (e.g. int -> float for float ones).

    Names must be options of ``solver`` (:func:`options`), types those of its signature and
    numbers inside ``SPECS[solver].ranges``. Raises :class:`ConfigError` with one line, e.g.
    ``eta must be a number in [0, 1]; got 'abc'``.
    """
    valid = options(solver)
    common = sorted(set(options_) & set(COMMON))
    if common:
        name = common[0]
        raise ConfigError(f"{name} is not a solver option; pass it as restore(..., {name}=...) (or its --option)")
    unknown = sorted(set(options_) - set(valid))
    if unknown:
        raise ConfigError(f"solver {solver!r} has no option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return _check(solver, options_)


def validate_args(solver: str, **args) -> dict:
    """The common arguments (``sigma_y``, ``steps``, ``seed``, ``callback``) checked like options."""
    return _check(solver, args)


def get(name: str) -> Callable:
    """The solver function called ``name`` (raises :class:`ConfigError` if unknown)."""
    if name not in SOLVERS:
        raise _unknown(name)
    return SOLVERS[name]


def spec(name: str) -> SolverSpec:
    """The :class:`SolverSpec` of solver ``name``."""
    if name not in SPECS:
        raise _unknown(name)
    return SPECS[name]


__all__ = [
    "DIFFPIR_PARAMS",
    "DPS_SCALES",
    "SOLVERS",
    "SPECS",
    "COMMON",
    "TASKS",
    "SolverSpec",
    "ddim",
    "ddnm",
    "ddpm",
    "ddrm",
    "diffpir",
    "dps",
    "get",
    "options",
    "pnp_admm",
    "spec",
    "task_defaults",
    "validate_args",
    "validate_options",
]
