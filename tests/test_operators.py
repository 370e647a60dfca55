"""Numerical checks of the degradation operators (adjoint, pinv, prox, SVD, shapes, errors)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pnp_restore.errors import ConfigError, OperatorError, ShapeError
from pnp_restore.operators import (
    Blur,
    BlurDownsample,
    Colorization,
    Composition,
    DecomposableOperator,
    DenseSVDOperator,
    Denoising,
    GaussianNoise,
    Inpainting,
    LinearOperator,
    SeparableOperator,
    SuperResolution,
    conjugate_gradient,
    gaussian_kernel,
    get,
    motion_kernel,
    random_mask,
)
from pnp_restore.operators.factors import truncate_singular_values
from pnp_restore.operators.superres import bicubic_matrix
from pnp_restore.tasks import Task

f64 = torch.float64


def _kernels(b: int, k: int = 3) -> torch.Tensor:
    """Well-conditioned random positive kernels (b, k, k) with a strong centre (CG converges fast)."""
    g = torch.Generator().manual_seed(7)
    ker = torch.rand(b, k, k, generator=g, dtype=f64)
    ker[:, k // 2, k // 2] += k * k
    return ker


# name -> (factory(H, W, B) -> operator, list of (C, H, W) test shapes). The factories
# build per-sample masks/kernels when B > 1.
CASES = {
    "inpainting": (lambda h, w, b: Inpainting(random_mask((h, w), 0.4, seed=1, batch=b)), [(3, 8, 8), (3, 9, 7), (1, 6, 10)]),
    "inpainting_soft_channels": (
        lambda h, w, b: Inpainting(torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(2), dtype=f64).round() * 0.7),
        [(3, 8, 8), (3, 7, 5)],
    ),
    "sr_bicubic2": (lambda h, w, b: SuperResolution(2), [(3, 8, 8), (1, 12, 6), (2, 10, 14)]),
    "sr_bicubic3": (lambda h, w, b: SuperResolution(3), [(3, 9, 9), (1, 12, 6), (2, 15, 9)]),
    "sr_avgpool2": (lambda h, w, b: SuperResolution(2, "avgpool"), [(3, 8, 8), (1, 12, 6), (2, 10, 14)]),
    "separable": (
        lambda h, w, b: SeparableOperator(
            torch.randn(h - 2, h, generator=torch.Generator().manual_seed(3), dtype=f64),
            torch.randn(w + 1, w, generator=torch.Generator().manual_seed(4), dtype=f64),
        ),
        [(3, 8, 8), (1, 7, 5), (2, 6, 9)],
    ),
    "blur_circular": (lambda h, w, b: Blur(_kernels(b)), [(3, 8, 8), (3, 9, 7), (1, 6, 10)]),
    "blur_circular_gauss": (lambda h, w, b: Blur(gaussian_kernel(5, 0.8)), [(3, 8, 8), (1, 9, 7)]),
    "blur_reflect": (lambda h, w, b: Blur(_kernels(b), padding="reflect"), [(3, 8, 8), (3, 9, 7), (1, 6, 10)]),
    "blur_reflect_even": (lambda h, w, b: Blur(_kernels(b, 4), padding="reflect"), [(1, 8, 8), (2, 9, 7)]),
    "blur_downsample": (lambda h, w, b: BlurDownsample(_kernels(b), 2), [(3, 8, 8), (1, 12, 6), (2, 10, 14)]),
    "denoising": (lambda h, w, b: Denoising(), [(3, 8, 8), (1, 9, 7)]),
    "colorization": (lambda h, w, b: Colorization(), [(3, 8, 8), (3, 9, 7), (3, 5, 6)]),
    "composition": (lambda h, w, b: SuperResolution(2) @ Blur(_kernels(b)), [(3, 8, 8), (1, 12, 6)]),
}
SVD_CASES = [n for n, (make, shapes) in CASES.items() if make(*shapes[0][1:], 1).has_svd]
PARAMS = [(n, s) for n, (_, shapes) in CASES.items() for s in shapes]
IDS = [f"{n}-{'x'.join(map(str, s))}" for n, s in PARAMS]


def _setup(name, shape, batch=2, dtype=f64):
    make, _ = CASES[name]
    op = make(shape[1], shape[2], batch)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *shape, generator=g, dtype=f64).to(dtype)
    return op, x


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("name,shape", PARAMS, ids=IDS)
def test_adjoint_identity(name, shape):
    op, x = _setup(name, shape)
    y = op(x)
    v = torch.randn_like(y)
    lhs, rhs = (y * v).sum(), (x * op.adjoint(v)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(y.norm() * v.norm())
    assert op.adjoint(v).shape == x.shape
    assert op.x_shape(tuple(y.shape)) == tuple(x.shape)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_spot_check(name):
    op, x = _setup(name, CASES[name][1][0], dtype=torch.float32)
    y = op(x)
    assert y.dtype == torch.float32
    v = torch.randn_like(y)
    lhs, rhs = (y * v).sum().double(), (x * op.adjoint(v)).sum().double()
    assert abs(float(lhs - rhs)) <= 1e-4 * float(y.norm() * v.norm())
    y64 = _setup(name, CASES[name][1][0])[0](x.double())
    assert _rel(y.double(), y64) < 1e-5


@pytest.mark.parametrize("name,shape", PARAMS, ids=IDS)
def test_pinv_is_in_range_and_consistent(name, shape):
    op, x = _setup(name, shape)
    y = op(x)
    p = op.pinv(y)
    assert p.shape == x.shape
    assert _rel(op(p), y) < (1e-10 if op.has_svd else 1e-5)


def _matrix(op, shape):
    """(m, n) float64 matrix of ``op`` on (1, *shape) images, via DenseSVDOperator's assembly."""
    dense = DenseSVDOperator(op, shape)
    return dense.matrix, dense.y_shape


