"""PnP-DM on the exact linear-Gaussian problems of tests/test_posterior.py, and its likelihood step alone.

With the Gaussian prior both Gibbs conditionals are Gaussian: the likelihood step is sampled
exactly (perturb-and-MAP through ``prox``) and the prior step (the EDM sampler from ``rho`` with
the exact MMSE denoiser) nearly so; with ``rho`` annealed to 0.002 (well below sigma_y and the prior
std) the x-marginal of the chain's target is the posterior up to a ``rho^2 s^2`` inflation of the
noise variance (<= 4 % of sigma_y = 0.01). The annealing freezes the slowest directions a little
early, so the samples are slightly over-dispersed (``res_factor`` ~1.1): the limits are the
calibrated ones. ``ratio`` near 1 would mean the data are ignored.

Limits: ``python tests/calibration/calibrate.py posterior_pnpdm`` (this module's ``SAMPLER_CASES`` on
problems 0..49, tests/data/calibration_posterior_pnpdm.json) and, for the likelihood step and the
nonlinear test of tests/test_pnpdm.py, ``python tests/calibration/calibrate.py pnpdm_extra`` (50 seeds,
tests/data/calibration_pnpdm_extra.json, section ``pnpdm_extra``); limit = max x 1.3 (lower
bounds min / 1.3), see tests/calibrated.py.
"""

from __future__ import annotations

import pytest
import torch

import test_posterior as post
from calibrated import limit, summarize
from pnp_restore._rng import SampleRNG
from pnp_restore.operators.base import FunctionOperator
from pnp_restore.solvers.pnpdm import likelihood_step, pnpdm

SOLVER_FNS = {"pnpdm": pnpdm}
#: A shorter run than the published one (which stops at rho_min = 0.15, far from the exact posterior
#: on these 8x8 problems): rho 0.5 -> 0.002 at the published decay 0.9 (52 iterations, then 8 at
#: rho_min), 30 EDM levels (11 below rho = 0.5, 1-2 below 0.002).
KW = {"rho": 0.5, "rho_decay": 0.9, "rho_min": 0.002, "steps": 60, "edm_steps": 30}
SAMPLER_CASES = [
    ("pnpdm", KW, 50, "inpaint", 0.01),
    ("pnpdm", KW, 50, "blur", 0.01),
    ("pnpdm", KW, 50, "down", 0.05),
    ("pnpdm", KW, 50, "inpaint", 0.0),
]
#: the section of the extra limits (likelihood step here, nonlinear operator in tests/test_pnpdm.py)
EXTRA = "pnpdm_extra"


@pytest.mark.parametrize("name,kw,n,op_name,sigma_y", SAMPLER_CASES)
def test_pnpdm_samples_the_posterior(name, kw, n, op_name, sigma_y):
    """Problem 0: ``ratio`` (sample mean vs exact posterior mean) below its calibrated limit, the
    samples' residual / its exact posterior value inside the calibrated range (sigma_y > 0) or,
    for noiseless inpainting, ``res`` below its limit (the likelihood step projects onto A z = y;
    the last prior step moves x by ~rho_min)."""
    post.check_sampler_case("posterior_pnpdm", SOLVER_FNS, name, kw, n, op_name, sigma_y)


# ---------------------------------------------------------------------------- the likelihood step alone
#: (name, operator kind, op, sigma_y, rho, draws): "svd" is DenseSVDOperator (closed-form prox), "cg" the
#: same map as a FunctionOperator (conjugate-gradient prox, slower: fewer draws)
LIKELIHOOD_CASES = [("svd_blur", "svd", "blur", 0.05, 0.1, 2000), ("cg_blur", "cg", "blur", 0.05, 0.1, 400),
                    ("svd_down", "svd", "down", 0.02, 0.05, 2000)]  # fmt: skip


