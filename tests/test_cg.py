"""Preconditioned conjugate gradient and the CG pinv/prox of operators without an SVD (reflect blur)."""

from __future__ import annotations

import pytest
import torch

import dataclasses

from pnp_restore.operators import Blur, CGConfig, FunctionOperator, conjugate_gradient, gaussian_kernel, motion_kernel
from pnp_restore.operators.base import LinearOperator

f64 = torch.float64


def _spd(b: int, n: int, cond: float, seed: int = 0) -> torch.Tensor:
    """(b, n, n) symmetric positive definite matrices with eigenvalues log-spaced in [1/cond, 1]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(b, n, n, generator=g, dtype=f64))
    eig = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), n, dtype=f64)
    return q @ torch.diag_embed(eig.expand(b, n)) @ q.transpose(-1, -2)


def _counted(fn):
    calls = [0]

    def wrapped(v):
        calls[0] += 1
        return fn(v)

    return wrapped, calls


def _matvec(m: torch.Tensor):
    """Per-sample ``v -> m[i] v[i]`` (one matrix-vector product each, so a batch rounds like single runs)."""
    return lambda v: torch.stack([mi @ vi for mi, vi in zip(m, v)])


def test_pcg_solves_spd_systems_and_exact_preconditioner_takes_one_step():
    m = _spd(3, 40, 1e4)
    b = torch.randn(3, 40, generator=torch.Generator().manual_seed(1), dtype=f64)
    ref = torch.linalg.solve(m, b)
    x = conjugate_gradient(_matvec(m), b, max_iter=500, tol=1e-12)
    assert float((x - ref).norm() / ref.norm()) < 1e-8
    apply, calls = _counted(_matvec(m))
    x = conjugate_gradient(apply, b, tol=1e-12, precond=_matvec(torch.linalg.inv(m)))
    assert calls[0] <= 2
    assert float((x - ref).norm() / ref.norm()) < 1e-10
    # Jacobi preconditioning of a badly scaled system: fewer iterations than plain CG
    d = torch.logspace(0, 3, 40, dtype=f64)
    ms = d[:, None] * m * d[None, :]
    plain, n_plain = _counted(_matvec(ms))
    pre, n_pre = _counted(_matvec(ms))
    x1 = conjugate_gradient(plain, b, max_iter=2000, tol=1e-10)
    x2 = conjugate_gradient(pre, b, max_iter=2000, tol=1e-10, precond=lambda r: r / torch.diagonal(ms, dim1=-2, dim2=-1))
    assert n_pre[0] < n_plain[0]
    assert float((x2 - x1).norm() / x1.norm()) < 1e-5


def test_pcg_batch_equals_single_runs():
    """Samples of different difficulty stop at different iterations; each frozen sample keeps its
    result, so the batch gives the single runs' answers (same arithmetic: bitwise here)."""
    m = torch.cat([_spd(1, 30, c, seed=i) for i, c in enumerate((10.0, 1e3, 1e6))])
    b = torch.randn(3, 30, generator=torch.Generator().manual_seed(2), dtype=f64)
    jac = lambda mm: (lambda r: r / torch.diagonal(mm, dim1=-2, dim2=-1))  # noqa: E731
    for precond in (None, jac(m)):
        batch = conjugate_gradient(_matvec(m), b, max_iter=300, tol=1e-9, precond=precond)
        for i in range(3):
            pi = None if precond is None else jac(m[i : i + 1])
            single = conjugate_gradient(_matvec(m[i : i + 1]), b[i : i + 1], max_iter=300, tol=1e-9, precond=pi)
            assert torch.equal(batch[i : i + 1], single)


def _problem(kernel, dtype=f64, batch=1, size=16):
    g = torch.Generator().manual_seed(0)
    op = Blur(kernel, "reflect")
    z = torch.rand(batch, 3, size, size, generator=g, dtype=f64)
    y = op(torch.rand(batch, 3, size, size, generator=g, dtype=f64))
    return op, z.to(dtype), y.to(dtype), g


KERNELS = {"gauss": gaussian_kernel(5, 1.0), "motion": motion_kernel(5, 0.5, seed=1)}


@pytest.mark.parametrize("name", list(KERNELS))
def test_reflect_prox_converges_and_is_stable_at_tiny_lam(name):
    """DiffPIR's first steps: lam = rho sigma_y^2 = 1.6e-8. Optimality residual measured 2e-13
    (former plain CG stopped at 200 iterations: 3e-5). A 1e-16 change of z moves the result by
    4e-11 (gauss) and 3e-9 (motion, whose spectrum nearly vanishes: rounding of A^T (y - A z) over
    lam = 6e-9 is the floor of any image-domain solver); the former CG moved it by 9e-4."""
    op, z, y, g = _problem(KERNELS[name])
    rho, sy = 1 / 160.0**2, 0.02
    lam = rho * sy**2
    x = op.prox(z, y, rho, sy)
    rhs = op.adjoint(y) + lam * z
    assert float((op.normal(x) + lam * x - rhs).norm() / rhs.norm()) < 1e-6
    x2 = op.prox(z + 1e-16 * torch.randn(z.shape, generator=g, dtype=f64), y, rho, sy)
    assert float((x - x2).abs().max()) < (1e-9 if name == "gauss" else 2e-8)


