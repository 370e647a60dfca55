"""Exact Gaussian / Gaussian-mixture priors: closed forms against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from pnp_restore.errors import ConfigError, ShapeError
from pnp_restore.priors.gaussian import (
    GaussianMixturePrior,
    GaussianPrior,
    squared_exponential_cov,
)

SHAPE = (1, 4, 4)


def make_prior() -> GaussianPrior:
    mean = 0.5 + 0.1 * torch.linspace(-1, 1, 16, dtype=torch.float64).view(SHAPE)
    return GaussianPrior(mean, squared_exponential_cov(SHAPE, std=0.2, length_scale=1.5, nugget=0.02))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_denoise_is_the_closed_form(dtype, tol):
    """denoise = m + S (S + sigma^2 I)^{-1} (x - m) per sample (per-sample sigma).
    Tolerance: 1e-12 (float64), 1e-5 (float32); measured ~1e-15 / ~1e-7."""
    prior = make_prior()
    sigma = torch.tensor([0.0, 0.05, 0.3, 4.0], dtype=torch.float64)
    x = prior.sample(4, seed=1) + sigma.view(-1, 1, 1, 1) * torch.randn(4, *SHAPE, dtype=torch.float64)
    s, m = prior.cov, prior.mean
    ref = torch.stack(
        [
            m + s @ torch.linalg.solve(s + sg**2 * torch.eye(16, dtype=torch.float64), xi.flatten() - m)
            for xi, sg in zip(x, sigma)
        ]
    ).view_as(x)
    out = prior.denoise(x.to(dtype), sigma.to(dtype))
    assert out.dtype == dtype and out.shape == x.shape
    assert (out.double() - ref).abs().max() < tol
    # a float sigma broadcasts to the batch
    assert torch.allclose(prior.denoise(x, 0.3)[2], prior.denoise(x[2:3], 0.3)[0], atol=1e-14)


def test_score_is_tweedie_of_the_smoothed_density():
    """Prior.score (Tweedie, from denoise) = grad log N(x; m, S + sigma^2 I) by autograd; tol 1e-8 relative."""
    prior = make_prior()
    x = prior.sample(3, seed=2) + 0.1 * torch.randn(3, *SHAPE, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_prob(xg, 0.1).sum(), xg)
    score = prior.score(x, 0.1)
    assert (score - grad).abs().max() < 1e-8 * grad.abs().max()


def _gmm_1d() -> GaussianMixturePrior:
    return GaussianMixturePrior(
        torch.tensor([0.3, 0.7]), torch.tensor([[0.2], [0.75]]).view(2, 1, 1, 1), torch.tensor([[[0.01]], [[0.0025]]])
    )


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.5])
def test_gmm_denoiser_matches_numerical_integration(sigma):
    """1-D two-component mixture: E[x0|x] = int x0 p(x0) N(x; x0, s^2) / int p(x0) N(x; x0, s^2) on a fine grid.
    Tolerance 1e-6 absolute (measured ~1e-10)."""
    prior = _gmm_1d()
    grid = torch.linspace(-1.5, 2.5, 200001, dtype=torch.float64)
    w, m, v = torch.tensor([0.3, 0.7]), torch.tensor([0.2, 0.75]), torch.tensor([0.01, 0.0025])
    p0 = (w / (2 * math.pi * v).sqrt() * torch.exp(-((grid[:, None] - m) ** 2) / (2 * v))).sum(1).double()
    xs = torch.tensor([-0.2, 0.3, 0.5, 0.7, 1.3], dtype=torch.float64)
    lik = torch.exp(-((xs[:, None] - grid) ** 2) / (2 * sigma**2))
    ref = (lik * p0 * grid).sum(1) / (lik * p0).sum(1)
    out = prior.denoise(xs.view(-1, 1, 1, 1), sigma).flatten()
    assert (out - ref).abs().max() < 1e-6


def test_gmm_far_from_all_components_is_stable_and_tweedie():
    """Responsibilities in log space: no NaN 50 stds away; score = grad log p_sigma (autograd), tol 1e-8 relative."""
    g = torch.Generator().manual_seed(0)
    means = torch.rand(3, *SHAPE, generator=g, dtype=torch.float64)
    covs = torch.stack([squared_exponential_cov(SHAPE, 0.1 * (k + 1), 1.0, 0.01) for k in range(3)])
    prior = GaussianMixturePrior(torch.tensor([0.2, 0.5, 0.3]), means, covs)
    far = torch.full((1, *SHAPE), 50.0, dtype=torch.float64)
    assert torch.isfinite(prior.denoise(far, 0.01)).all()
    x = prior.sample(4, seed=3) + 0.2 * torch.randn(4, *SHAPE, dtype=torch.float64, generator=g)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_prob(xg, 0.2).sum(), xg)
    assert (prior.score(x, 0.2) - grad).abs().max() < 1e-8 * grad.abs().max()


def test_gmm_with_one_component_is_the_gaussian():
    prior = make_prior()
    gmm = GaussianMixturePrior(torch.ones(1), prior.mean.view(1, *SHAPE), prior.cov[None])
    x = prior.sample(5, seed=4) + 0.3 * torch.randn(5, *SHAPE, dtype=torch.float64)
    sigma = torch.linspace(0.01, 1.0, 5, dtype=torch.float64)
    assert (gmm.denoise(x, sigma) - prior.denoise(x, sigma)).abs().max() < 1e-12


def test_posterior_matches_the_information_form():
    """(S^-1 + A^T A / s^2)^-1 and its mean, against the gain form used by posterior(); tol 1e-9."""
    prior = make_prior()
    a = torch.randn(6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y = torch.randn(2, 6, dtype=torch.float64)
    sy = 0.05
    mean, cov = prior.posterior(y, a, sy)
    prec = torch.linalg.inv(prior.cov) + a.T @ a / sy**2
    cov_ref = torch.linalg.inv(prec)
    mean_ref = (torch.linalg.solve(prior.cov, prior.mean) + y @ a / sy**2) @ cov_ref
    assert (cov - cov_ref).abs().max() < 1e-9
    assert (mean.flatten(1) - mean_ref).abs().max() < 1e-9


def test_noiseless_posterior_interpolates_the_data():
    """sigma_y = 0 with a rank-deficient A (zero rows): A mean = y on measured rows, A cov A^T = 0."""
    prior = make_prior()
    a = torch.diag((torch.arange(16) % 3 != 0).double())
    y = prior.sample(1, seed=6).flatten(1) @ a.T
    mean, cov = prior.posterior(y, a, 0.0)
    assert (mean.flatten(1) @ a.T - y).abs().max() < 1e-10
    assert (a @ cov @ a.T).abs().max() < 1e-10


def test_samples_have_the_prior_moments_and_per_sample_seeds():
    """20000 draws: mean within 0.01 and covariance within 0.004 of the truth (MC error ~ 0.0015 / 0.0004)."""
    prior = make_prior()
    xs = prior.sample(20000, seed=0).flatten(1)
    assert (xs.mean(0) - prior.mean).abs().max() < 0.01
    assert (torch.cov(xs.T) - prior.cov).abs().max() < 0.004
    batch = prior.sample(3, seed=10)
    singles = torch.cat([prior.sample(1, seed=10 + i) for i in range(3)])
    assert torch.equal(batch, singles)
    gmm = _gmm_1d()
    draws = gmm.sample(20000, seed=0).flatten()
    assert abs(draws.mean().item() - (0.3 * 0.2 + 0.7 * 0.75)) < 0.005
    assert torch.equal(gmm.sample(3, seed=4)[1], gmm.sample(1, seed=5)[0])


def _repeated_eigenvalue_cov(rotate: bool) -> torch.Tensor:
    """A 16x16 covariance with eigenvalue 0.04 of multiplicity 6, built from an orthonormal basis Q; with
    ``rotate`` the basis of that eigenspace is turned by a random rotation (the same matrix up to rounding,
    as another LAPACK build or thread count may return it)."""
    g = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64, generator=g))
    lam = torch.cat([torch.full((6,), 0.04), torch.linspace(0.001, 0.02, 10)]).double()
    if rotate:
        r, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))
        q = torch.cat([q[:, :6] @ r, q[:, 6:]], 1)
    cov = q @ torch.diag(lam) @ q.T
    return (cov + cov.T) / 2


@pytest.mark.parametrize("kind", ["gaussian", "mixture"])
def test_samples_do_not_depend_on_the_eigenbasis_of_repeated_eigenvalues(kind):
    """Another eigenbasis of a repeated eigenvalue (same covariance to rounding) gives the same samples to
    1e-12 (measured ~1e-16); the former eigenbasis factor ``Q sqrt(lam)`` gave samples up to 1.1 apart,
    i.e. a different ground truth on another machine."""
    covs = [_repeated_eigenvalue_cov(rotate) for rotate in (False, True)]
    assert (covs[0] - covs[1]).abs().max() < 1e-15
    mean = torch.full(SHAPE, 0.5, dtype=torch.float64)
    if kind == "gaussian":
        priors = [GaussianPrior(mean, c) for c in covs]
    else:
        priors = [GaussianMixturePrior(torch.tensor([0.4, 0.6]), torch.stack([mean, 1 - mean]), torch.stack([c, c.T]))
                  for c in covs]  # fmt: skip
    a, b = (p.sample(50, seed=3) for p in priors)
    assert (a - b).abs().max() < 1e-12


def test_samples_do_not_depend_on_the_thread_count():
    """The same seed gives the same samples with 1 and 2 torch threads (1e-12), on a covariance like the
    solver tests' (3 identical channels: every eigenvalue repeated 3 times; with the former eigenbasis factor
    the samples differed by up to 0.65 here)."""
    cov = squared_exponential_cov((3, 8, 8), std=0.15, length_scale=2.0, nugget=1e-3)
    mean = torch.full((3, 8, 8), 0.5, dtype=torch.float64)
    threads = torch.get_num_threads()
    draws = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            draws.append(GaussianPrior(mean, cov).sample(4, seed=0))
    finally:
        torch.set_num_threads(threads)
    assert (draws[0] - draws[1]).abs().max() < 1e-12


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="positive definite"):
        GaussianPrior(torch.zeros(4), -torch.eye(4))
    with pytest.raises(ConfigError, match="symmetric"):
        GaussianPrior(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ShapeError):
        GaussianPrior(torch.zeros(4), torch.eye(5))
    prior = make_prior()
    with pytest.raises(ShapeError):
        prior.denoise(torch.zeros(1, 1, 5, 5), 0.1)
    with pytest.raises(ShapeError):
        prior.denoise(torch.zeros(2, 3, 4, 4), 0.1)