def likelihood_metrics(
    kind: str, op_name: str, sigma_y: float, rho: float, draws: int, seed: int
) -> dict[str, float]:
    """``draws`` samples of the likelihood step for problem 0 (x = the truth + rho noise), whitened by the
    exact conditional ``N(mu, S)``, ``S = (A^T A / sigma_y^2 + I / rho^2)^-1``,
    ``mu = S (A^T y / sigma_y^2 + x / rho^2)``: ``mean`` = n ||L^-1 (mean - mu)||^2 / d (chi^2_d / d when exact, ~1) and ``cov`` =
    ||L^-1 C L^-T - I||_F / sqrt(d (d + 1) / n) (C the sample covariance; ~1 when exact)."""
    op = post.operator(op_name) if kind == "svd" else FunctionOperator(post.OPS[op_name], post.SHAPE)
    truth = post.prior().sample(1, seed=100)
    exact = post.operator(op_name)
    y = exact.forward(truth) + sigma_y * SampleRNG(7, 1).randn((1, *exact.y_shape), dtype=torch.float64)
    x = truth + rho * SampleRNG(8, 1).randn(truth.shape, dtype=torch.float64)
    a = exact.matrix
    d = a.shape[1]
    prec = a.T @ a / sigma_y**2 + torch.eye(d, dtype=torch.float64) / rho**2
    cov = torch.linalg.inv(prec)
    mu = cov @ (a.T @ y.flatten() / sigma_y**2 + x.flatten() / rho**2)
    rng = SampleRNG(seed * draws, draws)
    z = likelihood_step(op, x.repeat(draws, 1, 1, 1), y.repeat(draws, 1, 1, 1), rho, sigma_y, rng).flatten(1)
    chol = torch.linalg.cholesky(cov)
    w = torch.linalg.solve_triangular(chol, (z - mu).T, upper=False).T  # whitened: N(0, I) when exact
    mean = draws * w.mean(0).pow(2).sum().item() / d
    wc = torch.cov(w.T, correction=1)
    cov_err = torch.linalg.matrix_norm(wc - torch.eye(d, dtype=torch.float64)).item() / (d * (d + 1) / draws) ** 0.5
    return {"mean": mean, "cov": cov_err}


@pytest.mark.parametrize("name,kind,op_name,sigma_y,rho,draws", LIKELIHOOD_CASES)
def test_likelihood_step_is_the_exact_gaussian_conditional(name, kind, op_name, sigma_y, rho, draws):
    """Linear operators: 2000 (CG: 400) draws of z ~ p(z | x, y) (solver seeds 0..draws-1) have the exact
    conditional mean and covariance: whitened mean error and covariance error (see :func:`likelihood_metrics`, both ~1
    when exact) below their limits over seeds 0..49 (max x 1.3). Covers the closed-form (SVD) and the
    conjugate-gradient prox; a missing measurement perturbation or a wrong rho gives a covariance
    error of several units."""
    got = likelihood_metrics(kind, op_name, sigma_y, rho, draws, seed=0)
    for metric, value in got.items():
        assert value < limit(EXTRA, f"likelihood/{name}/{metric}"), f"{name}: {got}"


def test_likelihood_step_without_noise_projects_onto_the_data():
    """sigma_y = 0: every draw satisfies A z = y (1e-10) and differs from x by rho-scale noise (rho = 0.1) on the
    unmeasured pixels (std within [0.05, 0.2])."""
    op = post.operator("inpaint")
    truth = post.prior().sample(4, seed=100)
    y = op.forward(truth)
    x = torch.full_like(truth, 0.5)
    z = likelihood_step(op, x, y, 0.1, 0.0, SampleRNG(0, 4))
    assert (op.forward(z) - y).abs().max() < 1e-10
    free = (1 - post.MASK).bool().expand_as(z)
    assert 0.05 < (z - x)[free].std() < 0.2


def calibrate_extra() -> dict[str, dict]:
    """The likelihood-step metrics over seeds 0..49 and the nonlinear-operator metrics of tests/test_pnpdm.py."""
    import test_pnpdm

    out: dict[str, dict] = {}
    for name, kind, op_name, sigma_y, rho, draws in LIKELIHOOD_CASES:
        runs = [likelihood_metrics(kind, op_name, sigma_y, rho, draws, seed) for seed in range(50)]
        seeds = f"problem 0, solver seeds {draws}j..{draws}j+{draws - 1} for j = 0..49"
        for metric in runs[0]:
            out[f"likelihood/{name}/{metric}"] = summarize([r[metric] for r in runs], seeds)
    got = test_pnpdm.nonlinear_metrics(50)
    seeds = "problems 0-49 (truth seed 100+j, noise seed 7+j), solver seeds 8j..8j+7"
    out["nonlinear/fit_min"] = summarize(got["fit"], seeds, "lower")
    out["nonlinear/fit_max"] = summarize(got["fit"], seeds, "upper")
    out["nonlinear/err_ratio"] = summarize(got["err_ratio"], seeds, "upper")
    return out