@pytest.mark.parametrize("name", list(CASES))
def test_pinv_and_prox_match_dense_matrix(name):
    """Minimum-norm pinv and the prox (incl. the sigma_y = 0 projection) against the explicit matrix."""
    shape = CASES[name][1][0]
    op, x = _setup(name, shape, batch=1)
    m, y_shape = _matrix(op, shape)
    y = op(x) + 0.05 * torch.randn_like(op(x))  # not in the range where A is rank deficient
    pinv_m = torch.linalg.pinv(m)
    tol = 1e-9 if op.has_svd else 1e-4
    assert _rel(op.pinv(y), (pinv_m @ y.flatten()).view_as(x)) < tol
    z = torch.rand_like(x)
    lam = 3.0 * 0.2**2
    ref = torch.linalg.solve(m.T @ m + lam * torch.eye(m.shape[1], dtype=f64), m.T @ y.flatten() + lam * z.flatten())
    assert _rel(op.prox(z, y, 3.0, 0.2), ref.view_as(x)) < tol
    # sigma_y = 0: projection of z onto {A x = y0}
    y0 = op(x)
    ref0 = z.flatten() + pinv_m @ (y0.flatten() - m @ z.flatten())
    assert _rel(op.prox(z, y0, 3.0, 0.0), ref0.view_as(x)) < tol


@pytest.mark.parametrize("name", list(CASES))
def test_prox_optimality(name):
    op, x = _setup(name, CASES[name][1][1 if len(CASES[name][1]) > 1 else 0])
    y = op(x) + 0.05 * torch.randn_like(op(x))
    z = torch.rand_like(x)
    rho, sigma_y = torch.tensor([0.5, 4.0], dtype=f64), 0.1
    p = op.prox(z, y, rho, sigma_y)
    grad_data = op.adjoint(op(p) - y) / sigma_y**2
    grad_prior = rho.view(-1, 1, 1, 1) * (p - z)
    tol = 1e-9 if op.has_svd or isinstance(op, BlurDownsample) else 1e-4
    assert float((grad_data + grad_prior).norm()) <= tol * float(grad_prior.norm())
    # sigma_y = 0: exact consistency A x = y with y in the range.
    y0 = op(x)
    p0 = op.prox(z, y0, 1.0, 0.0)
    assert _rel(op(p0), y0) < (1e-10 if op.has_svd else 1e-5)


