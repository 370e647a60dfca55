"""Composition of linear operators: ``(outer @ inner)(x) = outer(inner(x))``."""

from __future__ import annotations

from .base import LinearOperator, Tensor


class Composition(LinearOperator):
    """``x -> outer(inner(x))``; adjoint ``inner^T(outer^T(y))``.

    No SVD (the product of two SVDs is not one); ``pinv`` and ``prox`` use the
    generic conjugate-gradient solvers of :class:`LinearOperator`. Usually made
    with ``outer @ inner``.
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        super().__init__()
        self.outer, self.inner = outer, inner

    def __call__(self, x: Tensor) -> Tensor:
        return self.outer(self.inner(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.inner.x_shape(self.outer.x_shape(tuple(y_shape)))

    def __repr__(self) -> str:
        return f"Composition({self.outer!r}, {self.inner!r})"
