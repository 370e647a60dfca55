"""Separable operators ``Y = A_h X A_w^T`` (per channel) with an exact SVD.

The SVD of ``A = A_h (x) A_w`` (Kronecker product) follows from the SVDs of the
two 1-D matrices, ``A_h = U_h S_h V_h^T`` and ``A_w = U_w S_w V_w^T``:

* ``V_adjoint(X) = V_h^T X V_w`` (coefficients in the (H, W) layout of ``x``),
* singular values ``s = s_h s_w^T`` in the top-left (m_h, m_w) block, 0 elsewhere,
* ``U_adjoint(Y) = U_h^T Y U_w`` embedded into that block.

This is the construction of DDRM's ``SRConv`` (Kawar et al., 2022, App. D.5)
without its permutation: our coefficients keep the image layout.
"""

from __future__ import annotations


import torch

from ..errors import ShapeError
from .base import DecomposableOperator, Tensor, cast
from .factors import Factors, safe_inverse, svd_factors


def _pinv_1d(f: Factors) -> Tensor:
    """Pseudo-inverse (n, m) of a 1-D matrix from its SVD."""
    r = min(f.A.shape)
    return f.V[:, :r] * safe_inverse(f.s[:r]) @ f.U[:, :r].T


class SeparableOperator(DecomposableOperator):
    """``y[b, c] = A_h @ x[b, c] @ A_w^T`` for two 1-D matrices.

    Args:
        A_h: (m_h, n_h) matrix acting on the rows (height).
        A_w: (m_w, n_w) matrix acting on the columns (width).

    Subclasses that work for any image size pass no matrices and override
    :meth:`matrix_1d` and :meth:`x_shape`. The SVDs of the 1-D matrices are
    computed in float64 on first use, once per size, and kept as buffers.
    """

    def __init__(self, A_h: Tensor | None = None, A_w: Tensor | None = None) -> None:
        super().__init__()
        fixed = type(self) is SeparableOperator or A_h is not None or A_w is not None
        if fixed and (A_h is None or A_w is None or A_h.dim() != 2 or A_w.dim() != 2):
            raise ShapeError("SeparableOperator needs two 2-D matrices A_h (m_h, n_h) and A_w (m_w, n_w)")
        self.register_buffer("A_h", A_h.detach().to(device="cpu", dtype=torch.float64) if fixed else None)
        self.register_buffer("A_w", A_w.detach().to(device="cpu", dtype=torch.float64) if fixed else None)

    # -- the 1-D factors -----------------------------------------------------
    def matrix_1d(self, axis: int, n: int) -> Tensor:
        """The float64 (m, n) matrix, on the CPU, for ``axis`` (0 = height, 1 = width) and input length ``n``."""
        a = (self.A_h, self.A_w)[axis].cpu()
        if a.shape[1] != n:
            dim = "height" if axis == 0 else "width"
            raise ShapeError(f"{type(self).__name__} acts on images of {dim} {a.shape[1]}; got {dim} {n}")
        return a

    def factors(self, axis: int, n: int, like: Tensor) -> Factors:
        """:class:`Factors` of the 1-D matrix for ``axis`` and input length ``n``, on ``like``'s device/dtype."""
        name = f"_svd{axis}_{n}"
        if f"{name}_A" not in self._buffers:
            f = svd_factors(self.matrix_1d(axis, n))
            for field, t in zip(Factors._fields, f):
                self.derived(f"{name}_{field}", lambda t=t: t)
        return Factors(*(cast(self._buffers[f"{name}_{field}"], like) for field in Factors._fields))

    def _hw(self, x: Tensor) -> tuple[Factors, Factors]:
        return self.factors(0, x.shape[-2], x), self.factors(1, x.shape[-1], x)

    def _hw_from_y(self, y: Tensor) -> tuple[Factors, Factors]:
        _, _, h, w = self.x_shape(tuple(y.shape))
        return self.factors(0, h, y), self.factors(1, w, y)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*y_shape[:2], self.A_h.shape[1], self.A_w.shape[1])

    # -- operator ------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        fh, fw = self._hw(x)
        return fh.A @ x @ fw.A.T

    def adjoint(self, y: Tensor) -> Tensor:
        fh, fw = self._hw_from_y(y)
        m_h, m_w = fh.A.shape[0], fw.A.shape[0]
        if y.shape[-2:] != (m_h, m_w):
            raise ShapeError(f"{type(self).__name__} measurements are {m_h}x{m_w}; got {y.shape[-2]}x{y.shape[-1]}")
        return fh.A.T @ y @ fw.A

    # -- SVD -----------------------------------------------------------------
    def singular_values(self, like: Tensor) -> Tensor:
        """(1, 1, H, W) singular values for images ``like`` (B, C, H, W) (the coefficient layout)."""
        fh, fw = self._hw(like)
        return (fh.s[:, None] * fw.s[None, :])[None, None]

    def V_adjoint(self, x: Tensor) -> Tensor:
        fh, fw = self._hw(x)
        return fh.V.T @ x @ fw.V

    def V(self, c: Tensor) -> Tensor:
        fh, fw = self._hw(c)
        return fh.V @ c @ fw.V.T

    def U_adjoint(self, y: Tensor) -> Tensor:
        fh, fw = self._hw_from_y(y)
        n_h, n_w = fh.V.shape[0], fw.V.shape[0]
        k_h, k_w = min(n_h, y.shape[-2]), min(n_w, y.shape[-1])
        cy = fh.U.T @ y @ fw.U
        c = y.new_zeros(*y.shape[:2], n_h, n_w)
        c[..., :k_h, :k_w] = cy[..., :k_h, :k_w]
        return c * ((fh.s[:, None] * fw.s[None, :]) > 0)

    def U(self, c: Tensor) -> Tensor:
        fh, fw = self._hw(c)
        m_h, m_w = fh.U.shape[0], fw.U.shape[0]
        k_h, k_w = min(m_h, c.shape[-2]), min(m_w, c.shape[-1])
        cm = c.new_zeros(*c.shape[:2], m_h, m_w)
        cm[..., :k_h, :k_w] = c[..., :k_h, :k_w]
        return fh.U @ cm @ fw.U.T

    def pinv(self, y: Tensor, max_iter: int | None = None, tol: float | None = None) -> Tensor:
        """Exact ``A^+ y = A_h^+ Y A_w^{+T}`` through the 1-D SVDs (cheaper than the 2-D ``V (U^T y / s)``)."""
        fh, fw = self._hw_from_y(y)
        return _pinv_1d(fh) @ y @ _pinv_1d(fw).T

    def __repr__(self) -> str:
        return f"SeparableOperator(A_h={tuple(self.A_h.shape)}, A_w={tuple(self.A_w.shape)})"
