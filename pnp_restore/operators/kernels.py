"""Blur kernels: Gaussian and random camera-shake (motion) kernels, (k, k) float64 summing to 1."""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia.filters import get_gaussian_kernel2d

from ..errors import ConfigError

Tensor = torch.Tensor


def _check_size(size: int) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ConfigError(f"kernel size must be a positive integer; got {size!r}")
    return int(size)


def gaussian_kernel(size: int = 61, std: float = 3.0) -> Tensor:
    """Isotropic Gaussian, sampled on a (size, size) grid centred at ``size // 2``, normalised to sum 1.

    The defaults are DPS's Gaussian deblurring (61x61, std 3.0 pixels). DPS
    builds it with ``scipy.ndimage.gaussian_filter`` on a delta, which truncates
    at 4 std; the mass we keep beyond that is below 1e-4.
    """
    size = _check_size(size)
    if not (math.isfinite(std) and std > 0):
        raise ConfigError(f"gaussian std must be > 0 (in pixels); got {std!r}")
    return get_gaussian_kernel2d((size, size), (float(std), float(std)), dtype=torch.float64)[0]


def _trajectory(rng: np.random.Generator, diagonal: float, intensity: float) -> np.ndarray:
    """Random camera-shake path (complex points) on a canvas of the given diagonal.

    Same model as LeviBorodenko's ``motionblur`` package (used by DPS and
    DiffPIR): total length ``0.75 diag (U(0,1) + U(0, intensity^2))``, steps of
    length ``Beta(1, 30) (1 - intensity + 0.1) diag``, a maximal turning angle
    ``U(0, intensity pi)``, each step's angle triangular on
    [0, max_angle + 0.1] with mode ``intensity * max_angle`` and a sign that flips
    with probability ``Beta(2, 20)``; the path is centred on its centre of mass
    and rotated by ``U(0, pi)``.
    """
    eps = 0.1
    max_len = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_len:
        step = rng.beta(1, 30) * (1 - intensity + eps) * diagonal
        if step < max_len:
            steps.append(step)
    max_angle = rng.uniform(0, intensity * math.pi)
    flip = rng.beta(2, 20)
    angles = [rng.uniform(-max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + eps)
        sign = np.sign(angles[-1]) * (-1 if rng.uniform() < flip else 1)
        angles.append(angle * sign)
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    return (path - path.mean()) * np.exp(1j * rng.uniform(0, math.pi))


def motion_kernel(size: int = 61, intensity: float = 0.5, seed: int | None = None) -> Tensor:
    """Random camera-shake kernel (size, size), float64, summing to 1.

    Follows the meaning of ``intensity`` in LeviBorodenko's ``motionblur``
    (itself after Boracchi & Foi, IEEE TIP 2012), used by DPS (Chung et al., 2023)
    and DiffPIR (Zhu et al., 2023) with ``size=61, intensity=0.5``: 0 gives a
    straight linear blur, 1 a long, strongly curved path. As in that package,
    the path is drawn at twice the resolution with width ``diag / 150``, blurred
    by a Gaussian of std ``0.01 diag`` and downscaled by 2 (here with area
    averaging instead of Lanczos, which keeps the kernel non-negative).
    Deterministic given ``seed`` (``numpy.random.default_rng``).
    """
    size = _check_size(size)
    if not 0.0 <= float(intensity) <= 1.0:
        raise ConfigError(f"motion intensity must be in [0, 1]; got {intensity!r}")
    import cv2  # lazily: importing the operators (and so a prior or a solver) must not need OpenCV

    rng = np.random.default_rng(seed)
    big = 2 * size
    diagonal = math.sqrt(2) * big
    path = _trajectory(rng, diagonal, float(intensity)) + (big + 1j * big) / 2
    canvas = np.zeros((big, big), np.float32)
    shift = 8  # sub-pixel precision of the polyline, 2**-8 px
    points = np.stack([path.real, path.imag], -1) * 2**shift
    width = max(1, int(diagonal / 150))
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1.0, width, cv2.LINE_AA, shift)
    radius = int(diagonal * 0.01)
    if radius > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), radius)
    kernel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    if kernel.sum() <= 0:  # the path left the canvas entirely (very unlikely): fall back to a delta
        kernel[size // 2, size // 2] = 1.0
    return torch.from_numpy(kernel / kernel.sum())
