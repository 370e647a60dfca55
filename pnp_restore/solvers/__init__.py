"""Training-free solvers: DDPM/DDIM, DPS, DDRM, DDNM(+), DiffPIR, PnP-ADMM, DAPS, ΠGDM, RED-diff, PnP-DM;
latent ones (LatentDAPS, PSLD, decode-prox-encode) for latent priors.

Each restoration solver is a plain function
``solver(y, operator, prior, *, sigma_y=0.0, steps=..., seed=None, callback=None, x_init=None, **hyper) -> x``
and its module declares a :class:`SolverSpec` (``SPEC``) next to it: its paper, what it needs from the
operator (SVD, linearity) and the prior, its options' ranges and its per-task settings; the default
number of steps is the function's own ``steps`` default. :data:`REGISTRY` lists the specs; adding a
solver is one module plus one line there.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from ..errors import ConfigError
from ..tasks import Task, parse_task
from . import daps as _daps
from . import ddnm as _ddnm
from . import ddrm as _ddrm
from . import diffpir as _diffpir
from . import dps as _dps
from . import latent_daps as _latent_daps
from . import latent_dpe as _latent_dpe
from . import pigdm as _pigdm
from . import pnp_admm as _pnp_admm
from . import pnpdm as _pnpdm
from . import psld as _psld
from . import reddiff as _reddiff
from .common import COMMON_RANGES, SolverSpec, check_value
from .daps import DAPS_PRESETS, DAPS_TASKS, daps
from .ddnm import ddnm
from .ddpm import ddim, ddpm
from .ddrm import ddrm
from .diffpir import DIFFPIR_PARAMS, diffpir, diffpir_timesteps  # noqa: F401
from .dps import DPS_SCALES, dps
from .pigdm import pigdm
from .pnp_admm import pnp_admm
from .pnpdm import PNPDM_TASKS, pnpdm
from .reddiff import REDDIFF_PARAMS, reddiff

#: The restoration solvers, in the order they are offered.
REGISTRY: tuple[SolverSpec, ...] = (
    _ddrm.SPEC, _ddnm.SPEC, _dps.SPEC, _diffpir.SPEC, _pnp_admm.SPEC,
    _daps.SPEC, _pigdm.SPEC, _reddiff.SPEC, _pnpdm.SPEC,
)  # fmt: skip

#: The latent solvers: they take a latent prior (:class:`~pnp_restore.priors.latent.LatentPrior`:
#: ``denoise`` in latent space, ``encode``/``decode``) and restore in its latent space.
LATENT_REGISTRY: tuple[SolverSpec, ...] = (_latent_dpe.SPEC, _latent_daps.SPEC, _psld.SPEC)

#: name -> :class:`SolverSpec` of the pixel solvers (:data:`REGISTRY`)
SPECS: dict[str, SolverSpec] = {s.name: s for s in REGISTRY}
#: name -> :class:`SolverSpec` of the latent solvers (:data:`LATENT_REGISTRY`)
LATENT_SPECS: dict[str, SolverSpec] = {s.name: s for s in LATENT_REGISTRY}

#: name -> restoration solver function
SOLVERS: dict[str, Callable] = {s.name: s.fn for s in REGISTRY}

#: Arguments every solver takes that are not hyper-parameters (``restore`` passes them itself).
COMMON = ("y", "operator", "prior", "denoiser", "sigma_y", "steps", "seed", "callback")


def spec(name: str) -> SolverSpec:
    """The :class:`SolverSpec` of solver ``name``, pixel or latent (raises :class:`ConfigError` if unknown)."""
    found = SPECS.get(name) or LATENT_SPECS.get(name)
    if found is None:
        raise ConfigError(f"unknown solver {name!r}; choose one of: {', '.join([*SPECS, *LATENT_SPECS])}")
    return found


def get(name: str) -> Callable:
    """The solver function called ``name`` (raises :class:`ConfigError` if unknown)."""
    return spec(name).fn


def task_defaults(name: str, task: str | Task | None) -> dict:
    """The paper's hyper-parameters of solver ``name`` for ``task`` (may include ``steps``).

    DPS tunes ``zeta`` per task (:data:`DPS_SCALES`), DiffPIR ``lam``, ``zeta`` and the number
    of steps (:data:`DIFFPIR_PARAMS`), DAPS its Langevin (:data:`DAPS_TASKS`), RED-diff its step
    size (:data:`REDDIFF_PARAMS`) and PnP-DM its coupling schedule (:data:`PNPDM_TASKS`); the other
    solvers publish one setting, so this is ``{}`` for them, for tasks without published settings
    and for ``task=None``.
    """
    tasks = spec(name).tasks
    task = parse_task(task)
    return {} if task is None else dict(tasks.get(task, {}))


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


__all__ = [
    "LATENT_REGISTRY",
    "LATENT_SPECS",
    "DAPS_PRESETS",
    "DAPS_TASKS",
    "DIFFPIR_PARAMS",
    "PNPDM_TASKS",
    "REDDIFF_PARAMS",
    "daps",
    "pigdm",
    "pnpdm",
    "reddiff",
    "DPS_SCALES",
    "REGISTRY",
    "SOLVERS",
    "SPECS",
    "COMMON",
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
