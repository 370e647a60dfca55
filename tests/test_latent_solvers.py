"""Latent solvers (solvers/latent_dpe.py, latent_daps.py, psld.py): closed-form checks and tiny diffusers pipelines.

Closed form. A Gaussian prior over a small latent (12, 2, 2) with a *linear* autoencoder
(``decode(z) = M z + b`` with ``M = 0.15 (I + 0.3 G / sqrt(d))``, ``encode`` its exact inverse, float64)
makes ``x = decode(z0)`` Gaussian, so the posterior of ``x`` given ``y = A x + sigma_y n`` is exact
(:meth:`GaussianPrior.posterior` of ``z`` for the matrix ``A M``, mapped by the decoder). Metric as in
tests/test_posterior.py: ``ratio`` = distance of the sample mean (n samples) to the posterior mean over the
distance of the prior mean to it, both in units of the prior's pixel std (a solver ignoring y scores ~1).
Limits: tests/data/calibration_latent_solvers.json, written by :func:`calibrate` (problems 0..49,
``python tests/calibration/calibrate.py latent_solvers``; limit = max x 1.3).

Pipelines: tiny random Stable Diffusion pipelines of tests/test_latent_prior.py (VAE factor 4, 4 latent
channels): the solvers run on every operator kind with a real LatentPrior and its VAE.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import calibrated
from pnp_restore import priors
from pnp_restore._rng import SampleRNG
from pnp_restore.errors import ConfigError, DivergenceError
from pnp_restore.operators import Blur, DenseSVDOperator, Inpainting, NonlinearOperator, SuperResolution, gaussian_kernel
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers.latent_daps import latent_daps
from pnp_restore.solvers.latent_dpe import latent_dpe
from pnp_restore.solvers.common import setup
from pnp_restore.solvers.psld import SPEC as PSLD_SPEC
from pnp_restore.solvers.psld import psld, psld_error
from test_latent_prior import make_pipeline

SECTION = "latent_solvers"
SOLVERS = {"latent_dpe": latent_dpe, "latent_daps": latent_daps, "psld": psld}
IMAGE = (3, 4, 4)
LATENT = (12, 2, 2)
D = 48


class LinearLatent:
    """A Gaussian latent prior with a linear, exactly invertible autoencoder (float64)."""

    channels, latent_channels, factor = 3, LATENT[0], 2

    def __init__(self) -> None:
        g = torch.randn(D, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        self.M = 0.15 * (torch.eye(D, dtype=torch.float64) + 0.3 * g / math.sqrt(D))
        self.M_inv = torch.linalg.inv(self.M)
        self.b = torch.full((D,), 0.5, dtype=torch.float64)
        cov = squared_exponential_cov(LATENT, std=1.0, length_scale=1.0, nugget=0.3)
        self.latent = GaussianPrior(torch.zeros(LATENT, dtype=torch.float64), cov, sigma_max=20.0)

    def denoise(self, z, sigma):
        return self.latent.denoise(z, sigma)

    def sigmas(self, steps):
        return self.latent.sigmas(steps)

    def decode(self, z, size=None):
        return (z.flatten(1) @ self.M.to(z).T + self.b.to(z)).view(-1, *IMAGE)

    def encode(self, x):
        return ((x.flatten(1) - self.b.to(x)) @ self.M_inv.to(x).T).view(-1, *LATENT)


@functools.cache
def linear_latent() -> LinearLatent:
    return LinearLatent()


MASK = (torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).double()
CLOSED_OPS = {
    "inpaint": lambda x: x * MASK.to(x),
    "down": lambda x: torch.nn.functional.avg_pool2d(x, 2),
}


@functools.cache
def closed_operator(op_name: str) -> DenseSVDOperator:
    return DenseSVDOperator(CLOSED_OPS[op_name], IMAGE)


@functools.cache
def closed_problem(op_name: str, sigma_y: float, count: int):
    """Problems 0..count-1: (operator, y (count, ...), exact posterior means of x (count, 3, 4, 4), the
    posterior variances of x's pixels (3, 4, 4))."""
    p, op = linear_latent(), closed_operator(op_name)
    x = p.decode(p.latent.sample(count, seed=100))
    ax = op.forward(x)
    y = ax + sigma_y * SampleRNG(7, count).randn(ax.shape, dtype=torch.float64)
    a = op.matrix
    mu_z, cov_z = p.latent.posterior(y - (p.b @ a.T).view(1, *ax.shape[1:]), a @ p.M, sigma_y)
    return op, y, p.decode(mu_z), (p.M @ cov_z @ p.M.T).diagonal().view(IMAGE)


#: (solver, kwargs, n samples, operator, sigma_y)
CLOSED_CASES = [
    ("latent_dpe", {}, 50, "inpaint", 0.05),
    ("latent_dpe", {}, 50, "down", 0.05),
    ("latent_daps", {"tau": None, "mc_algo": "langevin", "lr": 2e-3, "mcmc_steps": 30, "steps": 25, "ode_steps": 4},
     50, "inpaint", 0.05),
    ("psld", {"steps": 50}, 50, "inpaint", 0.05),
    ("psld", {"steps": 50}, 50, "down", 0.05),
]  # fmt: skip


def case_key(name, kw, op_name, sigma_y) -> str:
    return "/".join([name, *(f"{k}={v}" for k, v in kw.items()), op_name, str(sigma_y)])


def closed_metrics(name: str, kw: dict, n: int, op_name: str, sigma_y: float, count: int = 1) -> dict[str, list]:
    """Per problem (problem j's samples use seeds j*n..j*n+n-1): ``ratio`` (see the module docstring) and
    ``spread``, the root of the samples' mean pixel variance over the exact posterior's."""
    op, y, mu, var = closed_problem(op_name, sigma_y, count)
    p = linear_latent()
    xs = SOLVERS[name](y.repeat_interleave(n, 0), op, p, sigma_y=sigma_y, seed=0, **kw).view(count, n, *IMAGE)
    prior_mean = p.decode(p.latent.mean.view(1, *LATENT))
    std = (p.M @ p.latent.cov @ p.M.T).diagonal().sqrt().view(1, *IMAGE)
    base = ((prior_mean - mu) / std).flatten(1).pow(2).mean(1).sqrt()
    err = ((xs.mean(1) - mu) / std).flatten(1).pow(2).mean(1).sqrt()
    spread = (xs.var(1).flatten(1).mean(1) / var.mean()).sqrt()
    return {"ratio": (err / base).tolist(), "spread": spread.tolist()}


@pytest.mark.parametrize("name,kw,n,op_name,sigma_y", CLOSED_CASES)
def test_samples_approach_the_exact_posterior(name, kw, n, op_name, sigma_y):
    """Problem 0: ``ratio`` below its calibrated limit (a solver ignoring y scores ~1) and ``spread`` inside
    the calibrated [min / 1.3, max x 1.3]."""
    key = case_key(name, kw, op_name, sigma_y)
    got = {k: v[0] for k, v in closed_metrics(name, kw, n, op_name, sigma_y).items()}
    assert got["ratio"] < calibrated.limit(SECTION, f"{key}/ratio"), f"{key}: {got}"
    lo, hi = calibrated.limit(SECTION, f"{key}/spread_min"), calibrated.limit(SECTION, f"{key}/spread_max")
    assert lo < got["spread"] < hi, f"{key}: {got}"


def calibrate() -> dict[str, dict]:
    """The limits of :data:`CLOSED_CASES` over problems 0..49 (section ``latent_solvers``)."""
    out = {}
    for name, kw, n, op_name, sigma_y in CLOSED_CASES:
        seeds = f"problems 0-49 (truth seed 100+j, noise seed 7+j), solver seeds {n}j..{n}j+{n - 1}"
        got = closed_metrics(name, kw, n, op_name, sigma_y, count=50)
        key = case_key(name, kw, op_name, sigma_y)
        out[f"{key}/ratio"] = calibrated.summarize(got["ratio"], seeds)
        out[f"{key}/spread_min"] = calibrated.summarize(got["spread"], seeds, "lower")
        out[f"{key}/spread_max"] = calibrated.summarize(got["spread"], seeds)
    return out


# ------------------------------------------------------------------------------------- tiny pipelines
@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latent-solvers") / "eps"
    make_pipeline(folder, "epsilon")
    return priors.load(folder)


H = 16


def operators(size: int) -> dict:
    """One operator of each kind for (3, size, size) images."""
    mask = (torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    return {
        "inpaint": Inpainting(mask),
        "sr": SuperResolution(2, "avgpool"),
        "blur": Blur(gaussian_kernel(3, 1.0)),
        "nonlinear": NonlinearOperator(lambda x: torch.tanh(2 * x - 1), in_shape=(3, size, size)),
    }


FAST = {
    "latent_dpe": {"steps": 8, "data_steps": 10},
    "latent_daps": {"steps": 8, "ode_steps": 1, "mcmc_steps": 10, "tau": 0.02, "lr": 2e-3, "mc_algo": "langevin"},
    "psld": {"steps": 50},
}


def truth() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (0.5 + 0.3 * torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(H, H), mode="bilinear"))


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("op_name", ["inpaint", "sr", "blur", "nonlinear"])
def test_every_operator_kind_improves_the_data_fit(name, op_name):
    """Linear autoencoder (decode(encode(x)) = x): the output fits y far better than the first
    decoded estimate ``x0`` (the prior's guess from pure noise)."""
    p = linear_latent()
    op = operators(4)[op_name]
    y = op(p.decode(p.latent.sample(1, seed=11)))
    seen = []
    out = SOLVERS[name](y, op, p, sigma_y=0.01, seed=0, callback=seen.append, **FAST[name])
    start = (op(seen[0]["x0"]) - y).norm()
    final = (op(out) - y).norm()
    assert final < 0.3 * start, f"{name}/{op_name}: misfit {final:.4g} vs start {start:.4g}"
    assert len(seen) == FAST[name]["steps"] and seen[-1]["nfe"] > 0


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("op_name", ["inpaint", "sr", "blur", "nonlinear"])
def test_every_operator_kind_runs_on_a_diffusers_pipeline(sd, name, op_name):
    """A real LatentPrior (random tiny VAE + UNet, so no fit to expect): decoded (1, 3, H, W) output,
    finite, one callback per level, the NFE counted."""
    op = operators(H)[op_name]
    seen = []
    out = SOLVERS[name](op(truth()), op, sd, sigma_y=0.01, seed=0, callback=seen.append, **FAST[name])
    assert out.shape == (1, 3, H, H) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert len(seen) == FAST[name]["steps"] and seen[-1]["nfe"] >= FAST[name]["steps"]
    assert seen[-1]["z"].shape == (1, 4, H // 4, H // 4)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_batch_equals_single_runs(sd, name):
    op = operators(H)["sr"]
    y = op(torch.cat([truth(), truth().flip(-1)]))
    kw = {**FAST[name], "steps": 3}
    whole = SOLVERS[name](y, op, sd, sigma_y=0.01, seed=4, **kw)
    for i in range(2):
        single = SOLVERS[name](y[i : i + 1], op, sd, sigma_y=0.01, seed=4 + i, **kw)
        torch.testing.assert_close(whole[i : i + 1], single, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_closed_form_batch_equals_single_runs(name):
    op, y, *_ = closed_problem("inpaint", 0.05, 2)
    kw = {**FAST[name], "steps": 4}
    whole = SOLVERS[name](y, op, linear_latent(), sigma_y=0.05, seed=9, **kw)
    for i in range(2):
        single = SOLVERS[name](y[i : i + 1], op, linear_latent(), sigma_y=0.05, seed=9 + i, **kw)
        torch.testing.assert_close(whole[i : i + 1], single, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_a_pixel_prior_is_refused_in_one_line(name):
    op, y, *_ = closed_problem("inpaint", 0.05, 1)
    pixel = GaussianPrior(torch.full(IMAGE, 0.5, dtype=torch.float64), torch.eye(D, dtype=torch.float64) * 0.01)
    with pytest.raises(ConfigError, match="needs a latent prior") as e:
        SOLVERS[name](y, op, pixel, sigma_y=0.05, seed=0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("latent_dpe", {"lam": -1.0}, "lam must be"),
        ("latent_dpe", {"data_lr": 3.0}, "data_lr must be"),
        ("latent_dpe", {"steps": 0}, "steps must be"),
        ("latent_daps", {"mc_algo": "mala"}, "mc_algo must be"),
        ("latent_daps", {"momentum": 1.5}, "momentum must be"),
        ("latent_daps", {"sigma_min": 20.0}, "sigma_min must be below"),
        ("latent_daps", {"tau": None}, "tau=None"),
        ("psld", {"omega": -1.0}, "omega must be"),
        ("psld", {"gamma": "big"}, "gamma must be"),
    ],
)
def test_bad_options_fail_in_one_line(name, kw, match):
    op, y, *_ = closed_problem("inpaint", 0.05, 1)
    with pytest.raises(ConfigError, match=match) as e:
        SOLVERS[name](y, op, linear_latent(), sigma_y=0.0, seed=0, **kw)
    assert "\n" not in str(e.value)


class NaNAfter(LinearLatent):
    """The linear latent prior whose denoiser returns NaN from its ``k``-th call on."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k, self.calls = k, 0

    def denoise(self, z, sigma):
        self.calls += 1
        out = super().denoise(z, sigma)
        return out * math.nan if self.calls >= self.k else out


def test_divergence_names_the_step():
    """NaN from the network at level 3 (latent_dpe: one call per level), and a finite blow-up of the
    chain at level 1 (latent_daps with a step size far past its stability limit)."""
    op, y, *_ = closed_problem("inpaint", 0.05, 1)
    with pytest.raises(DivergenceError, match=r"latent_dpe diverged at step 3/5 \(sigma=.*NaN") as e:
        latent_dpe(y, op, NaNAfter(3), sigma_y=0.05, seed=0, steps=5)
    assert "\n" not in str(e.value)
    with pytest.raises(DivergenceError, match=r"latent_daps diverged at step 1/5 .*smaller lr") as e:
        latent_daps(y, op, linear_latent(), sigma_y=0.05, seed=0, steps=5, lr=10.0, mc_algo="langevin")
    assert "\n" not in str(e.value)
    with pytest.raises(DivergenceError, match=r"psld diverged at step 1/5 .*lower omega") as e:
        psld(y, op, linear_latent(), sigma_y=0.05, seed=0, steps=5, omega=1e8)
    assert "\n" not in str(e.value)


def test_psld_gluing_term_is_the_encoded_projection_error():
    """omega = 0, gamma = 1: ``err = ||encode(x0 + A^T (y - A x0)) - z0||`` per sample, which the linear
    autoencoder gives in closed form as ``||M^-1 A^T (y - A x0)||``; a nonlinear operator has no gluing term."""
    p = linear_latent()
    op, y, *_ = closed_problem("down", 0.05, 2)
    run = setup(PSLD_SPEC, y, op, p, sigma_y=0.05, steps=5, sigmas=None, seed=0, callback=None)
    z = p.latent.sample(2, seed=3)
    err, z0, x0 = psld_error(run, z, 0.5, omega=0.0, gamma=1.0)
    a = op.matrix
    r = y.flatten(1) - x0.flatten(1) @ a.T
    expected = (r @ a @ p.M_inv.T).norm(dim=1).sum()
    torch.testing.assert_close(err, expected, rtol=1e-10, atol=0)
    nonlinear = NonlinearOperator(lambda x: torch.nn.functional.avg_pool2d(x, 2), in_shape=IMAGE)
    run = setup(PSLD_SPEC, y, nonlinear, p, sigma_y=0.05, steps=5, sigmas=None, seed=0, callback=None)
    assert float(psld_error(run, z, 0.5, omega=0.0, gamma=1.0)[0]) == 0.0


def test_latent_daps_published_hmc_chain_fits_the_data():
    """The default chain (damped HMC, the ``sd`` settings of the code's down_sampling.yaml) on the closed-form
    problem with 10 levels: the output fits y far better than the first decoded estimate."""
    p = linear_latent()
    op = operators(4)["sr"]
    y = op(p.decode(p.latent.sample(1, seed=11)))
    seen = []
    out = latent_daps(y, op, p, sigma_y=0.01, seed=0, steps=10, callback=seen.append)
    assert (op(out) - y).norm() < 0.3 * (op(seen[0]["x0"]) - y).norm()


def test_latent_solvers_are_registered_apart_from_the_pixel_ones():
    """restore() and the CLI's option checks find them; the pixel registry (every pixel-prior test) does not list them."""
    from pnp_restore import solvers

    assert set(solvers.LATENT_SPECS) == {"latent_dpe", "latent_daps", "psld"}
    assert not set(solvers.LATENT_SPECS) & set(solvers.SOLVERS)
    assert all(solvers.spec(n) is solvers.LATENT_SPECS[n] for n in solvers.LATENT_SPECS)
    assert solvers.validate_options("psld", {"omega": 1}) == {"omega": 1.0}
