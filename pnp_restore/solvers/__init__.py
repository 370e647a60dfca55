"""Training-free solvers: DDPM/DDIM, DPS, DDRM, DDNM(+), DiffPIR, PnP-ADMM.

Each restoration solver is a plain function
``solver(y, operator, prior, *, sigma_y=0.0, steps=..., seed=None, callback=None, x_init=None, **hyper) -> x``.
:data:`SOLVERS` maps names to them and :data:`SPECS` holds their metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
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
    """

    fn: Callable
    paper: str
    default_steps: int
    svd: str = "never"
    stochastic: bool = True

    def needs_svd(self, sigma_y: float = 0.0) -> bool:
        return self.svd == "always" or (self.svd == "noisy" and float(sigma_y) > 0)


SPECS: dict[str, SolverSpec] = {
    "ddrm": SolverSpec(ddrm, "Kawar et al., Denoising Diffusion Restoration Models, NeurIPS 2022", 20, "always"),
    "ddnm": SolverSpec(ddnm, "Wang et al., Zero-Shot Image Restoration Using DDNM, ICLR 2023", 100, "noisy"),
    "dps": SolverSpec(dps, "Chung et al., Diffusion Posterior Sampling, ICLR 2023", 1000),
    "diffpir": SolverSpec(diffpir, "Zhu et al., Denoising Diffusion Models for Plug-and-Play IR, CVPRW 2023", 100),
    "pnp_admm": SolverSpec(
        pnp_admm, "Venkatakrishnan et al., GlobalSIP 2013; Chan et al., IEEE TCI 2017", 100, stochastic=False
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
    "TASKS",
    "SolverSpec",
    "ddim",
    "ddnm",
    "ddpm",
    "ddrm",
    "diffpir",
    "dps",
    "get",
    "pnp_admm",
    "spec",
    "task_defaults",
]
