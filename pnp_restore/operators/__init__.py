"""Degradation operators (the physics): forward models, linear ones with adjoint, pseudo-inverse, prox, SVD,
and nonlinear ones (phase retrieval, JPEG, HDR, quantisation, learned blur); see docs/operators.md."""

from __future__ import annotations

from ..errors import ConfigError, PnPRestoreError
from ..tasks import Task
from .base import DecomposableOperator, DenseSVDOperator, FunctionOperator, LinearOperator, NonlinearOperator, Operator
from .blur import Blur
from .cg import CGConfig, conjugate_gradient
from .compose import Composition
from .grayscale import Grayscale, rgb_observation
from .dynamic_range import HDR, Quantization, smooth_round
from .inpainting import Inpainting
from .jpeg import JPEG, jpeg_operator_from_file
from .kernels import gaussian_kernel, motion_kernel
from .masks import box_mask, mask_from_image, random_mask
from .noise import GaussianNoise
from .nonlinear_blur import NonlinearBlur
from .phase import PhaseRetrieval
from .separable import SeparableOperator
from .simple import Colorization, Denoising
from .superres import BlurDownsample, SuperResolution

__all__ = [
    "Operator", "NonlinearOperator", "LinearOperator", "DecomposableOperator", "FunctionOperator", "DenseSVDOperator",
    "CGConfig", "conjugate_gradient",
    "Inpainting", "SuperResolution", "SeparableOperator", "Blur", "BlurDownsample",
    "Denoising", "Colorization", "Composition", "GaussianNoise", "Grayscale", "rgb_observation",
    "PhaseRetrieval", "JPEG", "jpeg_operator_from_file", "HDR", "Quantization", "NonlinearBlur", "smooth_round",
    "box_mask", "random_mask", "mask_from_image", "gaussian_kernel", "motion_kernel",
    "get", "NAMES", "TASK_OPERATORS",
]  # fmt: skip


def _inpainting(mask=None, **box_kwargs) -> Inpainting:
    return Inpainting(box_mask(**box_kwargs) if mask is None else mask)


def _blur(kernel=None, size: int = 61, std: float = 3.0, padding: str = "circular") -> Blur:
    return Blur(gaussian_kernel(size, std) if kernel is None else kernel, padding)


def _motion(
    kernel=None, size: int = 61, intensity: float = 0.5, seed: int | None = None, padding: str = "circular"
) -> Blur:
    return Blur(motion_kernel(size, intensity, seed) if kernel is None else kernel, padding)


_REGISTRY = {
    "inpainting": _inpainting,  # mask=..., or box_mask(...) keyword arguments
    "sr": SuperResolution,  # scale, kind
    "blur": _blur,  # Gaussian: size, std, padding (or kernel=...)
    "motion": _motion,  # size, intensity, seed, padding (or kernel=..., e.g. per-sample (B, k, k))
    "denoising": Denoising,
    "colorization": Colorization,
    # nonlinear
    "phase_retrieval": PhaseRetrieval,  # oversample
    "jpeg": JPEG,  # quality, subsampling, rounding (or luma_table=, chroma_table=)
    "hdr": HDR,  # scale
    "quantization": Quantization,  # bits, rounding
    "nonlinear_blur": NonlinearBlur,  # network=, latent=, seed (no built-in weights: raises without network)
}
NAMES = tuple(_REGISTRY)

#: The operator name of each :class:`~pnp_restore.tasks.Task` (``get`` accepts either).
TASK_OPERATORS: dict[Task, str] = {
    Task.INPAINTING: "inpainting",
    Task.SUPER_RESOLUTION: "sr",
    Task.GAUSSIAN_DEBLUR: "blur",
    Task.MOTION_DEBLUR: "motion",
    Task.DENOISING: "denoising",
    Task.COLORIZATION: "colorization",
    Task.PHASE_RETRIEVAL: "phase_retrieval",
    Task.JPEG: "jpeg",
    Task.HDR: "hdr",
    Task.QUANTIZATION: "quantization",
    Task.NONLINEAR_DEBLUR: "nonlinear_blur",
}


def get(name: str | Task, **kwargs) -> Operator:
    """Build an operator by name or :class:`~pnp_restore.tasks.Task`, for the CLI and benchmarks.

    ``"inpainting"`` (``mask=`` or :func:`box_mask` arguments), ``"sr"`` /
    ``"super_resolution"`` (:class:`SuperResolution`), ``"blur"`` / ``"gaussian_deblur"``
    (Gaussian, :func:`gaussian_kernel` arguments or ``kernel=``, and ``padding``),
    ``"motion"`` / ``"motion_deblur"`` (:func:`motion_kernel` arguments or ``kernel=``, and ``padding``),
    ``"denoising"``, ``"colorization"``; nonlinear: ``"phase_retrieval"`` (:class:`PhaseRetrieval`),
    ``"jpeg"`` (:class:`JPEG`), ``"hdr"`` (:class:`HDR`), ``"quantization"`` (:class:`Quantization`),
    ``"nonlinear_blur"`` / ``"nonlinear_deblur"`` (:class:`NonlinearBlur`, needs ``network=``).
    """
    key = TASK_OPERATORS.get(name, name)
    if key not in _REGISTRY:
        tasks = ", ".join(t.value for t in TASK_OPERATORS if t.value not in _REGISTRY)
        raise ConfigError(f"unknown operator {name!r}; choose one of {', '.join(NAMES)} (or a task: {tasks})")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as e:
        if isinstance(e, PnPRestoreError):
            raise
        raise ConfigError(f"bad arguments for operator {name!r}: {e}") from None
