"""Measuring a colour image through its gray version: ``A_gray(x) = A(mean_c x)``.

A grayscale photo restored with an RGB prior is the measurement ``y = A(g) + sigma_y n`` of
one gray channel ``g = mean_c x`` (R, G and B weighted 1/3 each, as
:class:`~.simple.Colorization` and DDRM's colorization), with the noise on that one channel.
Replicating ``y`` to three channels instead would present the solver with noise that is
identical in R, G and B, i.e. std ``sqrt(3) sigma_y`` along the gray axis and none along the
two colour axes, which is not the i.i.d. noise every solver assumes. :class:`Grayscale` is
the operator of the correct model; a gray image replicated to RGB is its own preimage
(``mean_c`` of it is the gray image), so the result is written back as its channel mean.
"""

from __future__ import annotations

import math

import torch

from .._rng import SampleRNG
from ..errors import ShapeError
from .base import DecomposableOperator, LinearOperator, NonlinearOperator, Operator, Tensor, cast
from .simple import helmert


class Grayscale(DecomposableOperator):
    """``y = inner(mean_c x)``: (B, C, H, W) -> the measurement ``inner`` makes of (B, 1, H, W).

    SVD (when ``inner`` has one on 1-channel images). Per pixel, the orthogonal Helmert
    matrix ``H`` (first row ``(1, ..., 1) / sqrt(C)``) splits ``x`` into its gray axis
    ``(H x)_0 = sqrt(C) mean_c x`` and ``C - 1`` colour differences. So
    ``A_gray = U (s / sqrt(C)) V^T [H x]_0``: coefficient channel 0 is ``inner``'s
    coefficients of the gray axis, with singular values ``s / sqrt(C)``; channels
    1..C-1 are the colour differences themselves, with singular value 0; ``U`` is
    ``inner``'s. This is an exact SVD for every ``inner`` with one (inpainting,
    denoising, bicubic/box super-resolution, circular blur, a :class:`~.base.DenseSVDOperator`
    of 1-channel images), so DDRM and DDNM run on gray photos. Complex coefficients
    (circular blur) make the colour channels complex too (zero imaginary part).

    ``pinv`` and ``prox`` reduce exactly to ``inner``'s on the gray image, whether or not it
    has an SVD (``inner``'s own closed form or conjugate gradient): the minimum-norm
    preimage is the gray solution replicated, and since ``||x - z||^2`` along the gray axis
    is ``C ||mean_c x - mean_c z||^2``, the prox is ``inner``'s with ``C rho``, the colour
    differences of ``z`` kept.

    Args:
        inner: a linear operator of 1-channel images (the gray measurement).
        channels: colour channels C of the images (3 for RGB).
    """

    def __init__(self, inner: LinearOperator, channels: int = 3) -> None:
        super().__init__()
        self.inner = inner
        self.channels = int(channels)
        self.has_svd = bool(getattr(inner, "has_svd", False))
        self.register_buffer("helmert", helmert(self.channels))

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if x.shape[1] != self.channels:
            raise ShapeError(f"Grayscale expects {self.channels}-channel images; got {x.shape[1]} channels")
        self.inner.check_input(x[:, :1])

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, _, *hw = self.inner.x_shape(tuple(y_shape))
        return (b, self.channels, *hw)

    def _gray(self, x: Tensor) -> Tensor:
        return x.mean(1, keepdim=True)

    def _replicate(self, g: Tensor) -> Tensor:
        return g.expand(g.shape[0], self.channels, *g.shape[2:]).clone()

    # -- operator (direct forms; the SVD ones are equal) ------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.inner.forward(self._gray(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self._replicate(self.inner.adjoint(y) / self.channels)

    def pinv(self, y: Tensor, max_iter: int | None = None, tol: float | None = None) -> Tensor:
        """Minimum-norm preimage: the gray ``inner.pinv(y)`` replicated to every channel."""
        g = self.inner.pinv(y) if max_iter is None and tol is None else self.inner.pinv(y, max_iter, tol)
        return self._replicate(g)

    def prox(self, z: Tensor, y: Tensor, rho: float | Tensor, sigma_y: float | Tensor) -> Tensor:
        """``z`` moved along the gray axis only, to ``inner.prox(mean_c z, y, C rho, sigma_y)``
        (see :meth:`LinearOperator.prox` for the problem solved)."""
        g = self._gray(z)
        rho_c = rho * self.channels if isinstance(rho, Tensor) else float(rho) * self.channels
        return z + (self.inner.prox(g, y, rho_c, sigma_y) - g)

    # -- SVD -------------------------------------------------------------------
    def singular_values(self, like: Tensor) -> Tensor:
        s = self.inner.singular_values(like[:, :1])
        out = s.new_zeros(s.shape[0], self.channels, *s.shape[2:])
        out[:, :1] = s / math.sqrt(self.channels)
        return out

    def V_adjoint(self, x: Tensor) -> Tensor:
        h = torch.einsum("kc,bchw->bkhw", cast(self.helmert, x), x)
        c0 = self.inner.V_adjoint(h[:, :1])
        return torch.cat([c0, h[:, 1:].to(c0.dtype)], dim=1)

    def V(self, c: Tensor) -> Tensor:
        x0 = self.inner.V(c[:, :1])
        h = torch.cat([x0, c[:, 1:].real.to(x0.dtype)], dim=1)
        return torch.einsum("kc,bkhw->bchw", cast(self.helmert, h), h)

    def U_adjoint(self, y: Tensor) -> Tensor:
        c0 = self.inner.U_adjoint(y)
        return torch.cat([c0, c0.new_zeros(c0.shape[0], self.channels - 1, *c0.shape[2:])], dim=1)

    def U(self, c: Tensor) -> Tensor:
        return self.inner.U(c[:, :1])

    def __repr__(self) -> str:
        return f"Grayscale({self.inner!r}, channels={self.channels})"


