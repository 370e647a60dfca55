"""Shared pieces of the diffusion solvers.

The published algorithms are written for DDPM networks on [-1, 1] images in the
variance-preserving (VP) form ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``. Our priors
are [0, 1]-scale denoisers ``D(x, sigma)``. The two are the same model under

    sigma_net = 2 sigma,   ab = 1 / (1 + sigma_net^2),   x_vp = sqrt(ab) (2 x_ve - 1),
    x0_pm = 2 D(x_ve, sigma) - 1,   eps = (x_vp - sqrt(ab) x0_pm) / sqrt(1 - ab),

so each solver runs its paper's update verbatim in VP/[-1, 1] coordinates: the prior's
``vp(x_t, sigma) -> (x0, eps)`` (native for DDPM networks, derived from ``denoise`` otherwise,
see :mod:`pnp_restore.priors.base`) and the measurement ``y_pm = 2 y - A(1)`` of the [-1, 1]
image (:attr:`Run.y_pm`). Images are converted to [0, 1] only at the public boundary: the
solver's output, and the callback's ``x``/``x0`` (only when there is a callback).

Every solver opens with :func:`setup`, which checks the problem once and wraps the prior in
the one NFE counter (:class:`CountingPrior`); each module declares its :class:`SolverSpec`
next to the function, and :mod:`pnp_restore.solvers` lists them.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from .._rng import SampleRNG
from ..errors import ConfigError, DivergenceError, OperatorError, ShapeError
from ..operators.base import LinearOperator, Operator
from ..priors.base import Denoiser, Prior, range_sigmas, vp_from_denoise
from ..priors.base import vp_alpha_bar as alpha_bar  # VP alpha_bar of a [0, 1]-scale sigma (floats too)
from ..tasks import Task

Tensor = torch.Tensor
Callback = Callable[[dict], None]
Sigmas = Sequence[float] | Tensor  # an explicit noise schedule: list/tuple of floats or a 1-D tensor

#: Upper bound on ``steps`` (the published settings use at most 1000; 1e5 steps of the
#: smallest prior already take hours, and more is a typo rather than a setting).
MAX_STEPS = 100_000


@dataclass(frozen=True)
class Range:
    """A closed (or half-open) interval of allowed values; ``label`` replaces the generated text."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    label: str = ""

    def __contains__(self, v: float) -> bool:
        return (v > self.lo if self.lo_open else v >= self.lo) and v <= self.hi

    def __str__(self) -> str:
        if self.label:
            return self.label
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Choices:
    """The allowed values of a string option (e.g. a preset name); used like :class:`Range`."""

    values: tuple[str, ...]

    def __contains__(self, v: str) -> bool:
        return v in self.values

    def __str__(self) -> str:
        return f"({'one of ' + ', '.join(self.values)})"


#: Ranges of the arguments every solver takes (per-solver options: ``SolverSpec.ranges``).
COMMON_RANGES: dict[str, Range] = {
    "sigma_y": Range(0.0),
    "steps": Range(1, MAX_STEPS),
    "seed": Range(-(2**63), 2**63 - 1, label="in the int64 range"),
}
UNIT = Range(0.0, 1.0)
POSITIVE = Range(0.0, lo_open=True)