@pytest.mark.parametrize("name", SVD_CASES)
def test_svd_reconstructs_operator(name):
    for shape in CASES[name][1]:
        op, x = _setup(name, shape)
        c, s = op.V_adjoint(x), op.singular_values(x)
        y = op(x)
        assert _rel(op.U(s * c), y) < 1e-12
        assert _rel(op.V(c), x) < 1e-12
        assert abs(float(c.abs().norm() / x.norm()) - 1) < 1e-12  # V is orthogonal
        assert _rel(op.U_adjoint(y), s * c) < 1e-12
        assert bool((s >= 0).all()) and not s.is_complex()
        # random coefficients through V: U(s c) of them is A of V(c)
        c = op.V_adjoint(torch.randn_like(x))
        assert _rel(op.U(s * c), op(op.V(c))) < 1e-12


@pytest.mark.parametrize("name", SVD_CASES)
def test_singular_values_match_dense(name):
    shape = CASES[name][1][-1]
    op, x = _setup(name, shape, batch=1)
    dense = DenseSVDOperator(op, shape)
    s = op.singular_values(x).expand_as(x).flatten().sort().values
    sd = dense._s.sort().values
    assert torch.allclose(s, sd, atol=1e-12)
    # the matrix assembled from the adjoint is the transpose of the forward matrix
    m = dense.matrix.shape[0]
    eye = torch.eye(m, dtype=f64).view(m, *dense.y_shape)
    adj = op.adjoint(eye).reshape(m, -1)
    assert torch.allclose(adj, dense.matrix, atol=1e-12)


@pytest.mark.parametrize("name", ["inpainting", "blur_circular", "blur_reflect", "blur_downsample", "composition"])
def test_per_sample_equals_single_runs(name):
    shape = CASES[name][1][0]
    op, x = _setup(name, shape, batch=2)
    y = op(x)
    z = torch.rand_like(x)
    batched = [y, op.adjoint(y), op.pinv(y), op.prox(z, y, 2.0, 0.1)]
    if isinstance(op, Inpainting):
        singles = [Inpainting(op.mask[i : i + 1]) for i in range(2)]
    elif isinstance(op, Composition):
        singles = [op.outer @ Blur(op.inner.kernel[i, 0]) for i in range(2)]
    else:
        singles = [type(op)(op.kernel[i, 0], op.padding if isinstance(op, Blur) else op.scale) for i in range(2)]
    for i, single in enumerate(singles):
        sl = slice(i, i + 1)
        ref = [single(x[sl]), single.adjoint(y[sl]), single.pinv(y[sl]), single.prox(z[sl], y[sl], 2.0, 0.1)]
        for a, b in zip(batched, ref):
            assert _rel(a[sl], b) < 1e-6


def test_per_sample_kernels_differ():
    op, x = _setup("blur_circular", (1, 8, 8))
    assert _rel(op(x)[0], Blur(op.kernel[1, 0])(x[:1])[0]) > 1e-3


# -- operator-specific references -------------------------------------------------
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_matches_torch_antialias_in_interior(scale):
    x = torch.rand(2, 3, 16 * scale, 12 * scale, dtype=f64)
    y = SuperResolution(scale)(x)
    ref = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True)
    assert y.shape == ref.shape
    assert (y - ref)[..., 2:-2, 2:-2].abs().max() < 1e-12
    assert (y - ref).abs().max() > 1e-4  # borders differ: symmetric reflection vs renormalised clipping


def test_bicubic_matrix_rows_sum_to_one_and_match_ddrm_even_scale():
    a = bicubic_matrix(32, 4)
    assert torch.allclose(a.sum(1), torch.ones(8, dtype=f64))
    # DDRM's sr_bicubic kernel (4*scale taps at (i - 2*scale + 0.5)/scale), normalised: interior rows agree.
    t = (torch.arange(16, dtype=f64) - 8 + 0.5) / 4
    from pnp_restore.operators.superres import cubic

    k = cubic(t)
    k = k / k.sum()
    assert torch.allclose(a[3, 4 * 3 + 2 - 8 : 4 * 3 + 2 + 8], k, atol=1e-14)


@pytest.mark.parametrize("scale", [2, 3, 5])
def test_avgpool_matches_avg_pool2d(scale):
    x = torch.rand(2, 3, 4 * scale, 3 * scale, dtype=f64)
    assert torch.allclose(SuperResolution(scale, "avgpool")(x), F.avg_pool2d(x, scale), atol=1e-15, rtol=0)


