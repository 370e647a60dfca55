"""Degradation operators: forward, adjoint, pseudo-inverse, prox, SVD.

An operator maps images ``x`` of shape (B, C, H, W) to measurements ``y``
(usually (B, C', H', W')). :class:`Operator` is the base of all of them (a differentiable
forward model, e.g. :class:`NonlinearOperator`); for linear ones, two base classes:

* :class:`LinearOperator`: subclasses implement :meth:`~LinearOperator.forward`;
  ``adjoint`` comes from autograd (a vector-Jacobian product of ``forward``), and
  ``pinv`` and ``prox`` from conjugate gradient (:mod:`.cg`, one :class:`~.cg.CGConfig`),
  optionally preconditioned by :meth:`~LinearOperator.cg_preconditioner`.
* :class:`DecomposableOperator` (as deepinv's ``DecomposablePhysics``): subclasses
  implement the SVD hooks below; ``forward``, ``adjoint``, ``pinv`` and ``prox``
  derive from them (subclasses may override ``forward``/``adjoint`` with a cheaper
  direct form).

SVD convention (used by DDRM and DDNM). The operator is factored as
``A = U diag(s) V^T``, where the *coefficient space* has the layout of ``x``:

* ``V_adjoint(x) -> c`` and ``V(c) -> x`` are orthogonal (unitary) maps between
  images and coefficients of the same shape as ``x``. Coefficients may be complex
  (e.g. the unitary FFT for circular blur); ``V`` then returns the real part.
* ``singular_values(x)`` is a real tensor broadcastable to ``c``, zero where a
  coefficient is not measured (below :func:`truncate_singular_values`'s floor).
* ``U(c) -> y`` maps coefficients (only entries with ``s > 0`` matter) to
  measurements and ``U_adjoint(y) -> c`` maps back, zero where ``s == 0``.

So ``forward(x) == U(s * V_adjoint(x))``. Random coefficients must be drawn as
``V_adjoint(randn_like(x))`` so that complex bases keep their symmetry.

Devices and dtypes. Operators are :class:`torch.nn.Module` s: masks, kernels,
matrices and the factors derived from them (FFTs of kernels, 1-D SVDs, computed the
first time an image size is seen) are buffers, so ``op.to(device)`` moves them once.
They stay float64 (a dtype given to ``.to()`` is ignored): the factorisations need
it, and the results do not depend on when ``.to()`` was called. Each call uses its
buffers through :func:`cast`, which returns them on the input's device and in its
(real) precision: free when they match, one elementwise copy otherwise. An input on
another device than the operator still works, at the price of a copy per call; move
the operator once (``op.to(y.device)``) to avoid it: the results are the same.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import OperatorError, ShapeError
from .cg import CGConfig, conjugate_gradient
from .factors import safe_inverse, svd_factors

Tensor = torch.Tensor

def cast(t: Tensor, like: Tensor) -> Tensor:
    """Buffer ``t`` on ``like``'s device, in ``like``'s real precision (a no-op when they match)."""
    return t.to(device=like.device, dtype=like.real.dtype)


def _per_sample(v: float | Tensor, like: Tensor) -> Tensor:
    """A scalar or a (B,) tensor as a (B, 1, 1, 1) tensor on ``like``'s device/dtype."""
    t = torch.as_tensor(v, device=like.device, dtype=like.real.dtype)
    if t.dim() == 0:
        return t.view(1, 1, 1, 1)
    return t.reshape(-1, 1, 1, 1)


