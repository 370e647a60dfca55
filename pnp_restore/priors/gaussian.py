"""Exact Gaussian and Gaussian-mixture priors: closed-form denoisers for testing solvers.

For ``x0 ~ N(m, S)`` and ``x = x0 + sigma n`` the MMSE denoiser is linear,
``E[x0 | x] = m + S (S + sigma^2 I)^{-1} (x - m)``, and it is also the proximal map
of ``-log p`` with step ``sigma^2`` (so PnP methods have an exact fixed point). With
a linear measurement ``y = A x0 + sigma_y n`` the posterior is Gaussian too, which
makes these priors the ground truth against which samplers are checked.
"""

from __future__ import annotations

import math

import torch

from .._rng import SampleRNG
from ..errors import ConfigError, ShapeError
from .base import Prior, sigma_tensor

Tensor = torch.Tensor


def _image_shape(mean: Tensor, shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    if shape is not None:
        shape = tuple(int(s) for s in shape)
    elif mean.dim() == 3:
        shape = tuple(mean.shape)
    else:
        shape = (1, 1, mean.numel())
    if len(shape) != 3 or math.prod(shape) != mean.numel():
        raise ShapeError(
            f"mean has {mean.numel()} values, which does not fit image shape {shape}; pass shape=(C, H, W)"
        )
    return shape


def _eigh(cov: Tensor, d: int, name: str) -> tuple[Tensor, Tensor]:
    if cov.shape[-2:] != (d, d):
        raise ShapeError(f"{name} must be ({d}, {d}) to match the mean; got {tuple(cov.shape)}")
    if not torch.allclose(cov, cov.transpose(-1, -2), rtol=1e-6, atol=1e-10):
        raise ConfigError(f"{name} is not symmetric; pass (S + S.T) / 2")
    evals, evecs = torch.linalg.eigh(cov)
    if bool((evals <= 0).any()):
        raise ConfigError(
            f"{name} is not positive definite (smallest eigenvalue {evals.min().item():.3g}); add a small diagonal"
        )
    return evals, evecs


def _cholesky(cov: Tensor) -> Tensor:
    """Lower Cholesky factor ``L`` of ``cov`` (``cov = L L^T``): unique, so a sample ``m + L z`` depends only
    on ``cov`` and the seed, not on which eigenbasis LAPACK picks for repeated eigenvalues (that basis changes
    with the CPU code path, BLAS and thread count)."""
    return torch.linalg.cholesky(cov)


def squared_exponential_cov(
    shape: tuple[int, int, int], std: float = 0.15, length_scale: float = 2.0, nugget: float = 1e-3
) -> Tensor:
    """A structured image covariance: ``std^2 exp(-|p - q|^2 / (2 l^2)) + nugget^2 I`` (float64).

    Pixels ``p, q`` of the same channel are correlated by their distance (in pixels);
    channels are independent. ``nugget`` (a small white-noise std) keeps it well conditioned.
    Returns (d, d), d = C*H*W.
    """
    c, h, w = shape
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ii.flatten(), jj.flatten()], 1)
    k = std**2 * torch.exp(-(torch.cdist(pos, pos) ** 2) / (2 * length_scale**2))
    return torch.block_diag(*([k] * c)) + nugget**2 * torch.eye(c * h * w, dtype=torch.float64)


