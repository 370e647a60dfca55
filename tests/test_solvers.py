"""Solver mechanics: per-sample seeds, forward-only operators, divergence, dtypes, restore() errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pnp_restore import solvers
from pnp_restore.errors import ConfigError, DivergenceError, OperatorError, ShapeError
from pnp_restore.operators.base import DenseSVDOperator, FunctionOperator
from pnp_restore.priors.base import Prior
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.restoration import restore, solver_options
from pnp_restore.solvers import daps, ddim, ddnm, ddpm, ddrm, diffpir, dps, pigdm, pnp_admm, pnpdm, reddiff
from pnp_restore.solvers.common import schedule
from pnp_restore.solvers.ddnm import time_travel_indices
from pnp_restore.solvers.diffpir import DIFFPIR_PARAMS, diffpir_timesteps
from pnp_restore.solvers.dps import DPS_SCALES

SHAPE = (3, 4, 4)


def prior() -> GaussianPrior:
    return GaussianPrior(torch.full(SHAPE, 0.5, dtype=torch.float64), squared_exponential_cov(SHAPE, 0.15, 1.5, 0.02))


def down(x):
    return F.avg_pool2d(x, 2)


def blur_rows(x):
    return (x + x.roll(1, -1)) / 2


def problem(fn=down, sigma_y=0.02, batch=3):
    """(forward-only operator, its DenseSVD, y) for the same x (seed 0)."""
    p = prior()
    x = p.sample(batch, seed=0)
    op = FunctionOperator(fn, in_shape=SHAPE)
    y = op.forward(x) + sigma_y * torch.randn(
        op.forward(x).shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    return op, DenseSVDOperator(fn, SHAPE), y


# every solver with small settings: name -> (fn, kwargs, needs SVD)
CASES = {
    "ddrm": (ddrm, {"steps": 8}, True),
    "ddnm": (ddnm, {"steps": 8}, False),  # sigma_y = 0 -> plain DDNM (pinv by CG)
    "ddnm+": (ddnm, {"steps": 8, "travel_length": 2, "travel_repeat": 2}, True),
    "dps": (dps, {"steps": 8, "zeta": 0.3}, False),
    "diffpir": (diffpir, {"steps": 8}, False),
    "pnp_admm": (pnp_admm, {"steps": 8}, False),
    # one network call per step (ode_steps / edm_steps 1), so "step k" of a NaN is the k-th call
    "daps": (daps, {"steps": 8, "ode_steps": 1, "langevin_steps": 5, "tau": None, "lr": 1e-3}, False),
    "pigdm": (pigdm, {"steps": 8}, False),
    "reddiff": (reddiff, {"steps": 8}, False),
    "pnpdm": (pnpdm, {"steps": 8, "edm_steps": 1}, False),
}


def call(name, y, op, p=None, seed=0, **extra):
    fn, kw, _ = CASES[name]
    sigma_y = 0.0 if name == "ddnm" else 0.02
    return fn(y, op, p or prior(), sigma_y=sigma_y, seed=seed, **kw, **extra)


@pytest.mark.parametrize("name", list(CASES))
def test_batch_equals_single_runs_and_seeds_are_reproducible(name):
    """Image i of a batch with seed s equals a single run with seed s + i (1e-12 in float64);
    the same seed gives identical output, another seed a different one (stochastic solvers)."""
    _, svd_op, y = problem()
    batch = call(name, y, svd_op, seed=5)
    singles = torch.cat([call(name, y[i : i + 1], svd_op, seed=5 + i) for i in range(3)])
    assert batch.shape == (3, *SHAPE) and batch.dtype == torch.float64
    assert (batch - singles).abs().max() < 1e-12
    assert torch.equal(batch, call(name, y, svd_op, seed=5))
    if name != "pnp_admm":
        assert (batch - call(name, y, svd_op, seed=6)).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", [ddpm, ddim])
def test_unconditional_batch_equals_single_runs(sampler):
    batch = sampler(prior(), (3, *SHAPE), steps=6, seed=9, dtype=torch.float64)
    singles = torch.cat([sampler(prior(), (1, *SHAPE), steps=6, seed=9 + i, dtype=torch.float64) for i in range(3)])
    assert (batch - singles).abs().max() < 1e-12


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c[2]])
def test_forward_only_operator_matches_its_dense_svd(name):
    """Solvers that need no SVD accept a FunctionOperator (adjoint by autograd, pinv/prox by CG) and give
    the result of the exact-SVD operator up to CG accuracy (3e-4; measured ~1e-6)."""
    op, svd_op, y = problem(blur_rows)
    a = call(name, y, op, seed=2)
    b = call(name, y, svd_op, seed=2)
    assert torch.isfinite(a).all()
    assert (a - b).abs().max() < 3e-4


def test_noiseless_ddnm_with_a_forward_only_operator_fits_y():
    """Noiseless DDNM's output satisfies A x = y (CG pinv: 1e-5; exact SVD: 1e-12)."""
    op, svd_op, y = problem(down, sigma_y=0.0)
    assert (op.forward(call("ddnm", y, op)) - y).abs().max() < 1e-5
    assert (svd_op.forward(call("ddnm", y, svd_op)) - y).abs().max() < 1e-12


