"""Degradation operators (the physics): forward, adjoint, pseudo-inverse, prox, SVD."""

from .base import DenseSVDOperator, FunctionOperator, LinearOperator, conjugate_gradient  # noqa: F401