class Operator(torch.nn.Module):
    """Base class of every degradation ``y = A(x)``: a differentiable forward model.

    Subclasses implement :meth:`forward`. Nothing else is assumed: Jacobian-vector and
    vector-Jacobian products come from autograd (:meth:`jvp`, :meth:`vjp`), so solvers that
    only differentiate the forward model (DPS, DAPS, RED-diff, PnP-DM) accept any subclass.
    Linear operators derive from :class:`LinearOperator`, which adds ``A^T``, ``A^+``, prox and
    the SVD hooks; :class:`NonlinearOperator` is the base of the others.

    Args:
        in_shape: optional (C, H, W) of the images the operator accepts; needed only by
            operators whose output shape differs from the input's (to know where to linearise).
    """

    #: whether ``A`` is linear (:class:`LinearOperator` and its subclasses).
    linear: bool = False
    #: whether :meth:`V`, :meth:`V_adjoint`, :meth:`U`, :meth:`U_adjoint` and
    #: :meth:`singular_values` are available.
    has_svd: bool = False

    def __init__(self, in_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape) if in_shape is not None else None
        # Empty: carries the device the operator was moved to, for derived buffers.
        self.register_buffer("_home", torch.empty(0, dtype=torch.float64), persistent=False)

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.cuda()``, ...: this operator's buffers follow the device only (see the module docstring)."""
        own = {id(b) for b in self._buffers.values() if b is not None}

        def device_only(t: Tensor) -> Tensor:
            return t.to(device=fn(t.new_empty(0)).device) if id(t) in own else fn(t)

        return super()._apply(device_only, recurse)

    def derived(self, name: str, make: Callable[[], Tensor]) -> Tensor:
        """Buffer ``name``, computed by ``make()`` (float64, from the operator's data) on first use.

        For factors that depend on the image size (the FFT of a kernel on an H x W
        grid, the SVD of a 1-D matrix of length n). ``make`` computes on the CPU, so the
        factors are the same whatever the device. Registered as a non-persistent buffer
        on the operator's device, so ``.to()`` moves it with the others.
        """
        if name not in self._buffers:
            self.register_buffer(name, make().to(self._home.device), persistent=False)
        return self._buffers[name]

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

    def jvp(self, x: Tensor, v: Tensor) -> Tensor:
        """``J_A(x) v``: the directional derivative of :meth:`forward` at ``x`` along ``v`` (autograd)."""
        with torch.enable_grad():
            return torch.func.jvp(self.forward, (x,), (v,))[1]

    def vjp(self, x: Tensor, u: Tensor) -> Tensor:
        """``J_A(x)^T u``: the vector-Jacobian product of :meth:`forward` at ``x`` (autograd)."""
        with torch.enable_grad():
            _, pullback = torch.func.vjp(self.forward, x)
            return pullback(u)[0]

    def __matmul__(self, other: "Operator") -> "Operator":
        """``A @ B`` is the operator ``x -> A(B(x))`` (a :class:`LinearOperator` when both are linear)."""
        from .compose import Composition

        if self.linear and other.linear:
            return Composition(self, other)
        return NonlinearOperator(lambda x: self.forward(other.forward(x)), in_shape=other.in_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonlinearOperator(Operator):
    """A nonlinear degradation ``y = A(x)``: forward only, differentiable.

    Subclass it and implement :meth:`forward`, or wrap a function. Optionally implement
    :meth:`pinv`, a right inverse ``A^+`` with ``A(A^+(y)) ~ y`` (a JPEG decoder, say), which
    ΠGDM uses; DDRM, DDNM, DiffPIR and PnP-ADMM need a :class:`LinearOperator` and say so.

    Example:
        >>> op = NonlinearOperator(lambda x: x.clamp(0, 0.8))
    """

    def __init__(self, forward: Callable[[Tensor], Tensor] | None = None,
                 in_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__(in_shape)
        self._forward = forward

    def forward(self, x: Tensor) -> Tensor:
        if self._forward is None:
            raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")
        return self._forward(x)

    def pinv(self, y: Tensor) -> Tensor:
        """A right inverse ``A^+(y)`` (an image whose measurement is ~ ``y``), where the operator has one."""
        raise OperatorError(f"{type(self).__name__} has no pseudo-inverse; use a solver that only needs its forward model")

    def __repr__(self) -> str:
        if self._forward is None:
            return f"{type(self).__name__}()"
        return f"NonlinearOperator({getattr(self._forward, '__name__', 'function')})"


class LinearOperator(Operator):
    """Base class of linear degradations ``y = A x``.

    Subclasses must implement :meth:`forward`; override :meth:`adjoint`, :meth:`pinv`
    and :meth:`prox` when an exact form exists (or derive from
    :class:`DecomposableOperator` when the operator has an SVD).

    Args:
        in_shape: optional (C, H, W) of the images the operator accepts; needed
            only by forward-only operators whose output shape differs from the
            input's (the generic adjoint must know where to linearise).
    """

    linear = True

    #: conjugate-gradient settings of the generic :meth:`pinv` and :meth:`prox`.
    cg: CGConfig = CGConfig()

    def _x_like(self, y: Tensor) -> Tensor:
        """An uninitialised image batch for measurements ``y`` (its shape, device and dtype only are used)."""
        return torch.empty(self.x_shape(tuple(y.shape)), device=y.device, dtype=y.real.dtype)

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

    # -- inverses (generic: conjugate gradient) ------------------------------
    def pinv(self, y: Tensor, max_iter: int | None = None, tol: float | None = None) -> Tensor:
        """Moore-Penrose pseudo-inverse ``A^+ y`` (minimum-norm least squares).

        Conjugate gradient on ``A^T A x = A^T y`` started at zero (``max_iter`` and
        ``tol`` default to :attr:`cg`), preconditioned by :meth:`cg_preconditioner`
        when the operator has one (where ``A^T A`` is singular the preconditioned
        result need not be the minimum-norm solution).
        """
        b = self.adjoint(y)
        precond = self.cg_preconditioner(b, b.new_zeros(1, 1, 1, 1))
        max_iter = self.cg.pinv_max_iter if max_iter is None else max_iter
        tol = self.cg.pinv_tol if tol is None else tol
        return conjugate_gradient(self.normal, b, max_iter=max_iter, tol=tol, precond=precond)

    def prox(self, z: Tensor, y: Tensor, rho: float | Tensor, sigma_y: float | Tensor) -> Tensor:
        """Data-fidelity proximal map.

        Solves ``argmin_x ||A x - y||^2 / (2 sigma_y^2) + rho / 2 ||x - z||^2``,
        i.e. ``(A^T A + rho sigma_y^2 I) x = A^T y + rho sigma_y^2 z``.
        With ``sigma_y == 0`` this is the projection of ``z`` onto ``{x : A x = y}``.
        Generic: (preconditioned) conjugate gradient with :attr:`cg`.

        Args:
            z: (B, C, H, W) point to stay close to.
            y: measurement.
            rho: penalty weight, scalar or per-sample tensor (B,).
            sigma_y: measurement noise std on the [0, 1] scale, scalar or (B,).
        """
        lam = _per_sample(rho, z) * _per_sample(sigma_y, z) ** 2
        r = y - self.forward(z)
        if bool((lam == 0).all()):
            return z + self.pinv(r)
        # Correction form: (A^T A + lam I) d = A^T (y - A z), x = z + d, d0 = 0, so the
        # tolerance is relative to z's misfit, not to ||A^T y + lam z|| (mostly lam z).
        b = self.adjoint(r)
        precond = self.cg_preconditioner(b, lam)
        return z + conjugate_gradient(
            lambda v: self.normal(v) + lam * v,
            b,
            max_iter=self.cg.prox_max_iter,
            tol=self.cg.prox_tolerance(b.dtype),
            precond=precond,
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



class DecomposableOperator(LinearOperator):
    """An operator given by its SVD ``A = U diag(s) V^T`` (see the module docstring).

    Subclasses implement :meth:`V_adjoint`, :meth:`V`, :meth:`U_adjoint`, :meth:`U`
    and :meth:`singular_values`; ``forward``, ``adjoint``, ``pinv`` and ``prox``
    follow in closed form (after deepinv's ``DecomposablePhysics``). An instance
    whose ``has_svd`` is False (a reflect-padded :class:`~.blur.Blur`) falls back to
    the conjugate-gradient ``pinv`` and ``prox`` of :class:`LinearOperator`.
    """

    has_svd = True

    def forward(self, x: Tensor) -> Tensor:
        return self.U(self.singular_values(x) * self.V_adjoint(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.V(self.singular_values(self._x_like(y)) * self.U_adjoint(y))

    def pinv(self, y: Tensor, max_iter: int | None = None, tol: float | None = None) -> Tensor:
        """``A^+ y = V (U^T y / s)`` (``max_iter``/``tol`` apply only without an SVD)."""
        if not self.has_svd:
            return super().pinv(y, max_iter, tol)
        s = self.singular_values(self._x_like(y))
        return self.V(self.U_adjoint(y) * safe_inverse(s))

    def prox(self, z: Tensor, y: Tensor, rho: float | Tensor, sigma_y: float | Tensor) -> Tensor:
        """Closed form in coefficient space: ``c = (s U^T y + lam V^T z) / (s^2 + lam)``, ``lam = rho sigma_y^2``
        (see :meth:`LinearOperator.prox` for the problem solved)."""
        if not self.has_svd:
            return super().prox(z, y, rho, sigma_y)
        lam = _per_sample(rho, z) * _per_sample(sigma_y, z) ** 2
        s = self.singular_values(z)
        cz = self.V_adjoint(z)
        cy = self.U_adjoint(y)
        denom = s * s + lam
        # Coordinates with s = 0 and lam = 0 are unconstrained: keep z there.
        c = torch.where(denom > 0, (s * cy + lam * cz) / denom.where(denom > 0, torch.ones_like(denom)), cz)
        return self.V(c)


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


class DenseSVDOperator(DecomposableOperator):
    """Give any small linear operator an exact SVD by building its matrix.

    The matrix of ``op`` (the same for every sample of a batch) is assembled
    column by column from ``op.forward`` and decomposed with
    :func:`torch.linalg.svd` in float64. Meant for small images (C*H*W up to ~16k)
    such as unit tests and user operators on patches.

    Args:
        op: the operator to factor.
        in_shape: (C, H, W) of its input images.
    """

    def __init__(self, op: LinearOperator | Callable[[Tensor], Tensor], in_shape: tuple[int, int, int]) -> None:
        super().__init__(in_shape)
        self.op = op if isinstance(op, LinearOperator) else FunctionOperator(op, in_shape)
        n = int(torch.tensor(in_shape).prod())
        eye = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
        cols = self.op.forward(eye)
        self.y_shape = tuple(cols.shape[1:])
        matrix = cols.reshape(n, -1).T  # (m, n)
        f = svd_factors(matrix)
        self.register_buffer("matrix", f.A)
        self.register_buffer("_u", f.U)
        self.register_buffer("_vh", f.V.T)
        self.register_buffer("_s", f.s)
        self._m = matrix.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        out = x.flatten(1) @ cast(self.matrix, x).T
        return out.view(x.shape[0], *self.y_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        out = y.flatten(1) @ cast(self.matrix, y)
        return out.view(y.shape[0], *self.in_shape)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return (x.flatten(1) @ cast(self._vh, x).T).view_as(x)

    def V(self, c: Tensor) -> Tensor:
        return (c.flatten(1) @ cast(self._vh, c)).view(c.shape[0], *self.in_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        n = self._s.numel()
        cy = y.flatten(1) @ cast(self._u, y)  # (B, m)
        c = torch.zeros(y.shape[0], n, device=y.device, dtype=y.dtype)
        k = min(n, self._m)
        c[:, :k] = cy[:, :k]
        c = c * (cast(self._s, y) > 0)
        return c.view(y.shape[0], *self.in_shape)

    def U(self, c: Tensor) -> Tensor:
        k = min(self._s.numel(), self._m)
        cm = torch.zeros(c.shape[0], self._m, device=c.device, dtype=c.dtype)
        cm[:, :k] = c.flatten(1)[:, :k]
        return (cm @ cast(self._u, c).T).view(c.shape[0], *self.y_shape)

    def singular_values(self, like: Tensor) -> Tensor:
        return cast(self._s, like).view(1, *self.in_shape)

    def x_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (y_shape[0], *self.in_shape)

    def __repr__(self) -> str:
        return f"DenseSVDOperator({self.op!r})"