@pytest.mark.parametrize("name", ["ddrm", "ddnm+"])
def test_svd_solvers_need_an_svd(name):
    """DDRM and DDNM+ refuse a forward-only operator with a message naming the alternatives,
    and work once it is wrapped in DenseSVDOperator."""
    op, _, y = problem()
    with pytest.raises(OperatorError, match="DenseSVDOperator"):
        call(name, y, op)
    assert torch.isfinite(call(name, y, DenseSVDOperator(op, SHAPE))).all()


class NaNAfter(Prior):
    """A prior that returns NaN from its ``k``-th call on."""

    def __init__(self, base, k):
        super().__init__()
        self.base, self.k, self.calls = base, k, 0
        self.sigma_min, self.sigma_max, self.channels = base.sigma_min, base.sigma_max, base.channels

    def denoise(self, x, sigma):
        self.calls += 1
        out = self.base.denoise(x, sigma)
        return out * float("nan") if self.calls >= self.k else out


@pytest.mark.parametrize("name", list(CASES))
def test_nan_raises_divergence_error_naming_the_step(name):
    _, svd_op, y = problem()
    with pytest.raises(DivergenceError, match=r"diverged at step 3/\d+ \(sigma=.*try"):
        call(name, y, svd_op, p=NaNAfter(prior(), 3))


@pytest.mark.parametrize("name", list(CASES))
def test_float32_and_float64_agree(name):
    """Both dtypes run, keep their dtype, and agree to float32 accuracy (5e-3; measured ~1e-5)."""
    _, svd_op, y = problem()
    x64 = call(name, y, svd_op, seed=1)
    x32 = call(name, y.float(), svd_op, seed=1)
    assert x32.dtype == torch.float32 and x64.dtype == torch.float64
    assert (x32.double() - x64).abs().max() < 5e-3


def test_callback_sees_every_step():
    _, svd_op, y = problem()
    seen = []
    ddrm(y, svd_op, prior(), sigma_y=0.02, steps=5, seed=0, callback=seen.append)
    assert [s["step"] for s in seen] == list(range(5))
    assert {"step", "steps", "sigma", "x", "x0", "nfe"} <= set(seen[0])
    assert seen[-1]["nfe"] == 5 and seen[0]["x"].shape == (3, *SHAPE)


def test_time_travel_schedule():
    assert time_travel_indices(4) == [1, 2, 3, 4]
    order = time_travel_indices(6, travel_length=2, travel_repeat=2)
    assert order[:5] == [1, 2, 3, 2, 1] and order[-1] == 6
    assert all(abs(a - b) == 1 for a, b in zip([0] + order, order))


def test_dps_without_guidance_is_ancestral_ddpm():
    """zeta = 0 and no clamping: DPS's sampler is DDPM's (same coefficients, noise order, last step) to 1e-12."""
    _, svd_op, y = problem()
    a = dps(y, svd_op, prior(), steps=10, zeta=0.0, clamp=False, seed=3)
    b = ddpm(prior(), (3, *SHAPE), steps=10, seed=3, dtype=torch.float64)
    assert (a - b).abs().max() < 1e-12