@pytest.mark.parametrize("padding", ["circular", "reflect"])
def test_blur_is_true_convolution_centred(padding):
    """A delta at (5, 6) is mapped to the kernel itself (not flipped), centred at (5, 6)."""
    ker = torch.arange(15, dtype=f64).view(3, 5) + 1
    x = torch.zeros(1, 1, 12, 13, dtype=f64)
    x[..., 5, 6] = 1
    y = Blur(ker, padding)(x)
    assert torch.allclose(y[0, 0, 4:7, 4:9], ker / ker.sum(), atol=1e-14)
    assert abs(float(y.sum()) - 1) < 1e-12


@pytest.mark.parametrize("k", [9, 4])
def test_blur_reflect_matches_conv2d_reference(k):
    """Reflect mode is F.pad(reflect) + conv2d of the flipped kernel (padding k-1-k//2 before, k//2 after)."""
    ker = motion_kernel(k, 0.5, seed=2)
    x = torch.rand(2, 3, 20, 17, dtype=f64)
    before, after = k - 1 - k // 2, k // 2
    xp = F.pad(x, (before, after, before, after), mode="reflect")
    ref = F.conv2d(xp, ker.flip(-2, -1).expand(3, 1, k, k), groups=3)
    assert torch.allclose(Blur(ker, "reflect")(x), ref, atol=1e-14)


def test_blur_circular_equals_reflect_in_interior():
    x = torch.rand(1, 3, 20, 21, dtype=f64)
    ker = motion_kernel(7, 0.6, seed=3)
    a, b = Blur(ker, "circular")(x), Blur(ker, "reflect")(x)
    assert (a - b)[..., 3:-3, 3:-3].abs().max() < 1e-12
    # circular boundary: a shifted image blurs to the shifted blur
    assert torch.allclose(Blur(ker)(x.roll(4, -1)), a.roll(4, -1), atol=1e-12)


def test_blur_downsample_prox_matches_cg():
    op = BlurDownsample(gaussian_kernel(5, 1.2), 2)
    x = torch.rand(2, 3, 12, 10, dtype=f64)
    y = op(x) + 0.01 * torch.randn(2, 3, 6, 5, dtype=f64)
    z = torch.rand_like(x)
    lam = torch.tensor([2.0, 0.5], dtype=f64).view(-1, 1, 1, 1) * 0.05**2
    ref = conjugate_gradient(lambda v: op.normal(v) + lam * v, op.adjoint(y) + lam * z, max_iter=5000, tol=1e-13)
    assert _rel(op.prox(z, y, torch.tensor([2.0, 0.5]), 0.05), ref) < 1e-8
    # the forward model: blur then keep the first pixel of each 2x2 block
    assert torch.allclose(op(x), Blur(gaussian_kernel(5, 1.2))(x)[..., ::2, ::2], atol=1e-14)


def test_colorization_svd_structure():
    op = Colorization()
    x = torch.rand(2, 3, 4, 5, dtype=f64)
    assert torch.allclose(op(x), x.mean(1, keepdim=True))
    assert torch.allclose(op.V_adjoint(x)[:, 0], x.sum(1) / 3**0.5)
    assert op.singular_values(x).flatten().tolist() == pytest.approx([3**-0.5, 0, 0])
    assert op.x_shape((2, 1, 4, 5)) == (2, 3, 4, 5)


def test_composition_matmul_and_shapes():
    op = SuperResolution(2) @ Blur(gaussian_kernel(3, 1.0))
    assert isinstance(op, Composition) and not op.has_svd
    assert op.x_shape((1, 3, 5, 6)) == (1, 3, 10, 12)
    with pytest.raises(OperatorError):
        op.V_adjoint(torch.rand(1, 3, 10, 12))
    with pytest.raises(OperatorError):
        Blur(gaussian_kernel(3, 1.0), "reflect").singular_values(torch.rand(1, 1, 8, 8))


