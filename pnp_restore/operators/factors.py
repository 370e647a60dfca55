"""Singular-value helpers shared by the operators with an SVD: one rank rule, one safe inverse."""

from __future__ import annotations

from typing import NamedTuple

import torch

Tensor = torch.Tensor


def truncate_singular_values(s: Tensor, size: int, dim: tuple[int, ...] | None = None) -> Tensor:
    """``s`` with the values below ``size * eps * max(s)`` set to 0: the numerical rank rule.

    As :func:`numpy.linalg.pinv` / ``matrix_rank`` (``size`` = the larger matrix side,
    ``eps`` of ``s``'s dtype); round-off singular values would otherwise blow up
    ``1 / s`` in the pseudo-inverse.

    Args:
        s: real singular values, >= 0.
        size: the size factor of the floor.
        dim: dimensions over which the maximum is taken (keeping the others, e.g. the
            batch of per-sample spectra); ``None``: all of ``s``.
    """
    top = s.max() if dim is None else s.amax(dim, keepdim=True)
    return torch.where(s > size * torch.finfo(s.dtype).eps * top, s, torch.zeros_like(s))


def safe_inverse(s: Tensor) -> Tensor:
    """1/s where s > 0, else 0 (the pseudo-inverse of a diagonal)."""
    return torch.where(s > 0, 1.0 / s.where(s > 0, torch.ones_like(s)), torch.zeros_like(s))


class Factors(NamedTuple):
    """A matrix ``A`` (m, n) and its full SVD ``A = U diag(s) V^T``; ``s`` zero-padded to length n."""

    A: Tensor
    U: Tensor
    s: Tensor
    V: Tensor


def svd_factors(matrix: Tensor) -> Factors:
    """Full SVD of a matrix (m, n), computed in float64, truncated by :func:`truncate_singular_values`."""
    a = matrix.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(a, full_matrices=True)
    s = truncate_singular_values(s, max(a.shape))
    padded = torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    padded[: s.numel()] = s
    return Factors(a, u, padded, vh.T)


__all__ = ["Factors", "safe_inverse", "svd_factors", "truncate_singular_values"]