def test_published_per_task_defaults():
    """The official task configs: DPS ``scale`` (configs/*_config.yaml) and DiffPIR's (lambda, zeta, steps)."""
    assert DPS_SCALES == {"super_resolution": 0.3, "inpainting": 0.5, "gaussian_deblur": 0.3, "motion_deblur": 0.3,
                          "nonlinear_deblur": 0.3, "phase_retrieval": 1.0}
    assert DIFFPIR_PARAMS["gaussian_deblur"] == {"steps": 100, "lam": 7.0, "zeta": 0.3}
    assert DIFFPIR_PARAMS["inpainting"] == {"steps": 20, "lam": 1.0, "zeta": 1.0}
    _, svd_op, y = problem()
    for params in DIFFPIR_PARAMS.values():  # every entry is a valid set of diffpir options
        assert torch.isfinite(diffpir(y, svd_op, prior(), sigma_y=0.02, seed=0, **{**params, "steps": 2})).all()


class ConstantPrior(Prior):
    """Denoises everything to the constant ``c`` (out of [0, 1] to test clamping)."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def denoise(self, x, sigma):
        return torch.full_like(x, self.c)


@pytest.mark.parametrize("clamp,expected", [(True, 1.0), (False, 1.5)])
def test_diffpir_clamps_the_denoised_estimate(clamp, expected):
    """DiffPIR's code clamps x0 to [-1, 1] before the data step; unmeasured pixels keep it (1e-12)."""
    keep = (torch.arange(16) % 2 == 0).double().view(1, 1, 4, 4)
    op = DenseSVDOperator(lambda x: x * keep.to(x), SHAPE)
    y = torch.full((2, *SHAPE), 0.5, dtype=torch.float64) * keep
    x = diffpir(y, op, ConstantPrior(1.5), sigma_y=0.02, steps=4, seed=0, clamp=clamp)
    assert (x[..., keep[0, 0] == 0] - expected).abs().max() < 1e-12


def test_diffpir_timesteps_follow_the_official_quad_schedule():
    """t_i = T - 1 - int(T sqrt(i / (n - 1))), last one 0 (DiffPIR main_ddpir_*.py, skip_type='quad')."""
    t = diffpir_timesteps(100)
    assert t[:4] == [999, 899, 857, 825] and t[-3:] == [10, 5, 0] and len(set(t)) == 100
    assert diffpir_timesteps(2) == [999, 0]
    with pytest.raises(ConfigError, match="repeats"):
        diffpir_timesteps(900)


def test_schedule_override_and_validation():
    assert schedule(prior(), 3, sigmas=[2.0, 1.0, 0.5, 0.0]) == [2.0, 1.0, 0.5, 0.0]
    with pytest.raises(ConfigError):
        schedule(prior(), 3, sigmas=[1.0, 2.0])
    with pytest.raises(ConfigError):
        schedule(prior(), 0)


# ---------------------------------------------------------------------------- restore()
def test_restore_dispatches_and_reports():
    _, svd_op, y = problem()
    x, info = restore(y, svd_op, prior(), "ddrm", sigma_y=0.02, steps=6, seed=4, return_info=True, eta=0.5)
    assert torch.equal(x, ddrm(y, svd_op, prior(), sigma_y=0.02, steps=6, seed=4, eta=0.5))
    assert info["nfe"] == 6 and info["steps"] == 6 and info["solver"] == "ddrm" and info["seed"] == 4
    assert info["sigma_y"] == 0.02
    assert info["time_s"] >= 0
    x = restore(y, svd_op, prior(), "pnp_admm", sigma_y=0.02, steps=4)
    assert x.shape == (3, *SHAPE)
    assert solvers.spec("ddrm").default_steps == 20 and solvers.spec("dps").default_steps == 1000
    assert "zeta" in solver_options("dps") and "sigma_y" not in solver_options("dps")


def test_restore_rejects_bad_input():
    op, svd_op, y = problem()
    p = prior()
    with pytest.raises(ConfigError, match="unknown solver 'nope'; choose one of: ddrm"):
        restore(y, svd_op, p, "nope")
    with pytest.raises(ConfigError, match="no option.*etta.*valid options: eta"):
        restore(y, svd_op, p, "ddrm", etta=0.3)
    with pytest.raises(ConfigError, match="sigma_y"):
        restore(y, svd_op, p, "ddrm", sigma_y=-0.1)
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        restore(y[0], svd_op, p, "ddrm")
    with pytest.raises(ShapeError, match="measurements of shape"):
        restore(torch.zeros(3, 3, 4, 4, dtype=torch.float64), svd_op, p, "ddrm")
    with pytest.raises(ConfigError, match="NaN/Inf"):
        restore(y * float("nan"), svd_op, p, "ddrm")
    with pytest.raises(OperatorError, match="ddrm needs an operator with an SVD.*dps"):
        restore(y, op, p, "ddrm", sigma_y=0.02)
    with pytest.raises(OperatorError, match="with sigma_y > 0"):
        restore(y, op, p, "ddnm", sigma_y=0.02)
    gray = GaussianPrior(torch.full((1, 4, 4), 0.5), squared_exponential_cov((1, 4, 4)))
    with pytest.raises(ShapeError, match="1-channel"):
        restore(y, svd_op, gray, "ddrm")
    with pytest.raises(ConfigError, match="unknown solver"):
        solvers.get("ddpm")


