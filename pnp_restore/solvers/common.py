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
import numbers
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._rng import SampleRNG
from ..errors import ConfigError, DivergenceError, OperatorError, ShapeError
from ..operators.base import LinearOperator
from ..priors.base import range_sigmas
from ..priors.base import vp_alpha_bar as alpha_bar  # VP alpha_bar of a [0, 1]-scale sigma (floats too)

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


#: Ranges of the arguments every solver takes (per-solver options: ``SolverSpec.ranges``).
COMMON_RANGES: dict[str, Range] = {
    "sigma_y": Range(0.0),
    "steps": Range(1, MAX_STEPS),
    "seed": Range(-(2**63), 2**63 - 1, label="in the int64 range"),
}


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
    Tensor: ("a tensor", lambda v: isinstance(v, Tensor), _same),
    Sequence: ("a list of numbers", _numbers, lambda v: [float(x) for x in v]),
    Callable: ("a function", callable, _same),
}


def check_value(name: str, value, hint, rng: Range | None = None):
    """``value`` checked against the type ``hint`` (``float``, ``int | None``, ``Sigmas``...) and ``rng``.

    Returns it converted (ints to float where a float is expected, tuples to lists of floats);
    raises :class:`ConfigError` with one line saying what is allowed. ``rng`` applies to ints and
    floats. A hint made of other types passes ``value`` through unchecked.
    """
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds = [typing.get_origin(k) or k for k in (typing.get_args(hint) if union else (hint,))]
    if not all(k in _KINDS for k in kinds):
        return value
    for kind in kinds:
        _, accepts, convert = _KINDS[kind]
        if accepts(value):
            out = convert(value)
            if rng is None or kind not in (int, float) or out in rng:
                return out
    allowed = " or ".join(_KINDS[k][0] + (f" {rng}" if rng is not None and k in (int, float) else "") for k in kinds)
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
        return to_pm1(denoise(self.prior, from_pm1(x), sigma))

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


def check_measurement(y: Tensor, operator: LinearOperator, prior) -> tuple[int, ...]:
    """Shape (B, C, H, W) of the images behind ``y``, after checking the problem.

    Raises :class:`ConfigError` if ``prior`` has no ``denoise`` (:func:`check_prior`),
    :class:`OperatorError` if ``operator`` is not a :class:`LinearOperator`,
    :class:`ShapeError` if ``y`` is not a non-empty (B, C', H', W') float tensor of the shape
    ``operator`` produces or ``prior.channels`` differs from the images', and
    :class:`ConfigError` if ``y`` has NaN/Inf or values no [0, 1] image gives (a 0..255 image).
    """
    check_prior(prior)
    if not isinstance(operator, LinearOperator):
        raise OperatorError(
            f"operator must be a pnp_restore.operators LinearOperator; got {type(operator).__name__}: wrap a linear "
            "function f (or obj.forward) as FunctionOperator(f, in_shape=(C, H, W))"
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
    return x_shape


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
    "COMMON_RANGES",
    "MAX_STEPS",
    "Range",
    "Sigmas",
    "Steps",
    "VPDenoiser",
    "alpha_bar",
    "check_measurement",
    "check_prior",
    "check_value",
    "check_x_init",
    "denoise",
    "from_pm1",
    "initial_vp",
    "measurement_to_pm1",
    "require_svd",
    "schedule",
    "to_pm1",
]