def test_gaussian_noise_per_sample_and_scale():
    y = torch.zeros(3, 1, 64, 64, dtype=f64)
    noise = GaussianNoise([0.1, 0.2, 0.0])
    n = noise(y, seed=5)
    assert n[0].std() == pytest.approx(0.1, rel=0.05) and n[1].std() == pytest.approx(0.2, rel=0.05)
    assert torch.equal(n[2], y[2])
    single = GaussianNoise(0.2)(y[1:2], seed=6)
    assert torch.equal(n[1:2], single)
    assert torch.equal(GaussianNoise(0.2)(y, seed=1), GaussianNoise(0.2)(y, seed=1))
    assert not torch.equal(GaussianNoise(0.2)(y, seed=1), GaussianNoise(0.2)(y, seed=2))
    for bad in (-0.1, float("nan"), float("inf"), [0.1, -1.0]):
        with pytest.raises(ConfigError):
            GaussianNoise(bad)
    with pytest.raises(ShapeError):
        GaussianNoise([0.1, 0.2])(y)


# -- errors ----------------------------------------------------------------------------
def test_shape_and_config_errors():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ShapeError, match="mask is 8x8 but the image is 16x16"):
        Inpainting(torch.ones(8, 8))(x)
    with pytest.raises(ShapeError, match="per-sample"):
        Inpainting(torch.ones(3, 1, 16, 16))(x)
    with pytest.raises(ShapeError):
        Inpainting(torch.ones(16))
    with pytest.raises(ConfigError):
        Inpainting(-torch.ones(16, 16))
    with pytest.raises(ShapeError, match="not divisible by the scale 3"):
        SuperResolution(3)(x)
    with pytest.raises(ShapeError, match="not divisible"):
        BlurDownsample(gaussian_kernel(3, 1.0), 3)(x)
    with pytest.raises(ConfigError):
        SuperResolution(2.5)
    with pytest.raises(ConfigError):
        SuperResolution(2, kind="lanczos")
    with pytest.raises(ConfigError):
        Blur(-gaussian_kernel(5, 1.0))
    with pytest.raises(ShapeError):
        Blur(torch.ones(5))
    with pytest.raises(ConfigError):
        Blur(gaussian_kernel(5, 1.0), padding="zeros")
    with pytest.raises(ShapeError, match="only 16x16"):
        Blur(gaussian_kernel(17, 1.0))(x)
    with pytest.raises(ShapeError):
        Blur(gaussian_kernel(33, 1.0), "reflect")(x)
    with pytest.raises(ShapeError, match="per-sample kernels"):
        Blur(torch.ones(3, 3, 3))(x)
    with pytest.raises(ShapeError, match="3-channel"):
        Colorization()(x[:, :1])
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        Denoising()(x[0])
    with pytest.raises(ShapeError):
        SeparableOperator(torch.eye(4), torch.eye(4))(x)


def test_registry():
    assert isinstance(get("sr", scale=4), SuperResolution)
    assert isinstance(get("inpainting", size=32, box=8, margin=4, seed=0), Inpainting)
    assert get("blur", size=9, std=2.0, padding="reflect").padding == "reflect"
    assert get("motion", size=9, seed=0).kernel.shape[-1] == 9
    assert isinstance(get("denoising"), Denoising) and isinstance(get("colorization"), Colorization)
    with pytest.raises(ConfigError, match="choose one of inpainting, sr, blur"):
        get("wavelet")
    with pytest.raises(ConfigError, match="bad arguments"):
        get("sr", factor=4)
    for op in (get("sr", scale=4), get("blur", size=5), get("inpainting", size=32, box=8, margin=4, seed=0)):
        assert type(op).__name__ in repr(op)
    # the task vocabulary names the same operators
    assert isinstance(get(Task.SUPER_RESOLUTION, scale=2), SuperResolution)
    assert get("gaussian_deblur", size=5, padding="reflect").padding == "reflect"
    assert torch.equal(get(Task.MOTION_DEBLUR, size=9, seed=3).kernel, get("motion", size=9, seed=3).kernel)
    assert all(isinstance(get(t, **kw), LinearOperator) for t, kw in [
        (Task.INPAINTING, dict(size=32, box=8, margin=4, seed=0)), (Task.DENOISING, {}), (Task.COLORIZATION, {}),
    ])  # fmt: skip


