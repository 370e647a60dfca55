"""Priors: denoisers ``denoise(x, sigma) -> E[x0 | x]`` on the [0, 1] image scale."""

from .base import Prior, karras_sigmas, sigma_tensor  # noqa: F401
