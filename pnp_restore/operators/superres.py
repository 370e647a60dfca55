"""Super-resolution operators: separable bicubic / box downsampling, and blur + decimation."""

from __future__ import annotations

import torch

from ..errors import ConfigError, ShapeError
from .base import LinearOperator, Tensor, _per_sample
from .blur import Blur, _check_kernel_batch, kernel_repr
from .separable import SeparableOperator


def cubic(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys (1981) cubic convolution kernel with parameter ``a`` (support [-2, 2])."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((t - 5) * t + 8) * t * a - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_matrix(n: int, scale: int) -> Tensor:
    """(n // scale, n) float64 matrix of MATLAB's ``imresize(x, 1/scale, 'bicubic')`` along one axis.

    Output pixel ``k`` is centred at input coordinate ``u = (k + 0.5) scale - 0.5``;
    its weights are ``cubic((u - j) / scale)`` (a = -0.5, the kernel stretched by
    ``scale`` for anti-aliasing) over ``4 scale + 2`` taps, normalised to sum 1.
    Taps outside [0, n) are folded back by half-sample symmetric reflection
    (MATLAB's 'symmetric' boundary: index -1 -> 0, n -> n - 1).
    """
    m = n // scale
    u = (torch.arange(m, dtype=torch.float64) + 0.5) * scale - 0.5
    taps = 4 * scale + 2
    j = torch.floor(u - 2 * scale)[:, None] + torch.arange(taps, dtype=torch.float64)
    w = cubic((u[:, None] - j) / scale)
    w = w / w.sum(1, keepdim=True)
    j = j.long() % (2 * n)
    j = torch.where(j >= n, 2 * n - 1 - j, j)
    out = torch.zeros(m, n, dtype=torch.float64)
    return out.scatter_add_(1, j, w)


def avgpool_matrix(n: int, scale: int) -> Tensor:
    """(n // scale, n) float64 matrix averaging non-overlapping blocks of ``scale`` pixels."""
    return torch.eye(n // scale, dtype=torch.float64).repeat_interleave(scale, dim=1) / scale


_MATRICES = {"bicubic": bicubic_matrix, "avgpool": avgpool_matrix}


class SuperResolution(SeparableOperator):
    """Downsampling by an integer ``scale``: (B, C, H, W) -> (B, C, H/scale, W/scale).

    Both kinds are separable (``Y = A_h X A_w^T`` per channel) and have an exact SVD
    from the SVDs of the 1-D matrices (see :mod:`.separable`).

    * ``"bicubic"``: MATLAB ``imresize`` (the SR-benchmark convention): Keys cubic
      with a = -0.5, stretched by ``scale`` (antialiased), symmetric boundary.
      DDRM's ``sr_bicubic`` (Kawar et al., 2022, ``SRConv``) uses the same 4*scale
      tap kernel with reflective padding; for even scales the two matrices are
      identical, for odd scales DDRM samples half a pixel off MATLAB's centres.
      In the image interior this equals
      ``F.interpolate(x, scale_factor=1/scale, mode="bicubic", antialias=True)``,
      which differs only at the borders (it renormalises clipped taps instead of
      reflecting).
    * ``"avgpool"``: the mean of each ``scale x scale`` block (``F.avg_pool2d``),
      DDRM/DDNM's ``sr_averagepooling``.

    Args:
        scale: integer downsampling factor >= 1; H and W must be divisible by it.
        kind: ``"bicubic"`` or ``"avgpool"``.
    """

    def __init__(self, scale: int, kind: str = "bicubic") -> None:
        super().__init__()
        if kind not in _MATRICES:
            raise ConfigError(f"unknown super-resolution kind {kind!r}; choose one of {sorted(_MATRICES)}")
        self.scale, self.kind = _check_scale(scale), kind

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        _check_divisible(x.shape[-2:], self.scale, type(self).__name__)

    def matrix_1d(self, axis: int, n: int) -> Tensor:
        if n % self.scale:
            raise ShapeError(f"image size {n} is not divisible by the scale {self.scale}; crop or pad the image")
        return _MATRICES[self.kind](n, self.scale)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*y_shape[:-2], y_shape[-2] * self.scale, y_shape[-1] * self.scale)

    def __repr__(self) -> str:
        return f"SuperResolution(scale={self.scale}, kind={self.kind!r})"


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not float(scale).is_integer() or int(scale) < 1:
        raise ConfigError(f"scale must be an integer >= 1; got {scale!r}")
    return int(scale)


def _check_divisible(hw, scale: int, name: str) -> None:
    h, w = hw
    if h % scale or w % scale:
        raise ShapeError(f"{name}: image is {h}x{w}, not divisible by the scale {scale}; crop or pad it to a multiple")


def _blocks_mean(v: Tensor, s: int) -> Tensor:
    """Mean of the s x s tiles (each H/s x W/s) of a spectrum (..., H, W) -> (..., H/s, W/s)."""
    h, w = v.shape[-2] // s, v.shape[-1] // s
    return v.unflatten(-1, (s, w)).unflatten(-3, (s, h)).mean((-4, -2))


class BlurDownsample(LinearOperator):
    """Circular blur then ``scale``-fold decimation: ``y = (k * x)[::scale, ::scale]``.

    The classical SR degradation model (e.g. USRNet, Zhang et al., CVPR 2020), with
    the first pixel of every ``scale x scale`` block kept. Blur is a true
    convolution with periodic boundary (see :class:`~.blur.Blur`). No SVD;
    :meth:`prox` is the closed-form FFT solution of Zhao et al. (IEEE TIP 2016)
    as used in USRNet's data module, :meth:`pinv` uses conjugate gradient.

    Args:
        kernel: (k, k) or per-sample (B, k, k) blur kernel, normalised to sum 1.
        scale: integer decimation factor >= 1.
    """

    def __init__(self, kernel: Tensor, scale: int) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self._blur = Blur(kernel, padding="circular")

    @property
    def kernel(self) -> Tensor:
        """(B, 1, kh, kw) kernel, the circular blur's buffer."""
        return self._blur.kernel

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        _check_divisible(x.shape[-2:], self.scale, type(self).__name__)
        _check_kernel_batch(self.kernel, x, type(self).__name__)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*y_shape[:-2], y_shape[-2] * self.scale, y_shape[-1] * self.scale)

    def _upsample(self, y: Tensor) -> Tensor:
        """``S^T y``: zero insertion (B, C, h, w) -> (B, C, h s, w s)."""
        out = y.new_zeros(self.x_shape(tuple(y.shape)))
        out[..., :: self.scale, :: self.scale] = y
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self._blur.forward(x)[..., :: self.scale, :: self.scale]

    def adjoint(self, y: Tensor) -> Tensor:
        return self._blur.adjoint(self._upsample(y))

    def prox(self, z: Tensor, y: Tensor, rho: float | Tensor, sigma_y: float | Tensor) -> Tensor:
        """Closed-form ``(A^T A + lam I)^{-1} (A^T y + lam z)``, ``lam = rho sigma_y^2`` (Zhao et al., 2016).

        Uses the Woodbury identity on the aliasing structure of decimation in the
        Fourier domain. Falls back to the generic solver when some ``lam`` is 0
        (the projection onto ``A x = y``).
        """
        lam = _per_sample(rho, z) * _per_sample(sigma_y, z) ** 2
        if not bool((lam > 0).all()):
            return super().prox(z, y, rho, sigma_y)
        s = self.scale
        fk = self._blur._fk(z)
        fr = fk.conj() * torch.fft.fft2(self._upsample(y)) + lam * torch.fft.fft2(z)
        fbr = _blocks_mean(fk * fr, s)
        inv_w = _blocks_mean(fk.abs() ** 2, s)
        tiled = (fbr / (inv_w + lam)).repeat(1, 1, s, s)
        return torch.fft.ifft2((fr - fk.conj() * tiled) / lam).real

    def __repr__(self) -> str:
        return f"BlurDownsample(kernel={kernel_repr(self.kernel)}, scale={self.scale})"