# -- modules, buffers, devices -----------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_operators_are_modules_whose_buffers_move_once_and_stay_float64(name):
    """``.to(device)`` moves every buffer (derived factors included); a dtype is ignored, so the
    results do not depend on it: inputs are cast per call, to the same numbers as before."""
    op, x = _setup(name, CASES[name][1][0], dtype=torch.float32)
    ref = _setup(name, CASES[name][1][0], dtype=torch.float32)[0]
    y = op(x)  # builds the size-dependent factors (OTF, 1-D SVDs)
    assert isinstance(op, torch.nn.Module) and op.to("cpu", torch.float32) is op
    for a, b in [(y, ref(x)), (op.adjoint(y), ref.adjoint(y)), (op.pinv(y), ref.pinv(y))]:
        assert torch.equal(a, b)
    buffers = dict(op.named_buffers())
    assert all(b.dtype == f64 for b in buffers.values())
    op.to("meta")
    assert all(b.device.type == "meta" and b.dtype == f64 for b in op.buffers())
    assert set(dict(op.named_buffers())) == set(buffers)


def test_data_buffers_are_state_and_derived_ones_are_not():
    op = Blur(gaussian_kernel(5, 1.0))
    op(torch.rand(1, 1, 8, 8))
    assert set(op.state_dict()) == {"kernel"} and any("otf" in n for n, _ in op.named_buffers())
    assert set(Inpainting(torch.ones(4, 4)).state_dict()) == {"mask"}
    assert set(SeparableOperator(torch.eye(3), torch.eye(4)).state_dict()) == {"A_h", "A_w"}


class _ChannelScale(DecomposableOperator):
    """``y_c = w_c x_c`` with a zero weight: only the five SVD hooks are written."""

    w = torch.tensor([2.0, 0.0, 0.5], dtype=f64)

    def singular_values(self, like):
        return self.w.abs().to(like.real.dtype).view(1, 3, 1, 1)

    def V_adjoint(self, x):
        return x

    def V(self, c):
        return c

    def U_adjoint(self, y):
        return y * self.w.sign().to(y.dtype).view(1, 3, 1, 1)

    def U(self, c):
        return c * self.w.sign().to(c.dtype).view(1, 3, 1, 1)


def test_decomposable_operator_derives_forward_adjoint_pinv_prox():
    op, x = _ChannelScale(), torch.rand(2, 3, 4, 5, dtype=f64)
    m, _ = _matrix(op, (3, 4, 5))
    assert torch.allclose(m, torch.diag(op.w.repeat_interleave(20)))
    y = op(x) + 0.1 * torch.rand_like(x)
    flat = lambda t: t.flatten(1).T  # noqa: E731
    assert torch.allclose(flat(op.adjoint(y)), m.T @ flat(y))
    assert torch.allclose(flat(op.pinv(y)), torch.linalg.pinv(m) @ flat(y))
    z, lam = torch.rand_like(x), 2.0 * 0.3**2
    ref = torch.linalg.solve(m.T @ m + lam * torch.eye(60, dtype=f64), m.T @ flat(y) + lam * flat(z))
    assert torch.allclose(flat(op.prox(z, y, 2.0, 0.3)), ref)
    assert Inpainting.forward is DecomposableOperator.forward and Denoising.pinv is DecomposableOperator.pinv


def test_one_rank_rule():
    s = torch.tensor([[4.0, 1e-15, 1.0], [1e-3, 1e-20, 0.0]], dtype=f64)
    out = truncate_singular_values(s, 3, dim=(-1,))  # per row: floor 3 * eps * max
    assert out.tolist() == [[4.0, 0.0, 1.0], [1e-3, 0.0, 0.0]]
    assert truncate_singular_values(s, 3)[1, 0] == 1e-3  # global max 4: floor 2.7e-15
    assert truncate_singular_values(s.float(), 3)[0, 1] == 0  # eps of the dtype


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_matches_cpu(name):
    op, x = _setup(name, CASES[name][1][0], dtype=torch.float32)
    xc = x.cuda()
    y = op(x)
    assert op(xc).device.type == "cuda"
    assert torch.allclose(op(xc).cpu(), y, atol=1e-5)
    assert torch.allclose(op.adjoint(y.cuda()).cpu(), op.adjoint(y), atol=1e-5)
    if op.has_svd:
        assert torch.allclose(op.pinv(y.cuda()).cpu(), op.pinv(y), atol=1e-4)