class GrayscaleNonlinear(NonlinearOperator):
    """``y = inner(mean_c x)`` for a nonlinear ``inner`` of 1-channel images (a gray JPEG, say).

    ``pinv`` is ``inner``'s replicated over the channels (the gray preimage), where ``inner`` has one.
    """

    def __init__(self, inner: Operator, channels: int = 3) -> None:
        super().__init__()
        self.inner = inner
        self.channels = int(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner.forward(x.mean(dim=1, keepdim=True))

    def pinv(self, y: Tensor) -> Tensor:
        return self.inner.pinv(y).expand(-1, self.channels, -1, -1)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, _, *rest = self.inner.x_shape(y_shape)
        return (b, self.channels, *rest)

    def __repr__(self) -> str:
        return f"GrayscaleNonlinear({self.inner!r})"


def grayscale(inner: Operator, channels: int = 3) -> Operator:
    """The gray-measurement operator of ``inner``: :class:`Grayscale` (linear, SVD kept) or :class:`GrayscaleNonlinear`."""
    return Grayscale(inner, channels) if inner.linear else GrayscaleNonlinear(inner, channels)


def rgb_observation(y: Tensor, sigma_y: float, *, seed: int | None, channels: int = 3) -> tuple[Tensor, float]:
    """A C-channel image with i.i.d. noise whose channel mean is the noisy gray image ``y``.

    For ``y = g + sigma_y n`` (B, 1, H, W), returns ``z = y 1 + sqrt(C) sigma_y H^T [0, e]`` with
    ``e ~ N(0, I)`` on the C - 1 colour-difference axes (``H``: the Helmert matrix of
    :class:`Grayscale`; sample ``i`` draws with seed ``seed + i``). Since ``y 1 = g 1 +
    sqrt(C) sigma_y H^T [n, 0]``, ``z - g 1 = sqrt(C) sigma_y H^T [n, e]``: i.i.d.
    ``N(0, C sigma_y^2)`` in every channel and pixel. So ``z`` is exactly a noisy RGB
    observation (std ``sqrt(C) sigma_y``) of the gray image replicated, which an RGB
    denoiser's MMSE estimate ``D(z, sqrt(C) sigma_y)`` assumes; the replicated ``y`` alone is
    not (its noise is the same in every channel). Nothing of ``y`` is lost: ``mean_c z = y``.

    Returns:
        ``(z, sqrt(C) sigma_y)``: z (B, C, H, W), and its per-channel noise std.
    """
    b, _, h, w = y.shape
    e = SampleRNG(seed, b).randn((b, channels, h, w), device=y.device, dtype=y.dtype)
    e[:, 0] = 0
    scale = math.sqrt(channels) * float(sigma_y)
    chroma = torch.einsum("kc,bkhw->bchw", cast(helmert(channels), y), e)
    return y.expand(b, channels, h, w) + scale * chroma, scale


__all__ = ["Grayscale", "GrayscaleNonlinear", "grayscale", "rgb_observation"]
