"""Linear degradation operators: forward, adjoint, pseudo-inverse, prox, SVD.

An operator maps images ``x`` of shape (B, C, H, W) to measurements ``y``
(usually (B, C', H', W')). Subclasses implement :meth:`LinearOperator.forward`
and, where they can, the exact :meth:`adjoint`, :meth:`pinv`, :meth:`prox` and
the SVD hooks. Everything else has a generic fallback:

* ``adjoint`` by autograd (a vector-Jacobian product of ``forward``),
* ``pinv`` by conjugate gradient on the normal equations (minimum-norm solution),
* ``prox`` by conjugate gradient, or in closed form through the SVD.

Operators without an SVD may speed up both conjugate-gradient solvers with
:meth:`LinearOperator.cg_preconditioner`.

SVD convention (used by DDRM and DDNM). The operator is factored as
``A = U diag(s) V^T``, where the *coefficient space* has the layout of ``x``:

* ``V_adjoint(x) -> c`` and ``V(c) -> x`` are orthogonal (unitary) maps between
  images and coefficients of the same shape as ``x``. Coefficients may be complex
  (e.g. the unitary FFT for circular blur); ``V`` then returns the real part.
* ``singular_values(x)`` is a real tensor broadcastable to ``c``, zero where a
  coefficient is not measured.
* ``U(c) -> y`` maps coefficients (only entries with ``s > 0`` matter) to
  measurements and ``U_adjoint(y) -> c`` maps back, zero where ``s == 0``.

So ``forward(x) == U(s * V_adjoint(x))``. Random coefficients must be drawn as
``V_adjoint(randn_like(x))`` so that complex bases keep their symmetry.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..errors import OperatorError, ShapeError

Tensor = torch.Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product, shape (B, 1, 1, 1)."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-6,
    precond: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply``.

    (Preconditioned) conjugate gradient (Hestenes & Stiefel, 1952; Saad, *Iterative
    Methods for Sparse Linear Systems*, 2003, Alg. 9.1). Batched and per-sample
    independent: each sample has its own step sizes and freezes once its relative
    residual ``||b - apply(x)|| / ||b||`` (the recurrence's, unpreconditioned) is below
    ``tol``, so a batch gives the single runs' results. Started from zero on a
    consistent semi-definite system without ``precond``, CG returns the
    minimum-norm solution.

    Args:
        apply: the operator, (B, ...) -> (B, ...), acting on each sample separately.
        b: (B, ...) right-hand side.
        x0: optional start (default zero).
        max_iter: iteration cap (the result is then returned unconverged).
        tol: relative residual at which a sample stops.
        precond: optional ``r -> M^{-1} r`` for a symmetric positive definite ``M``
            approximating ``apply`` (per-sample, like ``apply``).
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    z = r if precond is None else precond(r)
    p = z.clone()
    rs = _dot(r, r)
    rz = rs if precond is None else _dot(r, z)
    limit = tol**2 * _dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
    one = torch.ones_like(rz)
    for _ in range(max_iter):
        active = rs > limit
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = _dot(p, ap)
        active = active & (pap > 0) & (rz > 0)
        alpha = torch.where(active, rz / pap.where(active, one), 0)
        x = x + alpha * p
        r = r - alpha * ap
        z = r if precond is None else precond(r)
        rs_new = _dot(r, r)
        rz_new = rs_new if precond is None else _dot(r, z)
        beta = torch.where(active, rz_new / rz.where(active, one), 0)
        # A frozen sample keeps x and r: its p is reset but never used (alpha = 0).
        p = z + beta * p
        rs, rz = torch.where(active, rs_new, rs), torch.where(active, rz_new, rz)
    return x


class Factors(NamedTuple):
    """A matrix ``A`` (m, n) and its full SVD; ``s`` zero-padded to length n."""

    A: Tensor
    U: Tensor
    s: Tensor
    V: Tensor


def svd_factors(matrix: Tensor) -> Factors:
    """Full SVD of a 1-D matrix (m, n), computed in float64.

    Singular values below ``max(m, n) * eps(float64) * s_max`` are set to 0
    (the numerical rank, as in :func:`numpy.linalg.pinv`).
    """
    a = matrix.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(a, full_matrices=True)
    s = torch.where(s > max(a.shape) * torch.finfo(a.dtype).eps * s.max(), s, torch.zeros_like(s))
    padded = torch.zeros(a.shape[1], dtype=a.dtype)
    padded[: s.numel()] = s
    return Factors(a, u, padded, vh.T)


class LinearOperator:
    """Base class of linear degradations ``y = A x``.

    Subclasses must implement :meth:`forward`. Override :meth:`adjoint`,
    :meth:`pinv`, :meth:`prox` and the SVD hooks when an exact form exists.
    Operators hold tensors (masks, kernels) that are moved to the device and
    dtype of the input on each call, so one operator serves any device/dtype.

    Args:
        in_shape: optional (C, H, W) of the images the operator accepts; needed
            only by forward-only operators whose output shape differs from the
            input's (the generic adjoint must know where to linearise).
    """

    #: whether :meth:`V`, :meth:`V_adjoint`, :meth:`U`, :meth:`U_adjoint` and
    #: :meth:`singular_values` are available.
    has_svd: bool = False

    #: iteration cap and relative tolerance of the conjugate-gradient :meth:`prox`
    #: (``None``: 1e-12 in float64, 1e-6 otherwise). Far below what a fit needs because
    #: a CG result short of convergence is chaotic in its input: at ``lam = rho sigma_y^2
    #: ~ 1e-8`` (DiffPIR's first steps) a 1e-16 change of ``z`` moved the former 200-step
    #: result by 9e-4, breaking "batch == single runs". Hard problems (61x61 kernels at
    #: lam <= 1e-4) run to the cap; lower it per operator (``op.cg_max_iter = 200``) for speed.
    cg_max_iter: int = 1000
    cg_tol: float | None = None

    def __init__(self, in_shape: tuple[int, int, int] | None = None) -> None:
        self.in_shape = tuple(in_shape) if in_shape is not None else None

    # -- the operator itself -------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Apply ``A``: (B, C, H, W) image in [0, 1] -> measurement."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def __call__(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.forward(x)

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`ShapeError` with a clear message if ``x`` is not a valid input."""
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"{type(self).__name__} expects images of shape (B, C, H, W); got {shape}")
        if self.in_shape is not None and tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"{type(self).__name__} was built for images of shape (B, {', '.join(map(str, self.in_shape))}); "
                f"got {tuple(x.shape)}"
            )

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the images that produce measurements of ``y_shape``.

        Default: ``in_shape`` with the batch of ``y`` if known, else ``y_shape``
        (square operators). Operators that change the size override this.
        """
        if self.in_shape is not None:
            return (y_shape[0], *self.in_shape)
        return tuple(y_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        """Apply ``A^T`` (generic: vector-Jacobian product of :meth:`forward`)."""
        x0 = torch.zeros(self.x_shape(tuple(y.shape)), device=y.device, dtype=y.dtype)
        with torch.enable_grad():
            _, vjp = torch.func.vjp(self.forward, x0)
            (out,) = vjp(y)
        return out

    def normal(self, x: Tensor) -> Tensor:
        """Apply ``A^T A``."""
        return self.adjoint(self.forward(x))

    # -- inverses ------------------------------------------------------------
    def pinv(self, y: Tensor, max_iter: int = 200, tol: float = 1e-6) -> Tensor:
        """Moore-Penrose pseudo-inverse ``A^+ y`` (minimum-norm least squares).

        Exact through the SVD when available, else conjugate gradient on
        ``A^T A x = A^T y`` started at zero, preconditioned by
        :meth:`cg_preconditioner` when the operator has one (where ``A^T A`` is
        singular the preconditioned result need not be the minimum-norm solution).
        """
        if self.has_svd:
            like = torch.empty(self.x_shape(tuple(y.shape)), device=y.device, dtype=y.dtype)
            s = self.singular_values(like)
            c = self.U_adjoint(y)
            return self.V(c * _safe_inverse(s))
        b = self.adjoint(y)
        precond = self.cg_preconditioner(b, b.new_zeros(1, 1, 1, 1))
        return conjugate_gradient(self.normal, b, max_iter=max_iter, tol=tol, precond=precond)

    def prox(self, z: Tensor, y: Tensor, rho: float | Tensor, sigma_y: float | Tensor) -> Tensor:
        """Data-fidelity proximal map.

        Solves ``argmin_x ||A x - y||^2 / (2 sigma_y^2) + rho / 2 ||x - z||^2``,
        i.e. ``(A^T A + rho sigma_y^2 I) x = A^T y + rho sigma_y^2 z``.
        With ``sigma_y == 0`` this is the projection of ``z`` onto ``{x : A x = y}``.
        Closed form through the SVD when available, else (preconditioned) conjugate
        gradient with :attr:`cg_max_iter` and :attr:`cg_tol`.

        Args:
            z: (B, C, H, W) point to stay close to.
            y: measurement.
            rho: penalty weight, scalar or per-sample tensor (B,).
            sigma_y: measurement noise std on the [0, 1] scale, scalar or (B,).
        """
        lam = _per_sample(rho, z) * _per_sample(sigma_y, z) ** 2
        if self.has_svd:
            s = self.singular_values(z)
            cz = self.V_adjoint(z)
            cy = self.U_adjoint(y)
            denom = s * s + lam
            # Coordinates with s = 0 and lam = 0 are unconstrained: keep z there.
            c = torch.where(denom > 0, (s * cy + lam * cz) / denom.where(denom > 0, torch.ones_like(denom)), cz)
            return self.V(c)
        r = y - self.forward(z)
        if bool((lam == 0).all()):
            return z + self.pinv(r)
        # Correction form: (A^T A + lam I) d = A^T (y - A z), x = z + d, d0 = 0, so the
        # tolerance is relative to z's misfit, not to ||A^T y + lam z|| (mostly lam z).
        b = self.adjoint(r)
        tol = self.cg_tol if self.cg_tol is not None else (1e-12 if b.dtype == torch.float64 else 1e-6)
        precond = self.cg_preconditioner(b, lam)
        return z + conjugate_gradient(
            lambda v: self.normal(v) + lam * v, b, max_iter=self.cg_max_iter, tol=tol, precond=precond
        )

    def cg_preconditioner(self, like: Tensor, lam: Tensor) -> Callable[[Tensor], Tensor] | None:
        """Optional ``r -> M^{-1} r`` with ``M`` symmetric positive definite and close to ``A^T A + lam I``.

        Used by the conjugate-gradient :meth:`pinv` (``lam = 0``) and :meth:`prox`;
        the default ``None`` means plain CG. ``like`` is an image batch (B, C, H, W)
        and ``lam`` a (B or 1, 1, 1, 1) tensor on its device and dtype.
        """
        return None

    # -- SVD hooks (see the module docstring) --------------------------------
    def V_adjoint(self, x: Tensor) -> Tensor:
        raise self._no_svd()

    def V(self, c: Tensor) -> Tensor:
        raise self._no_svd()

    def U_adjoint(self, y: Tensor) -> Tensor:
        raise self._no_svd()

    def U(self, c: Tensor) -> Tensor:
        raise self._no_svd()

    def singular_values(self, like: Tensor) -> Tensor:
        """Real singular values broadcastable to the coefficients of ``like``'s batch."""
        raise self._no_svd()

    def _no_svd(self) -> OperatorError:
        return OperatorError(
            f"{type(self).__name__} has no SVD, which DDRM and DDNM need; use DPS, DiffPIR or PnP-ADMM, "
            "or wrap a small operator in DenseSVDOperator"
        )

    # -- composition ---------------------------------------------------------
    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        """``A @ B`` is the operator ``x -> A(B(x))``."""
        from .compose import Composition

        return Composition(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionOperator(LinearOperator):
    """A linear operator from a plain function ``forward(x) -> y``.

    The adjoint comes from autograd and the pseudo-inverse from conjugate
    gradient, so every solver works with it. ``forward`` must be linear.

    Example:
        >>> op = FunctionOperator(lambda x: x[..., ::2, ::2], in_shape=(3, 64, 64))
    """

    def __init__(self, forward: Callable[[Tensor], Tensor], in_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__(in_shape)
        self._forward = forward

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x)

    def __repr__(self) -> str:
        name = getattr(self._forward, "__name__", "function")
        return f"FunctionOperator({name})"


class DenseSVDOperator(LinearOperator):
    """Give any small linear operator an exact SVD by building its matrix.

    The matrix of ``op`` (the same for every sample of a batch) is assembled
    column by column from ``op.forward`` and decomposed with
    :func:`torch.linalg.svd`. Meant for small images (C*H*W up to ~16k) such as
    unit tests and user operators on patches.

    Args:
        op: the operator to factor.
        in_shape: (C, H, W) of its input images.
    """

    has_svd = True

    def __init__(self, op: LinearOperator | Callable[[Tensor], Tensor], in_shape: tuple[int, int, int]) -> None:
        super().__init__(in_shape)
        self.op = op if isinstance(op, LinearOperator) else FunctionOperator(op, in_shape)
        n = int(torch.tensor(in_shape).prod())
        eye = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
        cols = self.op.forward(eye)
        self.y_shape = tuple(cols.shape[1:])
        matrix = cols.reshape(n, -1).T  # (m, n)
        # Round-off singular values count as zeros (numerical rank), else pinv blows up.
        f = svd_factors(matrix)
        self.matrix, self._u, self._vh, self._s = matrix, f.U, f.V.T, f.s
        self._m = matrix.shape[0]

    def _t(self, t: Tensor, like: Tensor) -> Tensor:
        return t.to(device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor) -> Tensor:
        out = x.flatten(1) @ self._t(self.matrix, x).T
        return out.view(x.shape[0], *self.y_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        out = y.flatten(1) @ self._t(self.matrix, y)
        return out.view(y.shape[0], *self.in_shape)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return (x.flatten(1) @ self._t(self._vh, x).T).view_as(x)

    def V(self, c: Tensor) -> Tensor:
        return (c.flatten(1) @ self._t(self._vh, c)).view(c.shape[0], *self.in_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        n = self._s.numel()
        cy = y.flatten(1) @ self._t(self._u, y)  # (B, m)
        c = torch.zeros(y.shape[0], n, device=y.device, dtype=y.dtype)
        k = min(n, self._m)
        c[:, :k] = cy[:, :k]
        c = c * (self._t(self._s, y) > 0)
        return c.view(y.shape[0], *self.in_shape)

    def U(self, c: Tensor) -> Tensor:
        k = min(self._s.numel(), self._m)
        cm = torch.zeros(c.shape[0], self._m, device=c.device, dtype=c.dtype)
        cm[:, :k] = c.flatten(1)[:, :k]
        return (cm @ self._t(self._u, c).T).view(c.shape[0], *self.y_shape)

    def singular_values(self, like: Tensor) -> Tensor:
        return self._t(self._s, like).view(1, *self.in_shape)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (y_shape[0], *self.in_shape)

    def __repr__(self) -> str:
        return f"DenseSVDOperator({self.op!r})"


def _safe_inverse(s: Tensor) -> Tensor:
    """1/s where s > 0, else 0 (the pseudo-inverse of a diagonal)."""
    return torch.where(s > 0, 1.0 / s.where(s > 0, torch.ones_like(s)), torch.zeros_like(s))


def _per_sample(v: float | Tensor, like: Tensor) -> Tensor:
    """A scalar or a (B,) tensor as a (B, 1, 1, 1) tensor on ``like``'s device/dtype."""
    t = torch.as_tensor(v, device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)
    if t.dim() == 0:
        return t.view(1, 1, 1, 1)
    return t.reshape(-1, 1, 1, 1)
