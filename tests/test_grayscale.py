"""The gray measurement of a colour image, ``Grayscale(A)(x) = A(mean_c x)``
(:mod:`pnp_restore.operators.grayscale`): its exact SVD against the dense SVD of the same
map, its pinv/prox, the solvers on it, and the RGB observation of a noisy gray image."""

from __future__ import annotations

import math

import pytest
import torch

from pnp_restore import restore
from pnp_restore._rng import SampleRNG
from pnp_restore.errors import OperatorError
from pnp_restore.operators import (Blur, BlurDownsample, DenseSVDOperator, Denoising, Inpainting, SuperResolution,
                                   gaussian_kernel, random_mask)
from pnp_restore.operators.grayscale import Grayscale, rgb_observation
from pnp_restore.operators.simple import helmert
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov

H = W = 8

#: inner operators of 1-channel images with an exact SVD
SVD_OPS = {
    "inpainting": lambda: Inpainting(random_mask((H, W), missing=0.5, seed=0)),
    "inpainting_per_sample": lambda: Inpainting(torch.cat([random_mask((H, W), missing=0.5, seed=s).view(1, 1, H, W) for s in (1, 2)])),
    "denoising": Denoising,
    "sr_bicubic": lambda: SuperResolution(2),
    "sr_avgpool": lambda: SuperResolution(2, "avgpool"),
    "blur_circular": lambda: Blur(gaussian_kernel(5, 1.0)),
}
#: and without one (their own prox: conjugate gradient / the closed form of Zhao et al.)
NO_SVD_OPS = {
    "blur_reflect": lambda: Blur(gaussian_kernel(3, 0.7), "reflect"),
    "blur_downsample": lambda: BlurDownsample(gaussian_kernel(3, 1.0), 2),
}


def images(seed: int = 0, b: int = 2) -> torch.Tensor:
    return torch.rand(b, 3, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def sample_operator(op: Grayscale, b: int) -> Grayscale:
    """Sample ``b``'s operator of a per-sample ``op`` (``op`` itself when it has one mask)."""
    mask = getattr(op.inner, "mask", None)
    return Grayscale(Inpainting(mask[b : b + 1])) if mask is not None and mask.shape[0] > 1 else op


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> bool:
    return bool((a - b).abs().max() <= tol * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("name", SVD_OPS)
def test_svd_matches_the_dense_svd_of_the_same_map(name):
    """Against DenseSVDOperator of the same map, per sample: forward, adjoint, the singular values
    (s / sqrt(3) on the gray axis, 0 on the two colour axes), pinv and prox (closed forms of the base
    class and the gray-axis reductions), and an orthogonal V with U diag(s) V^T = A."""
    from pnp_restore.operators.base import DecomposableOperator

    op = Grayscale(SVD_OPS[name]())
    assert op.has_svd
    x, z = images(), 0.3 + 0.4 * images(1)
    y = op(x)
    c = op.V_adjoint(x)
    assert close(op.V(c), x) and close(op.U(op.singular_values(x) * c), y)
    assert close((c.abs() ** 2).sum((1, 2, 3)), (x**2).sum((1, 2, 3)))
    s = op.singular_values(x).expand(2, 3, H, W)
    proxes = [(4.0, 0.1), (4.0, 0.0), (torch.tensor([2.0, 9.0]), 0.05)]
    got = {
        "pinv": [op.pinv(y), DecomposableOperator.pinv(op, y)],
        **{f"prox{k}": [op.prox(z, y, r, sy), DecomposableOperator.prox(op, z, y, r, sy)]
           for k, (r, sy) in enumerate(proxes)},
    }
    for b in range(2):
        d = DenseSVDOperator(sample_operator(op, b), (3, H, W))
        xb, yb, zb = x[b : b + 1], y[b : b + 1], z[b : b + 1]
        assert close(yb, d.forward(xb)) and close(sample_operator(op, b).adjoint(yb), d.adjoint(yb))
        assert close(s[b].flatten().sort().values, d.singular_values(xb).flatten().sort().values, 1e-12)
        for result in got["pinv"]:
            assert close(result[b : b + 1], d.pinv(yb), 1e-9)
        for k, (r, sy) in enumerate(proxes):
            rb = r[b : b + 1] if isinstance(r, torch.Tensor) else r
            for result in got[f"prox{k}"]:
                assert close(result[b : b + 1], d.prox(zb, yb, rb, sy), 1e-9)


@pytest.mark.parametrize("name", NO_SVD_OPS)
def test_without_an_inner_svd_prox_reduces_to_the_inner_prox(name):
    op = Grayscale(NO_SVD_OPS[name]())
    assert not op.has_svd
    d = DenseSVDOperator(op, (3, H, W))
    x, z = images(), 0.3 + 0.4 * images(1)
    y = op(x)
    assert close(op(x), d.forward(x)) and close(op.adjoint(y), d.adjoint(y))
    assert close(op.prox(z, y, 4.0, 0.1), d.prox(z, y, 4.0, 0.1), 1e-6)
    with pytest.raises(OperatorError, match="needs an operator with an SVD and Grayscale has none"):
        restore(y, op, GaussianPrior(torch.full((3, H, W), 0.5), 0.04 * torch.eye(3 * H * W), shape=(3, H, W)),
                solver="ddrm", sigma_y=0.0, steps=2)


def test_a_replicated_gray_image_is_its_own_preimage():
    g = torch.rand(1, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rgb = g.expand(1, 3, H, W)
    for make in SVD_OPS.values():
        inner = make()
        if isinstance(inner, Inpainting) and inner.mask.shape[0] > 1:
            continue
        op = Grayscale(inner)
        assert close(op(rgb), inner(g))
    assert close(Grayscale(Denoising()).pinv(g), rgb)  # the minimum-norm preimage of a gray image is it, replicated
    assert Grayscale(SuperResolution(2)).x_shape((1, 1, 4, 4)) == (1, 3, 8, 8)


def _gaussian_problem(inner, sigma_y: float):
    """A Gaussian prior on 3x4x4 colour images (correlated channels), a sample's gray measurement, and the
    exact posterior mean of the gray model (noise sigma_y on the one gray channel)."""
    shape = (3, 4, 4)
    cov = squared_exponential_cov((1, 4, 4), std=0.15, length_scale=1.5, nugget=0.01)
    colour = torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.0, 0.6], [0.3, 0.6, 1.0]], dtype=torch.float64)
    prior = GaussianPrior(torch.full(shape, 0.5, dtype=torch.float64), torch.kron(colour, cov), shape=shape)
    op = Grayscale(inner)
    x = prior.sample(2, seed=5)
    y = op(x) + sigma_y * SampleRNG(9, 2).randn(tuple(op(x).shape), dtype=torch.float64)
    mu, _ = prior.posterior(y, DenseSVDOperator(op, shape).matrix, sigma_y)
    return prior, op, y, mu


