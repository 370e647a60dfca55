"""Inpainting: keep the observed pixels, zero the missing ones."""

from __future__ import annotations

import torch

from ..errors import ConfigError, ShapeError
from .base import DecomposableOperator, Tensor, cast


class Inpainting(DecomposableOperator):
    """``y = mask * x`` (same shape as ``x``, as in deepinv); 1 = observed, 0 = missing.

    The operator is diagonal, so its SVD is trivial: ``V = U = I`` and the singular
    values are the mask itself (soft masks in [0, 1] work too); forward, adjoint,
    ``pinv`` and ``prox`` all derive from it (:class:`~.base.DecomposableOperator`).

    Args:
        mask: (H, W), (1, 1, H, W), per-sample (B, 1, H, W) or (B, C, H, W)
            tensor/array, finite and >= 0 (see :mod:`.masks` to make one).
    """

    def __init__(self, mask) -> None:
        super().__init__()
        m = torch.as_tensor(mask).detach()
        if m.dim() == 2:
            m = m[None, None]
        if m.dim() != 4:
            raise ShapeError(
                f"mask must be (H, W), (1, 1, H, W), (B, 1, H, W) or (B, C, H, W); got shape {tuple(m.shape)}"
            )
        m = m.to(device="cpu", dtype=torch.float64)
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ConfigError("mask values must be finite and >= 0 (1 = observed, 0 = missing)")
        self.register_buffer("mask", m)

    def _check(self, x: Tensor) -> None:
        mb, mc, mh, mw = self.mask.shape
        b, c, h, w = x.shape
        if (mh, mw) != (h, w):
            raise ShapeError(f"mask is {mh}x{mw} but the image is {h}x{w}; resize the mask to the image size")
        if mb not in (1, b):
            raise ShapeError(f"mask has {mb} per-sample masks but the batch has {b} images; pass 1 or {b}")
        if mc not in (1, c):
            raise ShapeError(f"mask has {mc} channels but the image has {c}; pass 1 or {c}")

    def _m(self, like: Tensor) -> Tensor:
        self._check(like)
        return cast(self.mask, like)

    def singular_values(self, like: Tensor) -> Tensor:
        return self._m(like)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x

    def V(self, c: Tensor) -> Tensor:
        return c

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y * (self._m(y) > 0)

    def U(self, c: Tensor) -> Tensor:
        return c * (self._m(c) > 0)

    def __repr__(self) -> str:
        b, c, h, w = self.mask.shape
        observed = float((self.mask > 0).double().mean())
        return f"Inpainting(mask={'x'.join(map(str, (b, c, h, w)))}, observed={observed:.1%})"
