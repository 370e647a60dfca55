"""Exactness of the solvers on a linear-Gaussian problem with a known posterior.

Prior: 8x8 single-channel Gaussian, squared-exponential covariance (std 0.15, length 2 px)
plus a 0.01 nugget. Operators (exact SVD via DenseSVDOperator): inpainting (random
~45 % of pixels kept), 3x3 binomial blur (zero padding), 2x2 average-pool downsampling.
Problem ``j``: ground truth = prior sample with seed ``100 + j``, ``y = A x + sigma_y n`` with
noise seed ``7 + j`` (no noise on unmeasured rows). The posterior is Gaussian and computed in
closed form by ``GaussianPrior.posterior``.

Metrics, per problem:
* ``ratio`` = RMS over pixels of (sample mean - posterior mean) / prior std, divided by
  the same RMS for the prior mean (the error of a solver that ignores y). 0 = exact.
* ``res`` = RMS of ``A x - y`` over measured entries, averaged over samples, compared with
  its exact posterior expectation ``sqrt((||A mu - y||^2 + tr(A C A^T)) / m)``.

The sampler tests run problem 0; their limits come from ``tests/data/calibration.json``
(section ``posterior``), where ``python tests/calibration/calibrate.py`` measured the same
metrics on problems 0..49 (solver seeds differ per problem) and set limit = max x 1.3
(lower bounds: min / 1.3); see ``tests/calibrated.py``. The PnP-ADMM tests (deterministic,
cheap) run all 50 problems.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from calibrated import limit
from pnp_restore._rng import SampleRNG
from pnp_restore.operators.base import DenseSVDOperator
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers import ddim, ddnm, ddpm, ddrm, diffpir, dps, pnp_admm

SHAPE = (1, 8, 8)
MASK = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).double()
KERNEL = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64).div(16).view(1, 1, 3, 3)
#: number of problems of the calibration (and of the PnP-ADMM tests)
PROBLEMS = 50


def inpaint(x):
    return x * MASK.to(x)


def blur(x):
    return F.conv2d(x, KERNEL.to(x), padding=1)


def down(x):
    return F.avg_pool2d(x, 2)


OPS = {"inpaint": inpaint, "blur": blur, "down": down}


@functools.cache
def prior() -> GaussianPrior:
    mean = 0.5 + 0.1 * torch.sin(torch.arange(64, dtype=torch.float64) / 5).view(SHAPE)
    return GaussianPrior(mean, squared_exponential_cov(SHAPE, std=0.15, length_scale=2.0, nugget=0.01))


@functools.cache
def operator(op_name: str) -> DenseSVDOperator:
    return DenseSVDOperator(OPS[op_name], SHAPE)


@functools.cache
def problem(op_name: str, sigma_y: float, count: int = 1):
    """Problems 0..count-1: (operator, y (count, ...), posterior means (count, 1, 8, 8), posterior cov (64, 64),
    m measured entries)."""
    p, op = prior(), operator(op_name)
    ax = op.forward(p.sample(count, seed=100))
    rows = (op.matrix.abs().sum(1) > 0).view(ax.shape[1:])
    y = ax + sigma_y * SampleRNG(7, count).randn(ax.shape, dtype=torch.float64) * rows
    mu, cov = p.posterior(y, op.matrix, sigma_y)
    return op, y, mu, cov, int(rows.sum())


def metrics(xs: torch.Tensor, op_name: str, sigma_y: float, count: int = 1) -> dict[str, torch.Tensor]:
    """``ratio``, ``res`` and ``exact_res`` (see the module docstring) per problem, each (count,);
    xs: (count * n, 1, 8, 8), the samples of problem j at rows j*n..(j+1)*n-1."""
    op, y, mu, cov, m = problem(op_name, sigma_y, count)
    p = prior()
    xs = xs.view(count, -1, *SHAPE)
    std = p.cov.diagonal().sqrt().view(1, *SHAPE)
    base = ((p.mean.view(1, *SHAPE) - mu) / std).flatten(1).pow(2).mean(1).sqrt()
    err = ((xs.mean(1) - mu) / std).flatten(1).pow(2).mean(1).sqrt()
    a = op.matrix
    exact_res = ((((mu.flatten(1) @ a.T - y.flatten(1)) ** 2).sum(1) + torch.trace(a @ cov @ a.T)) / m).sqrt()
    res = (op.forward(xs.flatten(0, 1)).view(count, xs.shape[1], -1) - y.flatten(1)[:, None]).pow(2)
    res = res.sum(2).div(m).mean(1).sqrt()
    return {"ratio": err / base, "res": res, "exact_res": exact_res}


def run(solver, op_name: str, sigma_y: float, n: int, count: int = 1, **kw) -> torch.Tensor:
    """n samples for each of problems 0..count-1 (solver seed 0: problem j's samples use seeds j*n..j*n+n-1)."""
    op, y, *_ = problem(op_name, sigma_y, count)
    return solver(y.repeat_interleave(n, 0), op, prior(), sigma_y=sigma_y, seed=0, **kw)


# ---------------------------------------------------------------------------- PnP-ADMM: exact MAP
#: PnP-ADMM's converged distance to the MAP, in units of the smallest prior std
ADMM_BOUND = 1e-4
ADMM_CASES = [("inpaint", 0.0), ("inpaint", 0.01), ("inpaint", 0.05), ("blur", 0.01), ("blur", 0.05),
              ("down", 0.0), ("down", 0.03)]  # fmt: skip


def admm_error(op_name: str, sigma_y: float, **kw) -> torch.Tensor:
    """Max abs distance of PnP-ADMM to the posterior mean (= MAP), per problem, in units of the smallest prior std."""
    op, y, mu, _, _ = problem(op_name, sigma_y, PROBLEMS)
    x = pnp_admm(y, op, prior(), sigma_y=sigma_y, **kw)
    return (x - mu).flatten(1).abs().amax(1) / prior().cov.diagonal().sqrt().min()


@pytest.mark.parametrize("op_name,sigma_y", ADMM_CASES)
def test_pnp_admm_converges_to_the_exact_map(op_name, sigma_y):
    """The Gaussian MMSE denoiser is the exact prox of -log p, so PnP-ADMM with a fixed final
    sigma converges to the MAP = posterior mean: on all 50 problems within 1e-4 of the smallest prior
    std with steps=300, sigma_min=0.05 (a convergence bound, not a statistical one; the measured errors
    are in calibration.json under ``pnp_admm/<op>/<sigma_y>/steps=300_error``)."""
    err = admm_error(op_name, sigma_y, steps=300, sigma_min=0.05)
    assert err.max() < ADMM_BOUND, f"max error {err.max():.2e} x the smallest prior std"


def test_pnp_admm_default_schedule_is_close():
    """Defaults (100 iterations, floor max(sigma_y, 0.01)), noiseless inpainting: on all 50 problems the
    error stays below the calibrated limit (``pnp_admm/inpaint/0.0/default_error``: max over the 50 x 1.3),
    and the x-iterate is a projection onto the data (1e-10)."""
    op, y, *_ = problem("inpaint", 0.0, PROBLEMS)
    err = admm_error("inpaint", 0.0)
    assert err.max() < limit("posterior", "pnp_admm/inpaint/0.0/default_error")
    assert (op.forward(pnp_admm(y, op, prior(), sigma_y=0.0)) - y).abs().max() < 1e-10


# ---------------------------------------------------------------------------- samplers: posterior mean
SOLVER_FNS = {"ddrm": ddrm, "ddnm": ddnm, "diffpir": diffpir, "dps": dps}
# (solver, kwargs, n samples per problem, op, sigma_y); limits per case in calibration.json
SAMPLER_CASES = [
    # DDRM, published defaults (20 steps, eta 0.85, eta_b 1). Biased on inpainting at 20 steps
    # (the unconditional denoiser stands in for the conditional one); the bias vanishes with steps.
    ("ddrm", {}, 500, "inpaint", 0.01),
    ("ddrm", {"steps": 500}, 50, "inpaint", 0.01),
    ("ddrm", {}, 500, "blur", 0.01),
    ("ddrm", {}, 500, "blur", 0.05),
    ("ddrm", {}, 500, "down", 0.0),
    ("ddrm", {}, 500, "down", 0.05),
    # DDNM (sigma_y = 0) and DDNM+ (sigma_y > 0), 100 steps, eta 0.85
    ("ddnm", {}, 150, "inpaint", 0.0),
    ("ddnm", {}, 150, "inpaint", 0.05),
    ("ddnm", {}, 150, "blur", 0.01),
    ("ddnm", {}, 150, "down", 0.0),
    ("ddnm", {}, 150, "down", 0.05),
    # DiffPIR, 100 steps, lambda 1, zeta 0.1
    ("diffpir", {}, 150, "inpaint", 0.01),
    ("diffpir", {}, 150, "blur", 0.01),
    ("diffpir", {}, 150, "down", 0.05),
    # DPS, 1000 steps, zeta 0.3 (the super-resolution/deblurring configs), no clamping: an
    # approximation (x0_hat in place of the posterior) and known to be biased, most on blur;
    # it also over-fits y (residual below the noise level).
    ("dps", {"zeta": 0.3, "clamp": False}, 50, "inpaint", 0.025),
    ("dps", {"zeta": 0.3, "clamp": False}, 50, "blur", 0.025),
    ("dps", {"zeta": 0.3, "clamp": False}, 50, "down", 0.025),
]


def case_key(name: str, kw: dict, op_name: str, sigma_y: float) -> str:
    """Calibration key of a sampler case, e.g. ``ddrm/steps=500/inpaint/0.01``."""
    return "/".join([name, *(f"{k}={v}" for k, v in kw.items()), op_name, str(sigma_y)])


def sampler_metrics(
    name: str, kw: dict, n: int, op_name: str, sigma_y: float, count: int = 1, fns: dict | None = None
) -> dict[str, list]:
    """The checked metrics of a sampler case per problem: ``ratio``, and ``res`` / exact for sigma_y > 0
    (``res_factor``) or ``res`` for sigma_y = 0. ``fns``: solver name -> function (default :data:`SOLVER_FNS`)."""
    xs = run((fns or SOLVER_FNS)[name], op_name, sigma_y, n, count, **kw)
    m = metrics(xs, op_name, sigma_y, count)
    out = {"ratio": m["ratio"]}
    if sigma_y > 0:
        out["res_factor"] = m["res"] / m["exact_res"]
    else:
        out["res"] = m["res"]
    return {k: v.tolist() for k, v in out.items()}


@pytest.mark.parametrize("name,kw,n,op_name,sigma_y", SAMPLER_CASES)
def test_sampler_mean_approaches_the_posterior_mean(name, kw, n, op_name, sigma_y):
    """Problem 0: sample mean vs exact posterior mean, ``ratio`` (see the module docstring; a solver ignoring
    y scores ~1) below its calibrated limit. Samples fit the data to the noise level: for sigma_y > 0,
    ``res`` / its exact posterior value inside the calibrated [min / 1.3, max x 1.3]; for sigma_y = 0 ``res``
    below its calibrated limit (DDNM is exact there: < 1e-10, measured ~3e-17)."""
    check_sampler_case("posterior", SOLVER_FNS, name, kw, n, op_name, sigma_y, exact_at_zero=name == "ddnm")


def check_sampler_case(
    section: str, fns: dict, name: str, kw: dict, n: int, op_name: str, sigma_y: float, exact_at_zero: bool = False
) -> None:
    """Assert problem 0's metrics of a sampler case inside the limits of ``section`` of the calibration
    (``exact_at_zero``: the solver fits noiseless data exactly, ``res`` < 1e-10 instead of a limit)."""
    key = case_key(name, kw, op_name, sigma_y)
    got = {k: v[0] for k, v in sampler_metrics(name, kw, n, op_name, sigma_y, fns=fns).items()}
    assert got["ratio"] < limit(section, f"{key}/ratio"), f"{key}: {got}"
    if sigma_y > 0:
        lo, hi = limit(section, f"{key}/res_factor_min"), limit(section, f"{key}/res_factor_max")
        assert lo < got["res_factor"] < hi, f"{key}: {got}"
    elif exact_at_zero:
        assert got["res"] < 1e-10
    else:
        assert got["res"] < limit(section, f"{key}/res"), f"{key}: {got}"


def test_diffpir_ends_with_a_data_step():
    """DiffPIR's last step (Algorithm 1) is a data step to sigma = 0, so with noise-free inpainting and a small
    lambda the output fits y: 1e-4 (measured 3.7e-6; returning D(x) of the last level instead gives 5.8e-3)."""
    op, y, *_ = problem("inpaint", 0.0)
    xs = run(diffpir, "inpaint", 0.0, 8, steps=20, lam=0.01)
    assert (op.forward(xs) - y).abs().max() < 1e-4


def test_ddrm_and_ddnm_plus_coincide_on_inpainting():
    """With 0/1 singular values and eta_b = 1, DDRM and DDNM+ are the same update (Wang et al. 2023, App.),
    so with the same noise they agree to round-off (1e-10); a strong check of both implementations."""
    a = run(ddrm, "inpaint", 0.05, 8, steps=30)
    b = run(ddnm, "inpaint", 0.05, 8, steps=30)
    assert (a - b).abs().max() < 1e-10


# ---------------------------------------------------------------------------- unconditional samplers
@pytest.mark.parametrize(
    "sampler,kw,tol_cov,measured", [(ddpm, {"steps": 250}, 0.13, 0.084), (ddim, {"steps": 100}, 0.15, 0.103)]
)
def test_unconditional_samples_have_the_prior_moments(sampler, kw, tol_cov, measured):
    """DDPM / DDIM through the VP<->VE conversion reproduce the prior: mean within 0.1 prior std
    (MC error ~0.03) and covariance within ``tol_cov`` relative (Frobenius; discretisation +
    MC error). A wrong sigma <-> alpha_bar conversion is off by a factor ~4."""
    p = prior()
    xs = sampler(p, (1000, *SHAPE), seed=0, dtype=torch.float64, **kw).flatten(1)
    std = p.cov.diagonal().sqrt()
    assert ((xs.mean(0) - p.mean) / std).abs().max() < 0.15
    rel = torch.linalg.matrix_norm(torch.cov(xs.T) - p.cov) / torch.linalg.matrix_norm(p.cov)
    assert rel < tol_cov, f"{sampler.__name__}: relative covariance error {rel:.3f} (measured {measured})"


def test_ddim_with_eta_one_is_ddpm():
    """DDIM's eta = 1 variance is DDPM's posterior variance: same samples to round-off (1e-10)."""
    a = ddpm(prior(), (4, *SHAPE), steps=30, seed=3, dtype=torch.float64)
    b = ddim(prior(), (4, *SHAPE), steps=30, eta=1.0, seed=3, dtype=torch.float64)
    assert (a - b).abs().max() < 1e-10
