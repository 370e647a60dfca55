"""Degradation operators (the physics): forward, adjoint, pseudo-inverse, prox, SVD."""

from __future__ import annotations

from ..errors import ConfigError, PnPRestoreError
from .base import DenseSVDOperator, FunctionOperator, LinearOperator, conjugate_gradient  # noqa: F401
from .blur import Blur
from .compose import Composition
from .inpainting import Inpainting
from .kernels import gaussian_kernel, motion_kernel
from .masks import box_mask, mask_from_image, random_mask
from .noise import GaussianNoise
from .separable import SeparableOperator
from .simple import Colorization, Denoising
from .superres import BlurDownsample, SuperResolution

__all__ = [
    "LinearOperator", "FunctionOperator", "DenseSVDOperator", "conjugate_gradient",
    "Inpainting", "SuperResolution", "SeparableOperator", "Blur", "BlurDownsample",
    "Denoising", "Colorization", "Composition", "GaussianNoise",
    "box_mask", "random_mask", "mask_from_image", "gaussian_kernel", "motion_kernel",
    "get", "NAMES",
]  # fmt: skip


def _inpainting(mask=None, **box_kwargs) -> Inpainting:
    return Inpainting(box_mask(**box_kwargs) if mask is None else mask)


def _blur(kernel=None, size: int = 61, std: float = 3.0, padding: str = "circular") -> Blur:
    return Blur(gaussian_kernel(size, std) if kernel is None else kernel, padding)


def _motion(size: int = 61, intensity: float = 0.5, seed: int | None = None, padding: str = "circular") -> Blur:
    return Blur(motion_kernel(size, intensity, seed), padding)


_REGISTRY = {
    "inpainting": _inpainting,  # mask=..., or box_mask(...) keyword arguments
    "sr": SuperResolution,  # scale, kind
    "blur": _blur,  # Gaussian: size, std, padding (or kernel=...)
    "motion": _motion,  # size, intensity, seed, padding
    "denoising": Denoising,
    "colorization": Colorization,
}
NAMES = tuple(_REGISTRY)


def get(name: str, **kwargs) -> LinearOperator:
    """Build an operator by name, for the CLI and benchmarks.

    ``"inpainting"`` (``mask=`` or :func:`box_mask` arguments), ``"sr"``
    (:class:`SuperResolution`), ``"blur"`` (Gaussian, :func:`gaussian_kernel`
    arguments or ``kernel=``, and ``padding``), ``"motion"``
    (:func:`motion_kernel` arguments and ``padding``), ``"denoising"``,
    ``"colorization"``.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown operator {name!r}; choose one of {', '.join(NAMES)}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        if isinstance(e, PnPRestoreError):
            raise
        raise ConfigError(f"bad arguments for operator {name!r}: {e}") from None
