"""DAPS mechanics: per-sample seeds, dtypes, presets and options, the official schedules, NFE,
nonlinear operators, divergence. Posterior accuracy: tests/test_posterior_daps.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pnp_restore._rng import SampleRNG
from pnp_restore.errors import ConfigError, DivergenceError
from pnp_restore.operators.base import FunctionOperator, NonlinearOperator
from pnp_restore.priors.base import Prior
from pnp_restore.solvers.common import setup
from pnp_restore.solvers.daps import DAPS_PRESETS, DAPS_TASKS, SPEC, TAU, daps, langevin
from pnp_restore.tasks import Task
from test_posterior import SHAPE, prior, problem

#: small settings for the mechanics tests
FAST = {"steps": 6, "ode_steps": 2, "langevin_steps": 5, "lr": 1e-3, "tau": None}


def blur_problem(sigma_y=0.05, count=3):
    op, y, *_ = problem("blur", sigma_y, count)
    return op, y


class Recorder(Prior):
    """The test prior, recording the sigmas it is called at and that it is never differentiated."""

    def __init__(self, nan_from: int | None = None):
        super().__init__()
        self.base, self.sigmas, self.nan_from = prior(), [], nan_from

    def denoise(self, x, sigma):
        assert not torch.is_grad_enabled() and not x.requires_grad
        self.sigmas.append(float(sigma))
        out = self.base.denoise(x, sigma)
        return out * float("nan") if self.nan_from is not None and len(self.sigmas) >= self.nan_from else out


def test_batch_equals_single_runs_and_seeds_are_reproducible():
    """Image i of a batch with seed s equals a single run with seed s + i (1e-12, float64), the same
    seed gives the same output and another seed a different one."""
    op, y = blur_problem()
    batch = daps(y, op, prior(), sigma_y=0.05, seed=5, **FAST)
    singles = torch.cat([daps(y[i : i + 1], op, prior(), sigma_y=0.05, seed=5 + i, **FAST) for i in range(3)])
    assert batch.shape == (3, *SHAPE) and batch.dtype == torch.float64
    assert (batch - singles).abs().max() < 1e-12
    assert torch.equal(batch, daps(y, op, prior(), sigma_y=0.05, seed=5, **FAST))
    assert (batch - daps(y, op, prior(), sigma_y=0.05, seed=6, **FAST)).abs().max() > 1e-2


def test_float32_and_float64_agree():
    """Both dtypes run, keep their dtype and agree to float32 accuracy (1e-3)."""
    op, y = blur_problem()
    x64 = daps(y, op, prior(), sigma_y=0.05, seed=1, **FAST)
    x32 = daps(y.float(), op, prior(), sigma_y=0.05, seed=1, **FAST)
    assert x32.dtype == torch.float32
    assert (x32.double() - x64).abs().max() < 1e-3


def test_langevin_noise_chunks_do_not_change_the_result(monkeypatch):
    """Langevin noise drawn a step at a time or many steps at once is the same stream (1e-12)."""
    import importlib

    module = importlib.import_module("pnp_restore.solvers.daps")  # the package's `daps` is the function

    op, y = blur_problem()
    a = daps(y, op, prior(), sigma_y=0.05, seed=3, **FAST)
    monkeypatch.setattr(module, "NOISE_CHUNK", 1)
    b = daps(y, op, prior(), sigma_y=0.05, seed=3, **FAST)
    assert (a - b).abs().max() < 1e-12


def official_edm(sigma_max, sigma_min, points, rho=7):
    """cores/scheduler.py EDMScheduler's grid on the code's [-1, 1] scale, halved to ours."""
    r = np.linspace(0, 1, points)
    return ((sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho / 2).tolist()


def test_schedules_and_nfe_follow_the_official_code():
    """Levels: the first 200 of edm_daps.yaml's 201-point poly-7 grid from 100 to 0.1 (halved); at each
    level the ODE evaluates the denoiser on the first 5 of the 6-point grid from the level to 0.01
    (halved); NFE = 200 x 5 (DAPS-1K); the callback sees every level (1e-9)."""
    rec, seen = Recorder(), []
    op, y = blur_problem(count=1)
    daps(y, op, rec, sigma_y=0.05, seed=0, langevin_steps=0, callback=seen.append)
    levels = official_edm(100, 0.1, 201)[:200]
    assert np.allclose([s["sigma"] for s in seen], levels, rtol=1e-9)
    assert [s["step"] for s in seen] == list(range(200)) and seen[-1]["nfe"] == 1000 == len(rec.sigmas)
    assert np.allclose(rec.sigmas[:5], official_edm(100, 0.01, 6)[:5], rtol=1e-9)
    assert np.allclose(rec.sigmas[-5:], official_edm(2 * levels[-1], 0.01, 6)[:5], rtol=1e-9)
    assert {"x", "x0", "x0_hat", "nfe", "sigma"} <= set(seen[0]) and seen[0]["x"].shape == (1, *SHAPE)


@pytest.mark.parametrize(
    "options,nfe",
    [
        ({"preset": "daps-100"}, 50 * 2),
        ({"preset": "daps-4k"}, 400 * 10),
        ({"preset": "daps-1k"}, 200 * 5),
        ({"preset": "daps-100", "ode_steps": 1}, 50 * 1),  # explicit options win
        ({"preset": "daps-4k", "steps": 7}, 7 * 10),
        ({"steps": 7, "ode_steps": 3}, 7 * 3),
    ],
)
def test_presets_and_nfe(options, nfe):
    """A preset sets annealing steps x ODE steps (the NFE); explicit steps / ode_steps win."""
    rec = Recorder()
    op, y = blur_problem(count=1)
    daps(y, op, rec, sigma_y=0.05, seed=0, langevin_steps=0, **options)
    assert len(rec.sigmas) == nfe
    assert DAPS_PRESETS["daps-1k"] == {"steps": 200, "ode_steps": 5}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"preset": "daps-2k"}, r"preset must be a string \(one of daps-100, daps-1k, daps-4k\) or None; got"),
        ({"lr": -1e-4}, "lr must be a number > 0"),
        ({"lr_min_ratio": 2.0}, r"lr_min_ratio must be a number in \[0, 1\]"),
        ({"ode_steps": 0}, "ode_steps must be an integer in"),
        ({"langevin_steps": 2.5}, "langevin_steps must be an integer"),
        ({"tau": 0.0}, "tau must be a number > 0 or None"),
        ({"sigma_min": 60.0}, "sigma_min must be below sigma_max"),
        ({"ode_sigma_min": 45.0}, "not above ode_sigma_min"),
        ({"sigmas": [1.0, 0.004]}, "not above ode_sigma_min"),
        ({"tau": None, "sigma_y": 0.0}, "tau=None uses the measurement noise sigma_y"),
    ],
)
def test_invalid_options_give_one_line_config_errors(options, message):
    op, y = blur_problem(count=1)
    args = {"sigma_y": 0.05, "seed": 0, "steps": 3, **options}
    with pytest.raises(ConfigError, match=message) as err:
        daps(y, op, prior(), **args)
    assert "\n" not in str(err.value)


def test_tau_none_is_the_true_noise_and_sigmas_override_the_schedule():
    """``tau=None`` is ``tau=sigma_y`` exactly; explicit ``sigmas`` are the levels the callback sees."""
    op, y = blur_problem(count=2)
    a = daps(y, op, prior(), sigma_y=0.05, seed=2, **FAST)
    b = daps(y, op, prior(), sigma_y=0.05, seed=2, **{**FAST, "tau": 0.05})
    assert torch.equal(a, b)
    seen = []
    daps(y, op, prior(), sigma_y=0.05, seed=0, sigmas=[2.0, 0.5, 0.1], langevin_steps=1, callback=seen.append)
    assert [s["sigma"] for s in seen] == [2.0, 0.5, 0.1]


def test_spec_and_published_settings():
    """Any differentiable operator, only ``denoise``; per-task Langevin settings of configs/task/*.yaml
    (group ``pixel``); the code's tau 0.01 on [-1, 1] is 0.01 / (2 sqrt 2) as our likelihood std."""
    assert SPEC.name == "daps" and SPEC.fn is daps and not SPEC.linear and SPEC.prior == "denoise"
    assert SPEC.default_steps == 200 and SPEC.tasks is DAPS_TASKS
    assert DAPS_TASKS[Task.SUPER_RESOLUTION] == {"lr": 1e-4, "langevin_steps": 100}
    assert DAPS_TASKS[Task.INPAINTING] == {"lr": 5e-5, "langevin_steps": 100}
    assert DAPS_TASKS[Task.PHASE_RETRIEVAL] == {"lr": 5e-5, "langevin_steps": 100}
    assert DAPS_TASKS[Task.HDR] == {"lr": 2e-5, "langevin_steps": 100}
    assert DAPS_TASKS[Task.NONLINEAR_DEBLUR] == {"lr": 1e-5, "langevin_steps": 200}
    # code loss ||A x_pm - y_pm||^2 / 0.01^2 = 4 ||A x - y||^2 / 0.01^2 = ||A x - y||^2 / (2 TAU^2)
    assert math.isclose(4 / 0.01**2, 1 / (2 * TAU**2))


def test_nan_from_the_prior_raises_divergence_error_naming_the_level():
    """The 7th denoiser call is in level 4 (ode_steps=2): 'diverged at step 4/6' with a hint."""
    op, y = blur_problem(count=1)
    with pytest.raises(DivergenceError, match=r"daps diverged at step 4/6 \(sigma=.*try a smaller lr"):
        daps(y, op, Recorder(nan_from=7), sigma_y=0.05, seed=0, **FAST)


def test_langevin_samples_the_gaussian_conditional_of_the_paper():
    """The Langevin of one level targets p(x0 | x_t, y) ~ N(x0; x0_hat, sigma^2) p(y | x0) (paper Eq. 7, the
    code's prior_solver 'gaussian'), on [-1, 1]: identity operator, y_pm = 0, x0_hat_pm = 1, sigma = tau = 0.25
    ([0, 1] scale): prior and data precisions 1 / (2 sigma)^2 = 1 / (4 tau^2) = 4, so the target is N(0.5, 1/8);
    unadjusted Langevin with step lr on a precision h has the stationary variance 1 / (h (1 - lr h / 2)).
    3200 chains (50 samples x 64 pixels), 400 steps of lr 0.01 (mixing in ~12): mean within 0.03 (MC std
    0.006) and variance within 8 % (MC std 2.5 %). A wrong scale of sigma or tau moves the mean to 0.2 / 0.8."""
    op = FunctionOperator(lambda x: x, in_shape=SHAPE)
    y = torch.full((50, *SHAPE), 0.5, dtype=torch.float64)
    run = setup(SPEC, y, op, prior(), sigma_y=0.0, steps=1, sigmas=[0.25], seed=0, callback=None)
    x = langevin(run, torch.ones_like(y), 0.25, steps=400, lr=0.01, tau=0.25)
    h, lr = 8.0, 0.01
    assert abs(x.mean().item() - 0.5) < 0.03
    assert abs(x.var().item() * h * (1 - lr * h / 2) - 1) < 0.08


def test_unstable_langevin_raises_divergence_error_before_overflow():
    """The published lr / tau sit at the Langevin's stability limit for a gain-1 operator; a gain of 1.1
    grows the iterate ~1.4x per Langevin step (finite for 100s of steps): DivergenceError at level 1."""
    op = FunctionOperator(lambda x: 1.1 * x)
    y = op(prior().sample(1, seed=0))
    with pytest.raises(DivergenceError, match=r"daps diverged at step 1/3 .*reached .*lr \|\|A\|\|\^2 < 8 tau\^2"):
        daps(y, op, prior(), sigma_y=0.02, seed=0, steps=3, ode_steps=1)


#: problems of the nonlinear test, all in one batch
NONLINEAR_PROBLEMS = 50


def clamp(x):
    return x.clamp(0.35, 0.65)


def square(x):
    return x**2


@pytest.mark.parametrize("fn,fit_bounds,gain", [(clamp, (0.8, 1.3), 0.75), (square, (0.8, 1.3), 0.45)])
def test_nonlinear_operator_fits_y_and_beats_the_prior_mean(fn, fit_bounds, gain):
    """Nonlinear operators (a clamp, which cuts the gradient where it saturates, and a square law), sigma_y
    0.03, 50 problems (truth = prior sample seed 100 + j, noise seed 7 + j) in one batch, the Langevin on the
    true noise (tau=None): the RMS residual ||A(x) - y|| / sqrt(m) over the batch is at the noise level
    (``fit_bounds`` x sigma_y; measured clamp 1.08, square 1.00) and the RMS error of the samples to the truth
    is below ``gain`` x that of the prior mean, the best y-ignoring estimate (measured clamp 0.55, square 0.31;
    an unconditional prior sample scores ~1.4). The clamp hides the saturated pixels, hence its larger error."""
    sigma_y, n = 0.03, NONLINEAR_PROBLEMS
    p, op = prior(), NonlinearOperator(fn)
    truth = p.sample(n, seed=100)
    y = fn(truth) + sigma_y * SampleRNG(7, n).randn(truth.shape, dtype=torch.float64)
    x = daps(y, op, p, sigma_y=sigma_y, seed=0, tau=None, steps=25, ode_steps=4, langevin_steps=50, lr=2e-3)
    fit = (fn(x) - y).pow(2).mean().sqrt() / sigma_y
    err = (x - truth).pow(2).mean().sqrt() / (p.mean.view(1, *SHAPE) - truth).pow(2).mean().sqrt()
    assert fit_bounds[0] < fit < fit_bounds[1], f"residual {fit:.3f} x sigma_y"
    assert err < gain, f"error {err:.3f} x the prior mean's"
