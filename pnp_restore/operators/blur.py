"""Blur (convolution) with circular or reflect boundary.

Convention: a *true convolution* ``y[n] = sum_i k[i] x[n - i + c]`` with the
kernel centre ``c = k // 2`` along each axis (the exact centre for odd sizes),
i.e. ``F.conv2d`` with the *flipped* kernel. For the symmetric kernels used in
most benchmarks (Gaussian) convolution and correlation coincide; for motion
kernels they differ by a 180 degree rotation.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError, ShapeError
from .base import DecomposableOperator, Tensor, cast
from .factors import truncate_singular_values

PADDINGS = ("circular", "reflect")

#: floor of the circulant preconditioner's regulariser, relative to max|K_hat|^2 (see
#: Blur.cg_preconditioner). Measured: 1e-8 is best for a 5x5 kernel on 16x16, but worse than
#: no preconditioner for a 61x61 one on 256x256, where 1e-3 was the best tried.
PRECOND_FLOOR = 1e-3


def as_kernel(kernel) -> Tensor:
    """Validate a (kh, kw) or per-sample (B, kh, kw) kernel; return it as (B, 1, kh, kw) float64 summing to 1."""
    k = torch.as_tensor(kernel).detach()
    if k.dim() == 4 and k.shape[1] == 1:
        k = k[:, 0]
    if k.dim() == 2:
        k = k[None]
    if k.dim() != 3 or k.shape[-1] < 1 or k.shape[-2] < 1:
        shape = tuple(torch.as_tensor(kernel).shape)
        raise ShapeError(f"blur kernel must be (k, k) or per-sample (B, k, k); got shape {shape}")
    k = k.to(device="cpu", dtype=torch.float64)
    total = k.sum((-2, -1), keepdim=True)
    if not bool(torch.isfinite(k).all()) or bool((total <= 0).any()):
        raise ConfigError("blur kernel must be finite with a positive sum (it is normalised to sum 1)")
    return (k / total)[:, None]


def kernel_repr(kernel: Tensor) -> str:
    b, _, kh, kw = kernel.shape
    return f"{kh}x{kw}" if b == 1 else f"{b}x{kh}x{kw} per-sample"


def _check_kernel_batch(kernel: Tensor, x: Tensor, name: str) -> None:
    if kernel.shape[0] not in (1, x.shape[0]):
        raise ShapeError(f"{name} has {kernel.shape[0]} per-sample kernels but the batch has {x.shape[0]} images")


def otf(kernel: Tensor, hw: tuple[int, int]) -> Tensor:
    """Optical transfer function: ``fft2`` of ``kernel`` (B, 1, kh, kw) zero-padded to ``hw``, centre at (0, 0).

    Returns a complex (B, 1, H, W) tensor in ``kernel``'s precision and on its device,
    so that ``ifft2(otf * fft2(x))`` is the circular convolution of the module docstring.
    """
    h, w = int(hw[0]), int(hw[1])
    kh, kw = kernel.shape[-2:]
    if kh > h or kw > w:
        raise ShapeError(f"blur kernel is {kh}x{kw} but the image is only {h}x{w}; use a smaller kernel")
    pad = kernel.new_zeros(*kernel.shape[:2], h, w)
    pad[..., :kh, :kw] = kernel
    pad = torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.fft2(pad)


class Blur(DecomposableOperator):
    """Convolution with a (per-sample) kernel, per channel: ``y = k * x``.

    * ``padding="circular"``: periodic boundary, diagonalised by the FFT. Exact SVD
      with complex coefficients: ``V_adjoint(x) = fft2(x, norm="ortho")``,
      ``s = |K_hat|``, ``U`` carries the phase ``K_hat / |K_hat|``; closed-form
      ``pinv``/``prox`` follow from it. Singular values below
      ``max(H, W) * eps * max|K_hat|`` count as 0 (:func:`~.factors.truncate_singular_values`).
    * ``padding="reflect"``: the image is reflect-padded, so ``y`` has the size of
      ``x`` (DPS's Gaussian/motion deblurring). The adjoint is
      exact (the transposed convolution, then the padding folded back);
      ``pinv``/``prox`` use conjugate gradient preconditioned by the circular
      blur (:meth:`cg_preconditioner`); no SVD. Computed with FFTs on the
      padded canvas, which is exact and fast for the 61x61 kernels of DPS.

    Args:
        kernel: (k, k) or per-sample (B, k, k) tensor/array, normalised to sum 1.
        padding: ``"circular"`` or ``"reflect"``.
    """

    def __init__(self, kernel, padding: str = "circular") -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ConfigError(f"unknown blur padding {padding!r}; choose one of {list(PADDINGS)}")
        self.register_buffer("kernel", as_kernel(kernel))
        self.padding = padding
        self.has_svd = padding == "circular"

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        _check_kernel_batch(self.kernel, x, "Blur")
        kh, kw = self.kernel.shape[-2:]
        h, w = x.shape[-2:]
        if self.padding == "reflect" and (kh // 2 >= h or kw // 2 >= w):
            raise ShapeError(f"blur kernel {kh}x{kw} is too large to reflect-pad a {h}x{w} image; use a smaller kernel")

    def _fk(self, like: Tensor) -> Tensor:
        """The OTF on ``like``'s (H, W) grid, complex, on its device and in its precision."""
        h, w = like.shape[-2:]
        # Kept as its real view (..., 2), so that cast() (to a real precision) serves it too.
        fk = self.derived(f"_otf_{h}x{w}", lambda: torch.view_as_real(otf(self.kernel.cpu(), (h, w))))
        return torch.view_as_complex(cast(fk, like))

    def _reflect_indices(self, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """Source rows/columns of the reflect-padded image (edge not repeated, as ``F.pad(mode="reflect")``).

        The padding (``k - 1 - k // 2`` before, ``k // 2`` after) makes output ``n``
        see ``x[n - i + k // 2]`` for tap ``i`` (see the module docstring).
        """
        kh, kw = self.kernel.shape[-2:]
        out = []
        for n, before, after in ((h, self._offsets()[0], kh // 2), (w, self._offsets()[1], kw // 2)):
            i = torch.arange(-before, n + after, device=device).abs()
            out.append(torch.where(i >= n, 2 * (n - 1) - i, i))
        return out[0], out[1]

    def _circular(self, x: Tensor) -> Tensor:
        return torch.fft.ifft2(self._fk(x) * torch.fft.fft2(x)).real

    def _circular_adjoint(self, y: Tensor) -> Tensor:
        return torch.fft.ifft2(self._fk(y).conj() * torch.fft.fft2(y)).real

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "circular":
            return self._circular(x)
        # Reflect-pad, then a circular convolution on the padded canvas: the output
        # window [top, top + H) x [left, left + W) never wraps (FFT: fast for big kernels).
        h, w = x.shape[-2:]
        rows, cols = self._reflect_indices(h, w, x.device)
        top, left = self._offsets()
        out = self._circular(x.index_select(-2, rows).index_select(-1, cols))
        return out[..., top : top + h, left : left + w]

    def adjoint(self, y: Tensor) -> Tensor:
        if self.padding == "circular":
            return self._circular_adjoint(y)
        b, c, h, w = y.shape
        rows, cols = self._reflect_indices(h, w, y.device)
        top, left = self._offsets()
        g = y.new_zeros(b, c, len(rows), len(cols))
        g[..., top : top + h, left : left + w] = y
        g = self._circular_adjoint(g)
        g = y.new_zeros(b, c, h, len(cols)).index_add_(-2, rows, g)  # fold the padding back (adjoint of the gather)
        return y.new_zeros(b, c, h, w).index_add_(-1, cols, g)

    def cg_preconditioner(self, like: Tensor, lam: Tensor) -> Callable[[Tensor], Tensor] | None:
        """Circulant preconditioner of the reflect blur: ``r -> ifft2(fft2(r) / (|K_hat|^2 + lam'))``.

        The circular blur with the same kernel on the same grid differs from the
        reflect one only within half a kernel of the borders (Chan & Ng, "Conjugate
        gradient methods for Toeplitz systems", SIAM Review 1996), so this pays off
        when the kernel is small next to the image: 757 -> 300 iterations to tol 1e-6
        for a 5x5 Gaussian on 16x16 at lam = 1.6e-8. With 61x61 kernels the border band
        is most of a 64x64 image and 40% of a 256x256 one: at lam = 1e-4 it still takes
        400-800 iterations on 64x64, and at lam = 1e-8 it does not converge in 1000.
        ``lam' = max(lam, PRECOND_FLOOR * max|K_hat|^2)`` keeps it bounded where the
        kernel's spectrum vanishes (and for ``pinv``, ``lam = 0``).
        """
        if self.padding == "circular":
            return None
        power = self._fk(like).abs() ** 2
        denom = power + torch.maximum(lam, PRECOND_FLOOR * power.amax((-2, -1), keepdim=True))
        return lambda r: torch.fft.ifft2(torch.fft.fft2(r) / denom).real

    def _offsets(self) -> tuple[int, int]:
        kh, kw = self.kernel.shape[-2:]
        return kh - 1 - kh // 2, kw - 1 - kw // 2

    # -- SVD (circular only) -------------------------------------------------
    def _svd_check(self) -> None:
        if not self.has_svd:
            raise self._no_svd()

    def _s_phase(self, like: Tensor) -> tuple[Tensor, Tensor]:
        fk = self._fk(like)
        s = truncate_singular_values(fk.abs(), max(like.shape[-2:]), (-2, -1))
        phase = torch.where(s > 0, fk / s.where(s > 0, torch.ones_like(s)), torch.ones_like(fk))
        return s, phase

    def singular_values(self, like: Tensor) -> Tensor:
        self._svd_check()
        return self._s_phase(like)[0]

    def V_adjoint(self, x: Tensor) -> Tensor:
        self._svd_check()
        return torch.fft.fft2(x, norm="ortho")

    def V(self, c: Tensor) -> Tensor:
        self._svd_check()
        return torch.fft.ifft2(c, norm="ortho").real

    def U_adjoint(self, y: Tensor) -> Tensor:
        self._svd_check()
        s, phase = self._s_phase(y)
        return torch.where(s > 0, phase.conj() * torch.fft.fft2(y, norm="ortho"), 0)

    def U(self, c: Tensor) -> Tensor:
        self._svd_check()
        _, phase = self._s_phase(c)
        return torch.fft.ifft2(phase * c, norm="ortho").real

    def __repr__(self) -> str:
        return f"Blur(kernel={kernel_repr(self.kernel)}, padding={self.padding!r})"
