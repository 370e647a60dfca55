"""Conjugate gradient and the one configuration of the operators' generic ``pinv`` and ``prox``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class CGConfig:
    """Iteration caps and relative tolerances of the conjugate-gradient :meth:`pinv` and :meth:`prox`
    of operators without an SVD (the preconditioner is the operator's ``cg_preconditioner``).

    The prox runs far below what a fit needs because a CG result short of convergence is chaotic
    in its input: at ``lam = rho sigma_y^2 ~ 1e-8`` (DiffPIR's first steps) a 1e-16 change of ``z``
    moved a 200-step result by 9e-4, breaking "batch == single runs". Hard problems (61x61 kernels
    at lam <= 1e-4) run to the cap; give one operator a lower one for speed with
    ``op.cg = dataclasses.replace(op.cg, prox_max_iter=200)``.

    Attributes:
        prox_max_iter: iteration cap of ``prox``.
        prox_tol: relative residual at which ``prox`` stops; ``None``: 1e-12 in float64, 1e-6 otherwise.
        pinv_max_iter, pinv_tol: defaults of ``pinv(y, max_iter, tol)``.
    """

    prox_max_iter: int = 1000
    prox_tol: float | None = None
    pinv_max_iter: int = 200
    pinv_tol: float = 1e-6

    def prox_tolerance(self, dtype: torch.dtype) -> float:
        """:attr:`prox_tol`, or its per-precision default for ``dtype``."""
        if self.prox_tol is not None:
            return self.prox_tol
        return 1e-12 if dtype == torch.float64 else 1e-6


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product, shape (B, 1, 1, 1)."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-6,
    precond: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply``.

    (Preconditioned) conjugate gradient (Hestenes & Stiefel, 1952; Saad, *Iterative
    Methods for Sparse Linear Systems*, 2003, Alg. 9.1). Batched and per-sample
    independent: each sample has its own step sizes and freezes once its relative
    residual ``||b - apply(x)|| / ||b||`` (the recurrence's, unpreconditioned) is below
    ``tol``, so a batch gives the single runs' results. Started from zero on a
    consistent semi-definite system without ``precond``, CG returns the
    minimum-norm solution.

    Args:
        apply: the operator, (B, ...) -> (B, ...), acting on each sample separately.
        b: (B, ...) right-hand side.
        x0: optional start (default zero).
        max_iter: iteration cap (the result is then returned unconverged).
        tol: relative residual at which a sample stops.
        precond: optional ``r -> M^{-1} r`` for a symmetric positive definite ``M``
            approximating ``apply`` (per-sample, like ``apply``).
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    z = r if precond is None else precond(r)
    p = z.clone()
    rs = _dot(r, r)
    rz = rs if precond is None else _dot(r, z)
    limit = tol**2 * _dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
    one = torch.ones_like(rz)
    for _ in range(max_iter):
        active = rs > limit
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = _dot(p, ap)
        active = active & (pap > 0) & (rz > 0)
        alpha = torch.where(active, rz / pap.where(active, one), 0)
        x = x + alpha * p
        r = r - alpha * ap
        z = r if precond is None else precond(r)
        rs_new = _dot(r, r)
        rz_new = rs_new if precond is None else _dot(r, z)
        beta = torch.where(active, rz_new / rz.where(active, one), 0)
        # A frozen sample keeps x and r: its p is reset but never used (alpha = 0).
        p = z + beta * p
        rs, rz = torch.where(active, rs_new, rs), torch.where(active, rz_new, rz)
    return x


__all__ = ["CGConfig", "conjugate_gradient"]