def test_reflect_preconditioner_is_spd_and_cuts_iterations():
    op, z, y, _ = _problem(KERNELS["gauss"])
    lam = torch.full((1, 1, 1, 1), 1e-4, dtype=f64)
    pre = op.cg_preconditioner(z, lam)
    u, v = torch.randn_like(z), torch.randn_like(z)
    assert abs(float((u * pre(v)).sum() - (pre(u) * v).sum())) < 1e-10 * float(u.norm() * pre(v).norm())
    assert float((u * pre(u)).sum()) > 0
    assert Blur(gaussian_kernel(5, 1.0)).cg_preconditioner(z, lam) is None  # circular: closed form
    b = op.adjoint(y - op(z))
    plain, n_plain = _counted(lambda v: op.normal(v) + lam * v)
    pcg, n_pcg = _counted(lambda v: op.normal(v) + lam * v)
    conjugate_gradient(plain, b, max_iter=2000, tol=1e-10)
    conjugate_gradient(pcg, b, max_iter=2000, tol=1e-10, precond=pre)
    assert n_pcg[0] < 0.8 * n_plain[0]


def test_reflect_prox_and_pinv_batch_equals_single_runs():
    kernels = torch.stack([motion_kernel(5, 0.5, seed=s) for s in range(3)])
    op, z, y, _ = _problem(kernels, batch=3)
    rho = torch.tensor([1 / 160.0**2, 1.0, 100.0], dtype=f64)
    px, pi = op.prox(z, y, rho, 0.02), op.pinv(y)
    for i in range(3):
        single, sl = Blur(kernels[i], "reflect"), slice(i, i + 1)
        assert float((px[sl] - single.prox(z[sl], y[sl], rho[sl], 0.02)).abs().max()) < 1e-10
        assert float((pi[sl] - single.pinv(y[sl])).abs().max()) < 1e-10


@pytest.mark.parametrize("name", list(KERNELS))
def test_reflect_pinv_fits_measurements_in_the_range(name):
    """A pinv(y) = y for y = A x. With the default tol (1e-6 on the normal equations) the fit is
    only 5e-4 (gauss; 7e-6 motion; former plain CG 2e-4 / 5e-6): the ill-conditioned normal equations
    hide misfit. Solved to 1e-12: 9e-12 (gauss) and 6e-8 (motion)."""
    op, z, y, _ = _problem(KERNELS[name])
    assert float((op(op.pinv(y)) - y).norm() / y.norm()) < 2e-3
    x = op.pinv(y, max_iter=1000, tol=1e-12)
    assert float((op(x) - y).norm() / y.norm()) < 1e-6


def test_reflect_prox_float32_and_generic_operator_fallback():
    op, z, y, _ = _problem(KERNELS["motion"], dtype=torch.float32)
    x = op.prox(z, y, 1.0, 0.05)
    assert x.dtype == torch.float32
    ref = op.prox(z.double(), y.double(), 1.0, 0.05)
    assert float((x.double() - ref).abs().max()) < 1e-4
    # An operator without a preconditioner (plain CG) gives the same prox.
    plain = type("PlainReflectBlur", (Blur,), {"cg_preconditioner": LinearOperator.cg_preconditioner})(
        KERNELS["motion"], "reflect"
    )
    assert float((plain.prox(z.double(), y.double(), 1.0, 0.05) - ref).abs().max()) < 1e-9


def test_one_cg_configuration_serves_pinv_and_prox():
    """pinv's defaults and prox's cap/tolerance come from ``op.cg`` (one CGConfig), for every operator."""
    op, z, y, _ = _problem(KERNELS["gauss"])
    assert op.cg == LinearOperator.cg == CGConfig() and CGConfig().prox_tolerance(torch.float32) == 1e-6
    b = op.adjoint(y)
    pre = op.cg_preconditioner(b, b.new_zeros(1, 1, 1, 1))
    ref = conjugate_gradient(op.normal, b, max_iter=op.cg.pinv_max_iter, tol=op.cg.pinv_tol, precond=pre)
    assert torch.equal(op.pinv(y), ref)
    full = op.prox(z, y, 1.0, 0.05)
    op.cg = dataclasses.replace(op.cg, prox_max_iter=2, pinv_max_iter=1)
    assert float((op.prox(z, y, 1.0, 0.05) - full).abs().max()) > 1e-8  # the cap applies
    assert torch.equal(op.pinv(y), conjugate_gradient(op.normal, b, max_iter=1, tol=op.cg.pinv_tol, precond=pre))
    assert Blur(KERNELS["gauss"], "reflect").cg.prox_max_iter == 1000  # per instance, the class default is untouched
    # a FunctionOperator has no preconditioner: plain CG with the same settings
    f = FunctionOperator(lambda v: v[..., ::2, ::2], in_shape=(3, 16, 16))
    yf = f(z)
    assert torch.equal(f.pinv(yf), conjugate_gradient(f.normal, f.adjoint(yf), max_iter=200, tol=1e-6))