@dataclass(frozen=True)
class SolverSpec:
    """One registry entry: a solver and everything callers need to know about it.

    Attributes:
        name: the registry name (``restore(..., solver=name)``).
        fn: the solver function, ``fn(y, operator, prior, *, sigma_y, steps, seed, callback, ...)``.
        paper: citation.
        svd: when the operator needs an SVD: ``"never"``, ``"always"`` or ``"noisy"`` (sigma_y > 0).
        linear: whether the operator must be linear (a :class:`LinearOperator`: the solver uses
            A^T, A^+, prox or the SVD); ``False``: any differentiable :class:`Operator`.
        prior: what it uses of the prior: ``"denoise"`` (``denoise(x, sigma)`` only), ``"vp"``
            (the VP view ``vp(x_t, sigma)``, derived from ``denoise`` when the prior has none) or
            ``"vp+grad"`` (the same, differentiated through).
        stochastic: whether ``seed`` matters.
        ranges: allowed values of the numeric hyper-parameters (their types come from ``fn``'s
            annotations; see :func:`pnp_restore.solvers.validate_options`).
        tasks: the paper's per-task hyper-parameters (may include ``steps``), by :class:`Task`.
    """

    name: str
    fn: Callable
    paper: str
    svd: Literal["never", "always", "noisy"] = "never"
    linear: bool = True
    prior: Literal["denoise", "vp", "vp+grad"] = "vp"
    stochastic: bool = True
    ranges: Mapping[str, Range | Choices] = field(default_factory=dict)
    tasks: Mapping[Task, Mapping[str, float]] = field(default_factory=dict)

    @property
    def default_steps(self) -> int:
        """The published number of steps: the default of ``fn``'s ``steps`` (its one source)."""
        return inspect.signature(self.fn).parameters["steps"].default

    def needs_svd(self, sigma_y: float = 0.0) -> bool:
        return self.svd == "always" or (self.svd == "noisy" and float(sigma_y) > 0)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _numbers(v) -> bool:
    return (isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim == 1)) and all(map(_real, v))


def _same(v):
    return v


#: type -> (what to call it in messages, accepts(value), convert(value)) for :func:`check_value`.
_KINDS: dict[object, tuple[str, Callable[[object], bool], Callable]] = {
    type(None): ("None", lambda v: v is None, _same),
    bool: ("True or False", lambda v: isinstance(v, (bool, np.bool_)), bool),
    int: ("an integer", _integer, int),
    float: ("a number", _real, float),
    str: ("a string", lambda v: isinstance(v, str), str),
    Tensor: ("a tensor", lambda v: isinstance(v, Tensor), _same),
    Sequence: ("a list of numbers", _numbers, lambda v: [float(x) for x in v]),
    Callable: ("a function", callable, _same),
}


#: the kinds a range (or choices) applies to
_RANGED = (int, float, str)


def check_value(name: str, value, hint, rng: Range | Choices | None = None):
    """``value`` checked against the type ``hint`` (``float``, ``int | None``, ``Sigmas``...) and ``rng``.

    Returns it converted (ints to float where a float is expected, tuples to lists of floats);
    raises :class:`ConfigError` with one line saying what is allowed. ``rng`` applies to ints and
    floats (a :class:`Range`) and to strings (a :class:`Choices`). A hint made of other types passes
    ``value`` through unchecked.
    """
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds = [typing.get_origin(k) or k for k in (typing.get_args(hint) if union else (hint,))]
    if not all(k in _KINDS for k in kinds):
        return value
    for kind in kinds:
        _, accepts, convert = _KINDS[kind]
        if accepts(value):
            out = convert(value)
            if rng is None or kind not in _RANGED or out in rng:
                return out
    allowed = " or ".join(_KINDS[k][0] + (f" {rng}" if rng is not None and k in _RANGED else "") for k in kinds)
    shown = repr(value)
    if len(shown) > 60:
        shown = f"{type(value).__name__} {shown[:40]}..."
    raise ConfigError(f"{name} must be {allowed}; got {shown}")


def schedule(prior, steps: int, sigmas=None) -> list[float]:
    """Decreasing [0, 1]-scale noise levels with a final 0 appended (``steps + 1`` floats).

    ``sigmas`` overrides the prior's default ``prior.sigmas(steps)``; a trailing 0 in it is
    accepted. A bare denoiser (an object with only ``denoise``) gets the schedule a
    :class:`~pnp_restore.priors.base.Prior` subclass inherits (:func:`~pnp_restore.priors.base.range_sigmas`).
    """
    if sigmas is None:
        steps = check_value("steps", steps, int, COMMON_RANGES["steps"])
        own = getattr(prior, "sigmas", None)
        s = own(steps) if callable(own) else range_sigmas(prior, steps)
        s = torch.as_tensor(s, dtype=torch.float64).flatten()
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