class GaussianPrior(Prior):
    """``x0 ~ N(mean, cov)`` with the exact MMSE denoiser.

    Args:
        mean: (C, H, W) image (or a flat (d,) vector with ``shape``), [0, 1] scale.
        cov: (d, d) symmetric positive-definite covariance, d = C*H*W.
        shape: (C, H, W) when ``mean`` is flat (default (1, 1, d)).
        sigma_min, sigma_max: noise range used by :meth:`sigmas` (Karras schedule).

    The eigendecomposition ``cov = Q diag(lam) Q^T`` is computed once, so
    ``denoise`` costs two (d, d) matrix products at any sigma (a function of ``cov``, so it
    does not depend on the basis ``Q``); :meth:`sample` uses the Cholesky factor, so a seed
    gives the same images on every machine. Stored in float64; inputs of any dtype/device
    are served in their own dtype.
    """

    def __init__(
        self,
        mean: Tensor,
        cov: Tensor,
        shape: tuple[int, int, int] | None = None,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        self.shape = _image_shape(mean, shape)
        d = mean.numel()
        evals, evecs = _eigh(cov, d, "cov")
        self.register_buffer("mean", mean.reshape(d))
        self.register_buffer("cov", cov)
        self.register_buffer("evals", evals)
        self.register_buffer("evecs", evecs)
        self.register_buffer("chol", _cholesky(cov))
        self.channels = self.shape[0]
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _check(self, x: Tensor) -> None:
        self.check_input(x)
        if x[0].numel() != self.dim:
            raise ShapeError(f"GaussianPrior models images of shape {self.shape}; got {tuple(x.shape[1:])}")

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """``m + Q diag(lam / (lam + sigma^2)) Q^T (x - m)``; x: (B, C, H, W), sigma: float or (B,)."""
        self._check(x)
        s2 = sigma_tensor(sigma, x).view(-1, 1) ** 2
        q, lam, m = (t.to(x) for t in (self.evecs, self.evals, self.mean))
        c = (x.flatten(1) - m) @ q
        out = m + (c * (lam / (lam + s2))) @ q.T
        return out.view_as(x)

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log N(x; m, cov + sigma^2 I) per sample, shape (B,)."""
        self._check(x)
        s2 = sigma_tensor(sigma, x).view(-1, 1) ** 2
        q, lam, m = (t.to(x) for t in (self.evecs, self.evals, self.mean))
        c = (x.flatten(1) - m) @ q
        var = lam + s2
        return -0.5 * ((c**2 / var).sum(1) + var.log().sum(1) + self.dim * math.log(2 * math.pi))

    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` draws ``m + L z`` (n, C, H, W), float64, ``L`` the Cholesky factor; draw i uses seed ``seed + i``."""
        z = SampleRNG(seed, n).randn((n, self.dim), dtype=torch.float64)
        x = self.mean + z @ self.chol.T
        return x.view(n, *self.shape)

    def posterior(self, y: Tensor, A: Tensor, sigma_y: float) -> tuple[Tensor, Tensor]:
        """Exact posterior of ``x0`` given ``y = A x0 + sigma_y n``.

        Args:
            y: (B, ...) measurements with m values per sample.
            A: (m, d) matrix of the operator (e.g. ``DenseSVDOperator(...).matrix``).
            sigma_y: noise std (0 allowed; rows of ``A`` that are zero or dependent are ignored).

        Returns:
            mean (B, C, H, W) and covariance (d, d), float64:
            ``K = S A^T (A S A^T + sigma_y^2 I)^+``, mean ``m + K (y - A m)``, cov ``S - K A S``.
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        s = self.cov
        gram = A @ s @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64)
        gain = s @ A.T @ torch.linalg.pinv(gram, hermitian=True)  # (d, m); pinv: zero rows of A carry no data
        r = y.reshape(y.shape[0], -1).to(torch.float64) - self.mean @ A.T
        mean = self.mean + r @ gain.T
        cov = s - gain @ A @ s
        return mean.view(-1, *self.shape), (cov + cov.T) / 2


class GaussianMixturePrior(Prior):
    """``x0 ~ sum_k w_k N(m_k, S_k)`` with the exact MMSE denoiser.

    ``E[x0 | x] = sum_k r_k(x) (m_k + S_k (S_k + sigma^2 I)^{-1} (x - m_k))`` with
    responsibilities ``r_k ~ w_k N(x; m_k, S_k + sigma^2 I)`` computed by a softmax of
    log-densities (stable for far-away components).

    Args:
        weights: (K,) positive mixture weights (normalised here).
        means: (K, C, H, W) or (K, d) component means.
        covs: (K, d, d) symmetric positive-definite covariances.
        shape: (C, H, W) when the means are flat.
    """

    def __init__(
        self,
        weights: Tensor,
        means: Tensor,
        covs: Tensor,
        shape: tuple[int, int, int] | None = None,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        k = weights.numel()
        if means.shape[0] != k or covs.dim() != 3 or covs.shape[0] != k:
            raise ShapeError(
                f"weights ({k},), means {tuple(means.shape)} and covs {tuple(covs.shape)} "
                "disagree on the number of components"
            )
        if bool((weights <= 0).any()):
            raise ConfigError("mixture weights must be > 0")
        self.shape = _image_shape(means[0], shape)
        d = means[0].numel()
        evals, evecs = _eigh(covs, d, "covs")
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.register_buffer("means", means.reshape(k, d))
        self.register_buffer("evals", evals)  # (K, d)
        self.register_buffer("evecs", evecs)  # (K, d, d)
        self.register_buffer("chols", _cholesky(covs))  # (K, d, d)
        self.channels = self.shape[0]
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def _coeffs(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Component coordinates c (B, K, d), variances (B, K, d) and log-responsibilities (B, K)."""
        self.check_input(x)
        if x[0].numel() != self.means.shape[1]:
            raise ShapeError(f"GaussianMixturePrior models images of shape {self.shape}; got {tuple(x.shape[1:])}")
        s2 = sigma_tensor(sigma, x).view(-1, 1, 1) ** 2
        q, lam, m = (t.to(x) for t in (self.evecs, self.evals, self.means))
        c = torch.einsum("bkd,kde->bke", x.flatten(1)[:, None] - m, q)
        var = lam + s2
        logp = -0.5 * ((c**2 / var).sum(-1) + var.log().sum(-1)) + self.log_weights.to(x)
        return c, var, logp

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Posterior mean; x: (B, C, H, W), sigma: float or (B,)."""
        c, var, logp = self._coeffs(x, sigma)
        resp = torch.softmax(logp, dim=1)  # (B, K)
        lam, q, m = self.evals.to(x), self.evecs.to(x), self.means.to(x)
        comp = m + torch.einsum("bkd,ked->bke", c * (lam / var), q)  # (B, K, d)
        return (resp[..., None] * comp).sum(1).view_as(x)

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_sigma(x) per sample, shape (B,)."""
        _, _, logp = self._coeffs(x, sigma)
        return torch.logsumexp(logp, dim=1) - 0.5 * self.means.shape[1] * math.log(2 * math.pi)

    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` draws (n, C, H, W), float64 (component ``k``, then ``m_k + L_k z``); draw i uses seed ``seed + i``."""
        rng = SampleRNG(seed, n)
        u = rng.rand((n, 1), dtype=torch.float64)
        cdf = self.log_weights.exp().cumsum(0)
        k = torch.searchsorted(cdf, u.flatten().clamp(max=cdf[-1].item() * (1 - 1e-12)))
        z = rng.randn((n, self.means.shape[1]), dtype=torch.float64)
        x = self.means[k] + torch.einsum("nd,ned->ne", z, self.chols[k])
        return x.view(n, *self.shape)


__all__ = ["GaussianMixturePrior", "GaussianPrior", "squared_exponential_cov"]