def test_x_init_is_used_and_checked():
    _, svd_op, y = problem()
    start = torch.full((3, *SHAPE), 0.5, dtype=torch.float64)
    assert torch.isfinite(diffpir(y, svd_op, prior(), sigma_y=0.02, steps=4, seed=0, x_init=start)).all()
    with pytest.raises(ShapeError, match="x_init"):
        dps(y, svd_op, prior(), sigma_y=0.02, steps=4, seed=0, x_init=start[:, :1])


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_matches_cpu(name):
    """Noise is drawn on the CPU, so a seed gives the same result on CUDA (to 1e-8 in float64)."""
    _, svd_op, y = problem()
    cpu = call(name, y, svd_op, seed=3)
    gpu = call(name, y.cuda(), svd_op, p=prior().cuda(), seed=3)
    assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max() < 1e-8


@pytest.mark.parametrize("name", list(CASES))
def test_x_init_shape_is_checked_by_every_solver(name):
    _, svd_op, y = problem()
    with pytest.raises(ShapeError, match="x_init must have shape"):
        call(name, y, svd_op, x_init=torch.zeros(3, 1, 4, 4, dtype=torch.float64))


# ---------------------------------------------------------------------------- registry
def test_each_solver_declares_its_spec_next_to_its_function():
    """The registry is the list of the modules' SPECs; default steps are the functions' own ``steps``
    defaults; per-task settings are keyed by Task and are valid options of the solver."""
    import importlib
    import inspect

    from pnp_restore.tasks import Task

    assert [s.name for s in solvers.REGISTRY] == list(solvers.SPECS) == list(solvers.SOLVERS)
    for spec in solvers.REGISTRY:
        assert importlib.import_module(spec.fn.__module__).SPEC is spec
        assert spec.default_steps == inspect.signature(spec.fn).parameters["steps"].default
        for task, params in spec.tasks.items():
            assert isinstance(task, Task) and set(params) <= {"steps", *solver_options(spec.name)}
    assert [solvers.spec(n).default_steps for n in ("ddrm", "ddnm", "dps", "diffpir", "pnp_admm")] == [
        20, 100, 1000, 100, 100,
    ]
    assert solvers.task_defaults("dps", Task.MOTION_DEBLUR) == {"zeta": 0.3}
    assert solvers.task_defaults("diffpir", "denoising") == {}  # a task without published settings


def test_restore_checks_the_problem_once(monkeypatch):
    """restore() leaves the measurement/operator/prior checks to the solver's setup: one call each."""
    from pnp_restore.solvers import common

    seen = []
    check = common.check_measurement
    monkeypatch.setattr(common, "check_measurement", lambda *a: seen.append(1) or check(*a))
    _, svd_op, y = problem()
    restore(y, svd_op, prior(), "diffpir", sigma_y=0.02, steps=3, seed=0)
    assert seen == [1]


@pytest.mark.parametrize("name", list(solvers.SPECS))
def test_nfe_is_the_number_of_prior_calls(name):
    """info["nfe"] and the callback's nfe count every prior evaluation once (one counter)."""
    _, svd_op, y = problem()
    p = NaNAfter(prior(), 10**9)  # counts its denoise calls
    seen = []
    # DDNM's time-travel makes 2 more calls; DAPS makes ode_steps (5) per step; PnP-DM runs the EDM levels
    # below each step's rho (259 of its 100-level grid here)
    kw = {"ddnm": {"travel_length": 2, "travel_repeat": 2}, "daps": {"tau": None}}.get(name, {})
    calls = {"ddnm": 6, "daps": 4 * 5, "pnpdm": 259}.get(name, 4)
    _, info = restore(y, svd_op, p, name, sigma_y=0.02, steps=4, seed=0, callback=seen.append, return_info=True,
                      **kw)  # fmt: skip
    assert info["nfe"] == p.calls == seen[-1]["nfe"] == calls