class CountingPrior:
    """The prior as the solvers see it, counting network evaluations (the NFE) in one place.

    ``denoise(x, sigma)`` (checked to return a tensor shaped like ``x``) and ``vp(x_t, sigma)``
    each count one evaluation; ``vp`` is the prior's own when it has one (DDPM networks),
    else derived from ``denoise``. Other attributes (``sigmas``, ``channels``...) are the prior's.
    Build it with :func:`counting`, which validates the prior.
    """

    def __init__(self, prior: Denoiser) -> None:
        self.prior = prior
        self.nfe = 0
        own = getattr(type(prior), "vp", None)
        self._native_vp = own is not None and own is not Prior.vp

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        self.nfe += 1
        return denoise(self.prior, x, sigma)

    def vp(self, x_t: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` on [-1, 1] for the VP iterate ``x_t`` on [-1, 1] at [0, 1]-scale ``sigma``."""
        if not self._native_vp:
            return vp_from_denoise(self.denoise, x_t, sigma)
        self.nfe += 1
        return self.prior.vp(x_t, sigma)

    def __getattr__(self, name: str):
        return getattr(self.prior, name)


def counting(prior: Denoiser) -> CountingPrior:
    """``prior`` wrapped in a :class:`CountingPrior` (itself if it already is one), after :func:`check_prior`."""
    if isinstance(prior, CountingPrior):
        return prior
    check_prior(prior)
    return CountingPrior(prior)


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


def require_svd(operator: LinearOperator, solver: str | SolverSpec, sigma_y: float = 0.0) -> None:
    """Raise :class:`OperatorError` unless ``operator`` has the SVD hooks.

    The message names the registry's solvers that work without an SVD at this ``sigma_y``.
    """
    if getattr(operator, "has_svd", False):
        return
    from . import SPECS  # the registry imports this module

    spec = solver if isinstance(solver, SolverSpec) else SPECS[solver]
    solver = spec.name
    what = "with sigma_y > 0 " if spec.svd == "noisy" else ""
    no_svd = [n for n, s in SPECS.items() if not s.needs_svd(sigma_y)]
    raise OperatorError(
        f"{solver} {what}needs an operator with an SVD and {type(operator).__name__} has none; "
        f"use one of {', '.join(no_svd)}, or wrap a small operator in DenseSVDOperator"
    )


def check_prior(prior) -> None:
    """Raise :class:`ConfigError` unless ``prior`` has a ``denoise(x, sigma)`` method."""
    if callable(getattr(prior, "denoise", None)):
        return
    if isinstance(prior, str):
        raise ConfigError(
            f"prior is the string {prior!r}, not a prior; load it first: prior = pnp_restore.priors.load({prior!r})"
        )
    raise ConfigError(
        f"prior must be an object with a denoise(x, sigma) method (e.g. from pnp_restore.priors.load); "
        f"got {type(prior).__name__}"
    )


def denoise(prior, x: Tensor, sigma) -> Tensor:
    """``prior.denoise(x, sigma)``, checked to be a tensor of ``x``'s shape."""
    out = prior.denoise(x, sigma)
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"the prior's denoise(x, sigma) returned {type(out).__name__}; it must return a torch tensor shaped like x"
        )
    if out.shape != x.shape:
        raise ShapeError(
            f"the prior's denoise(x, sigma) returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; "
            "it must return E[x0 | x] shaped like x"
        )
    return out


#: ``|y|`` beyond this many times the largest ``|A(1)|`` cannot come from a [0, 1] image plus
#: reasonable noise (for the usual operators, whose ``A(1)`` is 1: ``|y| > 1.5``).
Y_SLACK = 1.5


def check_measurement(y: Tensor, operator: Operator, prior: Denoiser) -> tuple[tuple[int, ...], Tensor]:
    """Shape (B, C, H, W) of the images behind ``y`` and ``A(1)`` (shaped like ``y``), after checking the problem.

    Raises :class:`OperatorError` if ``operator`` is not an :class:`Operator`,
    :class:`ShapeError` if ``y`` is not a non-empty (B, C', H', W') float tensor of the shape
    ``operator`` produces or ``prior.channels`` differs from the images', and
    :class:`ConfigError` if ``y`` has NaN/Inf or values no [0, 1] image gives (a 0..255 image).
    """
    if not isinstance(operator, Operator):
        raise OperatorError(
            f"operator must be a pnp_restore.operators Operator; got {type(operator).__name__}: wrap a linear "
            "function f (or obj.forward) as FunctionOperator(f, in_shape=(C, H, W)), a nonlinear one as "
            "NonlinearOperator(f, in_shape=(C, H, W))"
        )
    if not isinstance(y, Tensor) or y.dim() != 4 or not y.is_floating_point():
        what = f"shape {tuple(y.shape)} dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"y must be a float tensor of shape (B, C, H, W); got {what}")
    if y.numel() == 0:
        raise ShapeError(f"y is empty (shape {tuple(y.shape)}); pass at least one measurement")
    if not bool(torch.isfinite(y).all()):
        raise ConfigError("y contains NaN/Inf; clean or mask the measurement first")
    x_shape = tuple(operator.x_shape(tuple(y.shape)))
    ones = operator.forward(torch.ones(x_shape, device=y.device, dtype=y.dtype))
    if tuple(ones.shape) != tuple(y.shape):
        raise ShapeError(
            f"{type(operator).__name__} produces measurements of shape {tuple(ones.shape)}; got y of shape "
            f"{tuple(y.shape)} (a FunctionOperator whose output size differs from its input needs in_shape=)"
        )
    top, peak = Y_SLACK * max(1.0, float(ones.abs().max())), float(y.abs().max())
    if peak > top:
        raise ConfigError(
            f"y reaches {peak:.4g}, far outside what {type(operator).__name__} gives for [0, 1] images "
            f"(|y| <= {top:.3g}): y looks like a 0..255 image; divide it by 255"
        )
    channels = getattr(prior, "channels", None)
    if channels is not None and x_shape[1] != channels:
        raise ShapeError(
            f"the prior models {channels}-channel images but the operator produces {x_shape[1]}-channel ones; "
            "use a matching prior or operator"
        )
    return x_shape, ones


class Steps:
    """Per-step bookkeeping shared by all solvers: NaN/Inf check and callback.

    Args:
        solver: name used in messages.
        steps: number of steps (for "step i/n").
        callback: ``callback(info)`` with ``step, steps, sigma, x, x0, nfe`` ([0, 1] images).
        nfe: function returning the current NFE count.
        hint: what to try when the iterate diverges.
        pm1: the iterates are on [-1, 1] (converted to [0, 1] for the callback).
    """

    def __init__(
        self, solver: str, steps: int, callback: Callback | None, nfe: Callable[[], int], hint: str, pm1: bool = True
    ) -> None:
        self.solver, self.steps, self.callback, self.nfe, self.hint, self.pm1 = solver, steps, callback, nfe, hint, pm1

    def __call__(self, i: int, sigma: float, x: Tensor, x0: Tensor | None = None, scale: float = 1.0, **extra) -> None:
        """Check and report step ``i`` (0-based). ``x / scale`` and ``x0`` are images in the solver's range
        ([-1, 1] if ``pm1``); ``scale`` is e.g. ``sqrt(ab)`` for a VP iterate."""
        bad = not bool(torch.isfinite(x).all()) or (x0 is not None and not bool(torch.isfinite(x0).all()))
        if bad:
            raise DivergenceError(
                f"{self.solver} diverged at step {i + 1}/{self.steps} (sigma={sigma:.4g}): "
                f"NaN/Inf in the iterate; {self.hint}"
            )
        if self.callback is None:
            return
        x = x / scale if scale != 1.0 else x
        if self.pm1:
            x, x0 = from_pm1(x), (None if x0 is None else from_pm1(x0))
        info = {"step": i, "steps": self.steps, "sigma": sigma, "x": x, "x0": x0, "nfe": self.nfe()}
        info.update(extra)
        self.callback(info)


@dataclass
class Run:
    """A checked problem, as :func:`setup` gives it to a solver.

    Attributes:
        solver: the registry name.
        operator: the degradation.
        x_shape: (B, C, H, W) of the images behind ``y``.
        y: the measurement on the [0, 1] scale.
        ones: ``A(1)``, shaped like ``y``.
        sigmas: the noise levels (for the diffusion solvers ``steps + 1`` floats ending in 0).
        den: the prior behind the one NFE counter.
        rng: per-sample noise (None for deterministic solvers).
        callback: the user's callback or None.
    """

    solver: str
    operator: Operator
    x_shape: tuple[int, ...]
    y: Tensor
    ones: Tensor
    sigmas: list[float]
    den: CountingPrior
    rng: SampleRNG | None
    callback: Callback | None

    @property
    def y_pm(self) -> Tensor:
        """The measurement of the [-1, 1] image: ``A(2 x - 1) = 2 y - A(1)`` (A linear only)."""
        if not self.operator.linear:
            raise OperatorError(f"{self.solver} uses y_pm, which only a linear operator has")
        return 2 * self.y - self.ones

    def residual(self, x0_pm: Tensor) -> Tensor:
        """``y - A(x0)`` on the [-1, 1] measurement scale for a [-1, 1] image ``x0_pm``.

        Linear: ``y_pm - A x0_pm``; otherwise ``2 (y - A((x0_pm + 1) / 2))``, the same quantity
        (the factor 2 keeps the papers' step sizes, which are set on [-1, 1]).
        """
        if self.operator.linear:
            return self.y_pm - self.operator.forward(x0_pm)
        return 2 * (self.y - self.operator.forward(from_pm1(x0_pm)))

    def zeros(self) -> Tensor:
        """A zero image batch on ``y``'s device and dtype."""
        return torch.zeros(self.x_shape, device=self.y.device, dtype=self.y.dtype)

    def steps(self, total: int, hint: str, pm1: bool = True) -> Steps:
        """The per-step check/callback for ``total`` steps (see :class:`Steps`)."""
        return Steps(self.solver, total, self.callback, lambda: self.den.nfe, hint, pm1)


#: ``levels(prior, steps, sigmas) -> noise levels``: how a solver turns ``steps``/``sigmas`` into its schedule.
Levels = Callable[[Denoiser, int, Sigmas | None], list[float]]


def setup(
    solver: str | SolverSpec,
    y: Tensor,
    operator: Operator,
    prior: Denoiser,
    *,
    sigma_y: float,
    steps: int,
    sigmas: Sigmas | None,
    seed: int | None,
    callback: Callback | None,
    levels: Levels | None = None,
) -> Run:
    """Check the problem once and prepare what every solver starts from.

    ``solver`` is a registry name or the solver's own :class:`SolverSpec` (a solver module may
    pass its ``SPEC``, so it runs before it is listed in the registry).
    Checks the prior (:func:`check_prior`), ``y`` and the operator (:func:`check_measurement`),
    its linearity and the SVD the registry says ``solver`` needs at ``sigma_y`` (:func:`require_svd`);
    then the noise levels: ``levels(prior, steps, sigmas)`` (default :func:`schedule`).
    """
    from . import SPECS  # the registry imports the solver modules, which import this one

    spec = solver if isinstance(solver, SolverSpec) else SPECS[solver]
    solver = spec.name
    den = counting(prior)
    x_shape, ones = check_measurement(y, operator, den)
    if spec.linear and not operator.linear:
        others = [n for n, s in SPECS.items() if not s.linear]
        raise OperatorError(
            f"{solver} needs a linear operator and {type(operator).__name__} is nonlinear; use one of {', '.join(others)}"
        )
    if spec.needs_svd(sigma_y):
        require_svd(operator, spec, sigma_y)
    sig = (levels or schedule)(den, steps, sigmas)
    rng = SampleRNG(seed, x_shape[0]) if spec.stochastic else None
    return Run(solver, operator, x_shape, y, ones, sig, den, rng, callback)


__all__ = [
    "COMMON_RANGES",
    "Choices",
    "MAX_STEPS",
    "Range",
    "Sigmas",
    "POSITIVE",
    "Run",
    "SolverSpec",
    "Steps",
    "UNIT",
    "CountingPrior",
    "counting",
    "setup",
    "alpha_bar",
    "check_measurement",
    "check_prior",
    "check_value",
    "check_x_init",
    "denoise",
    "from_pm1",
    "initial_vp",
    "require_svd",
    "schedule",
    "to_pm1",
]