@pytest.mark.parametrize("inner, sigma_y", [
    (Inpainting(random_mask((4, 4), missing=0.5, seed=0)), 0.0),
    (Inpainting(random_mask((4, 4), missing=0.5, seed=0)), 0.05),
    (BlurDownsample(gaussian_kernel(3, 1.0), 2), 0.02),
])
def test_pnp_admm_on_the_gray_model_converges_to_its_exact_map(inner, sigma_y):
    """With a Gaussian prior PnP-ADMM converges to the MAP = posterior mean (see test_posterior), here of the gray
    model: so Grayscale's prox (and the noise on one channel) are the model's, with or without an inner SVD."""
    prior, op, y, mu = _gaussian_problem(inner, sigma_y)
    x = restore(y, op, prior, solver="pnp_admm", sigma_y=sigma_y, steps=300, sigma_min=0.05)
    err = (x - mu).abs().max() / prior.cov.diagonal().sqrt().min()
    assert err < 1e-4, f"{err:.2e}"


@pytest.mark.parametrize("solver", ["ddrm", "ddnm"])
def test_svd_solvers_run_on_gray_measurements_and_fit_them(solver):
    """DDRM and DDNM need the SVD; on noiseless gray inpainting their result reproduces y (DDNM exactly: it
    ends on a range-space projection; DDRM up to its last denoiser step)."""
    prior, op, y, _ = _gaussian_problem(Inpainting(random_mask((4, 4), missing=0.5, seed=0)), 0.0)
    x = restore(y, op, prior, solver=solver, sigma_y=0.0, steps=20, seed=0)
    assert x.shape == (2, 3, 4, 4)
    assert (op(x) - y).abs().max() < (1e-10 if solver == "ddnm" else 0.05)


def test_rgb_observation_is_the_gray_image_plus_iid_noise_of_sqrt3_sigma():
    """For y = g + sigma n: z - g 1 = sqrt(3) sigma H^T [n, e] exactly (H orthogonal, [n, e] i.i.d. N(0, 1)),
    so the noise of z is i.i.d. N(0, 3 sigma^2) per channel; mean_c z = y; a batch equals single runs."""
    g = torch.rand(2, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = 0.1
    n = SampleRNG(42, 2).randn((2, 1, H, W), dtype=torch.float64)
    y = g + sigma * n
    z, level = rgb_observation(y, sigma, seed=7)
    assert level == pytest.approx(math.sqrt(3) * sigma) and z.shape == (2, 3, H, W)
    assert close(z.mean(1, keepdim=True), y, 1e-14)
    coeffs = torch.einsum("kc,bchw->bkhw", helmert(3), z - g) / level
    assert close(coeffs[:, :1], n, 1e-12)
    e = SampleRNG(7, 2).randn((2, 3, H, W), dtype=torch.float64)
    assert close(coeffs[:, 1:], e[:, 1:], 1e-12)
    z1, _ = rgb_observation(y[1:], sigma, seed=8)
    assert torch.equal(z1, z[1:])
