"""Denoising (identity) and colorization (channel mean) operators with exact SVDs."""

from __future__ import annotations

import math

import torch

from ..errors import ShapeError
from .base import DecomposableOperator, Tensor, cast


class Denoising(DecomposableOperator):
    """The identity ``y = x``: plain Gaussian denoising. SVD: ``U = V = I``, ``s = 1``;
    everything else derives from it."""

    def singular_values(self, like: Tensor) -> Tensor:
        return like.real.new_ones(1, 1, 1, 1)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x

    def V(self, c: Tensor) -> Tensor:
        return c

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y

    def U(self, c: Tensor) -> Tensor:
        return c


def helmert(n: int) -> Tensor:
    """(n, n) orthogonal Helmert matrix, float64; its first row is ``(1, ..., 1) / sqrt(n)``."""
    h = torch.zeros(n, n, dtype=torch.float64)
    h[0] = 1 / math.sqrt(n)
    for k in range(1, n):
        h[k, :k] = 1 / math.sqrt(k * (k + 1))
        h[k, k] = -k / math.sqrt(k * (k + 1))
    return h


class Colorization(DecomposableOperator):
    """Gray-scale measurement ``y = mean_c x_c``: (B, C, H, W) -> (B, 1, H, W).

    The row ``(1, ..., 1) / C`` has one singular value ``1 / sqrt(C)``. Per pixel,
    ``V^T`` is the orthogonal Helmert matrix whose first row is ``(1, ..., 1) / sqrt(C)``,
    so coefficient channel 0 is the measured one and channels 1..C-1 (colour
    differences) have ``s = 0``; ``U = 1``. DDRM uses the same operator
    (weights 0.3333, 0.3334, 0.3333).

    Args:
        channels: number of image channels C (3 for RGB).
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = int(channels)
        self.register_buffer("helmert", helmert(self.channels))

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if x.shape[1] != self.channels:
            raise ShapeError(f"Colorization expects {self.channels}-channel images; got {x.shape[1]} channels")

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (y_shape[0], self.channels, *y_shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(1, keepdim=True)

    def adjoint(self, y: Tensor) -> Tensor:
        return (y / self.channels).expand(self.x_shape(tuple(y.shape))).clone()

    def singular_values(self, like: Tensor) -> Tensor:
        s = like.real.new_zeros(1, self.channels, 1, 1)
        s[:, 0] = 1 / math.sqrt(self.channels)
        return s

    def V_adjoint(self, x: Tensor) -> Tensor:
        return torch.einsum("kc,bchw->bkhw", cast(self.helmert, x), x)

    def V(self, c: Tensor) -> Tensor:
        return torch.einsum("kc,bkhw->bchw", cast(self.helmert, c), c)

    def U_adjoint(self, y: Tensor) -> Tensor:
        c = y.new_zeros(self.x_shape(tuple(y.shape)))
        c[:, :1] = y
        return c

    def U(self, c: Tensor) -> Tensor:
        return c[:, :1].clone()

    def __repr__(self) -> str:
        return f"Colorization(channels={self.channels})"
