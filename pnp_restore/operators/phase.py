"""Fourier phase retrieval: the magnitude of the oversampled 2-D Fourier transform (nonlinear)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError, ShapeError
from .base import NonlinearOperator, Tensor


class PhaseRetrieval(NonlinearOperator):
    """``y = |FFT2(pad(x))|``: Fourier magnitudes of the zero-padded image, per channel.

    (B, C, H, W) in [0, 1] -> (B, C, H + 2 p_h, W + 2 p_w), non-negative, with
    ``p_h = int(oversample / 8 * H)`` zeros on each side (``p_w`` likewise from W), the
    orthonormal FFT (``norm="ortho"``, so Parseval holds: ``||y|| = ||x||``) and the zero
    frequency at the centre (index ``(H', W') // 2``).

    Settings and sources:
        * DAPS (zhangbingliang2019/DAPS ``forward_operator/__init__.py``, ``PhaseRetrieval``): maps its
          [-1, 1] image to [0, 1] first, pads ``int(oversample / 8.0 * resolution)`` zeros on every side and
          takes ``|fft2c|`` (fastMRI's centred FFT, ``norm="ortho"``: ifftshift, fft2, fftshift;
          the ifftshift of the input only changes phases, so the magnitude is ``fftshift(|fft2|)``, as here).
          ``oversample: 2.0`` in ``configs/task/phase_retrieval.yaml``, so ``p = H / 4`` and y is 1.5 H wide.
          This operator is that one on our [0, 1] images, exactly.
        * DPS (DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py``,
          ``PhaseRetrievalOperator``; ``oversample: 2.0`` in ``configs/phase_retrieval_config.yaml``):
          the same padding (hard-coded for 256 px: ``int(oversample / 8.0 * 256)``) and ``|fft2_m|``
          (also the ortho centred FFT), but of the [-1, 1] image.
          Deviation from DPS: we transform the [0, 1] image (as DAPS does), so the zero padding is black,
          not mid-grey, and ``y`` differs from DPS's by the DC term of the padding and a factor 2.
        * Noise: DPS's config adds Poisson noise (``rate: 1.0``), DAPS Gaussian ``sigma: 0.05``
          on this (unnormalised) magnitude scale; not part of the operator.

    Ambiguities: the magnitude does not change under a translation of the image inside the padded
    frame (circularly), under the point reflection ``x(n) -> x(-n)`` (a 180 degree rotation, the
    conjugate-symmetric "twin image"), nor under a global sign (the real-image form of the global
    phase). Hence restorations are compared with the ground truth up to these, or papers report the
    best of several runs: DPS (Chung et al., ICLR 2023) and DAPS report the best of 4 independent
    samples for phase retrieval (from the papers' text; the code has no such step).

    Args:
        oversample: the papers' oversampling ratio (>= 0; default 2.0, DPS and DAPS). 0 = no padding.
    """

    def __init__(self, oversample: float = 2.0) -> None:
        super().__init__()
        o = float(oversample)
        if not (o >= 0 and o < float("inf")):
            raise ConfigError(f"phase retrieval oversample must be a finite number >= 0; got {oversample!r}")
        self.oversample = o

    def pads(self, h: int, w: int) -> tuple[int, int]:
        """Zeros added on each side (p_h, p_w) for an H x W image (DAPS's ``int(oversample / 8 * size)``)."""
        return int(self.oversample / 8.0 * h), int(self.oversample / 8.0 * w)

    def _unpadded(self, n: int) -> int:
        """The image size whose padded size is ``n`` (a ShapeError if none is)."""
        guess = round(n / (1 + self.oversample / 4))
        for size in range(max(1, guess - 3), guess + 4):
            if size + 2 * self.pads(size, size)[0] == n:
                return size
        raise ShapeError(
            f"no image size gives phase-retrieval measurements of size {n} at oversample {self.oversample}; "
            "check y or pass the operator the oversample it was measured with"
        )

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.in_shape is not None:
            return (y_shape[0], *self.in_shape)
        return (*y_shape[:-2], self._unpadded(y_shape[-2]), self._unpadded(y_shape[-1]))

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self.pads(x.shape[-2], x.shape[-1])
        padded = F.pad(x, (pw, pw, ph, ph))
        spectrum = torch.fft.fft2(padded, norm="ortho")
        return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1))

    def __repr__(self) -> str:
        return f"PhaseRetrieval(oversample={self.oversample})"


__all__ = ["PhaseRetrieval"]
