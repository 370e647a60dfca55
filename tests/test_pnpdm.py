"""PnP-DM (pnp_restore.solvers.pnpdm): batches, dtypes, nonlinear operators, options, divergence.

The statistical limits of the nonlinear test come from ``python tests/calibration/calibrate.py pnpdm_extra``
(tests/data/calibration_pnpdm_extra.json, section ``pnpdm_extra``: 50 problems, max x 1.3 / min / 1.3).
The exactness checks on Gaussian problems are in tests/test_posterior_pnpdm.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import test_posterior as post
from calibrated import limit
from pnp_restore._rng import SampleRNG
from pnp_restore.errors import ConfigError, DivergenceError, ShapeError
from pnp_restore.operators.base import NonlinearOperator
from pnp_restore.priors.base import karras_sigmas
from pnp_restore.solvers.pnpdm import PNPDM_TASKS, SPEC, edm_levels, pnpdm, rho_schedule
from pnp_restore.tasks import Task

#: a short run for the functional tests
FAST = {"rho": 0.5, "rho_decay": 0.8, "rho_min": 0.01, "steps": 6, "edm_steps": 20, "langevin_steps": 10}


def squash(x: torch.Tensor) -> torch.Tensor:
    """A smooth, strongly nonlinear forward model: ``tanh(4 (blur(x) - 0.5))`` (Jacobian norm <= 4)."""
    return torch.tanh(4 * (post.blur(x) - 0.5))


def nonlinear_problem(count: int, start: int = 0, sigma_y: float = 0.05):
    """Problems start..start+count-1 of the 8x8 Gaussian prior under :func:`squash`: (operator, truth, y)."""
    op = NonlinearOperator(squash, in_shape=post.SHAPE)
    truth = post.prior().sample(count, seed=100 + start)
    ax = op.forward(truth)
    y = ax + sigma_y * SampleRNG(7 + start, count).randn(ax.shape, dtype=torch.float64)
    return op, truth, y


#: the nonlinear run: a shorter schedule than the published one (rho 0.5 -> 0.01 at decay 0.85, 25 iterations)
#: and 30 Langevin steps of the default size 2.5e-5 instead of 100
NONLINEAR_KW = {"rho": 0.5, "rho_decay": 0.85, "rho_min": 0.01, "steps": 25, "edm_steps": 30, "langevin_steps": 30}
NONLINEAR_SAMPLES = 8


def nonlinear_metrics(count: int) -> dict[str, list[float]]:
    """Per problem j < count (truth seed 100 + j, noise seed 7 + j, solver seeds 8j..8j+7, one batch): ``fit`` =
    RMS(A(x) - y) / sigma_y averaged over the 8 samples, ``err_ratio`` = RMS(sample mean - truth) / RMS(prior
    mean - truth) (the error of an estimate that ignores y)."""
    n = NONLINEAR_SAMPLES
    op, truth, y = nonlinear_problem(count)
    xs = pnpdm(y.repeat_interleave(n, 0), op, post.prior(), sigma_y=0.05, seed=0, **NONLINEAR_KW)
    fit = (op.forward(xs) - y.repeat_interleave(n, 0)).flatten(1).pow(2).mean(1).sqrt().view(count, n).mean(1) / 0.05
    xs = xs.view(count, n, *post.SHAPE)
    mean = post.prior().mean.view(1, *post.SHAPE)
    err = (xs.mean(1) - truth).flatten(1).pow(2).mean(1).sqrt() / (mean - truth).flatten(1).pow(2).mean(1).sqrt()
    return {"fit": fit.tolist(), "err_ratio": err.tolist()}


def test_nonlinear_operator_fits_the_data_and_beats_the_prior_mean():
    """tanh(4 (blur(x) - 0.5)) with sigma_y = 0.05 (Langevin likelihood step), problem 0: the samples fit y to
    the noise level (RMS residual / sigma_y inside the calibrated [min / 1.3, max x 1.3]) and their mean is
    closer to the truth than the prior mean (err_ratio below its calibrated limit, and below 1)."""
    got = {k: v[0] for k, v in nonlinear_metrics(1).items()}
    assert limit("pnpdm_extra", "nonlinear/fit_min") < got["fit"] < limit("pnpdm_extra", "nonlinear/fit_max"), got
    assert got["err_ratio"] < min(1.0, limit("pnpdm_extra", "nonlinear/err_ratio")), got


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_batch_equals_single_runs(kind):
    """seed=s gives image i of a batch the seed s + i: a batch of 2 equals two single runs (1e-10, float64)."""
    if kind == "linear":
        op, y, *_ = post.problem("blur", 0.01, 2)
        sigma_y = 0.01
    else:
        op, _, y = nonlinear_problem(2)
        sigma_y = 0.05
    batch = pnpdm(y, op, post.prior(), sigma_y=sigma_y, seed=3, **FAST)
    singles = torch.cat([pnpdm(y[i : i + 1], op, post.prior(), sigma_y=sigma_y, seed=3 + i, **FAST) for i in range(2)])
    assert (batch - singles).abs().max() < 1e-10


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_float32_matches_float64(kind):
    """The same seed in float32 and float64 (noise is drawn in float64 and cast): outputs in the input dtype,
    within 1e-3 of each other (float32 round-off through 6 iterations; measured ~1e-5)."""
    if kind == "linear":
        op, y, *_ = post.problem("down", 0.05)
        sigma_y = 0.05
    else:
        op, _, y = nonlinear_problem(1)
        sigma_y = 0.05
    x64 = pnpdm(y, op, post.prior(), sigma_y=sigma_y, seed=0, **FAST)
    x32 = pnpdm(y.float(), op, post.prior(), sigma_y=sigma_y, seed=0, **FAST)
    assert x64.dtype == torch.float64 and x32.dtype == torch.float32
    assert (x32.double() - x64).abs().max() < 1e-3


def test_callback_reports_every_iteration_with_rho_and_z():
    """One callback per Gibbs iteration, with the annealed rho as ``sigma``, the prior sample ``x`` and the
    likelihood sample ``z``; the NFE grows by the EDM levels below each rho plus one."""
    op, y, *_ = post.problem("inpaint", 0.01)
    infos = []
    pnpdm(y, op, post.prior(), sigma_y=0.01, seed=0, callback=infos.append, **FAST)
    rhos = rho_schedule(FAST["steps"], FAST["rho"], FAST["rho_decay"], FAST["rho_min"])
    assert [i["step"] for i in infos] == list(range(FAST["steps"]))
    assert [i["sigma"] for i in infos] == rhos
    levels = edm_levels(post.prior(), FAST["edm_steps"])
    nfe = [sum(1 for t in levels if t < r) + 1 for r in rhos]
    assert [i["nfe"] for i in infos] == [sum(nfe[: k + 1]) for k in range(len(nfe))]
    assert all(i["z"].shape == i["x"].shape == (1, *post.SHAPE) for i in infos)


def test_published_schedules():
    """rho 10 -> 0.3 on [-1, 1] at decay 0.9 (commands.sh) is 5 -> 0.15 here, reached at iteration 34 and then
    held; the EDM levels are Karras (rho 7) over the prior's range clipped to [0.001, 40]; SPEC and the per-task
    settings as published (phase retrieval: rho_min 0.1 / 2)."""
    rhos = rho_schedule(100, 5.0, 0.9, 0.15)
    assert rhos[0] == 5.0 and rhos[33] > 0.15 and rhos[34:] == [0.15] * 66
    assert edm_levels(post.prior(), 100) == karras_sigmas(100, 0.002, 40.0).tolist()
    assert SPEC.name == "pnpdm" and not SPEC.linear and SPEC.prior == "denoise" and SPEC.default_steps == 100
    assert PNPDM_TASKS[Task.PHASE_RETRIEVAL]["rho_min"] == 0.05 and PNPDM_TASKS[Task.GAUSSIAN_DEBLUR]["rho_min"] == 0.15


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"rho": -1.0}, "rho must be a number > 0"),
        ({"rho_min": 0.0}, "rho_min must be a number > 0"),
        ({"rho_decay": 0.0}, r"rho_decay must be a number in \(0, 1\]"),
        ({"rho_decay": 1.5}, r"rho_decay must be a number in \(0, 1\]"),
        ({"rho": 0.1, "rho_min": 0.2}, "rho_min must be <= rho"),
        ({"edm_steps": 0}, "edm_steps must be an integer"),
        ({"langevin_steps": 2.5}, "langevin_steps must be an integer"),
        ({"langevin_step": 0.0}, "langevin_step must be a number > 0"),
        ({"sde": "yes"}, "sde must be True or False"),
        ({"steps": 0}, "steps must be an integer"),
    ],
)
def test_invalid_options_are_refused_in_one_line(kw, match):
    op, y, *_ = post.problem("inpaint", 0.01)
    with pytest.raises(ConfigError, match=match) as err:
        pnpdm(y, op, post.prior(), sigma_y=0.01, **kw)
    assert "\n" not in str(err.value)


def test_nonlinear_operator_needs_noise_and_x_init_needs_the_image_shape():
    op, _, y = nonlinear_problem(1)
    with pytest.raises(ConfigError, match="sigma_y > 0 for a nonlinear operator"):
        pnpdm(y, op, post.prior(), sigma_y=0.0, **FAST)
    with pytest.raises(ShapeError, match="x_init must have shape"):
        pnpdm(y, op, post.prior(), sigma_y=0.05, x_init=torch.zeros(1, 1, 4, 4, dtype=torch.float64), **FAST)


class NaNAbove:
    """The Gaussian prior, except that it returns NaN when asked to denoise at a sigma in (lo, hi)."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.prior = lo, hi, post.prior()

    def denoise(self, x, sigma):
        out = self.prior.denoise(x, sigma)
        return out * math.nan if self.lo < float(sigma) < self.hi else out


def test_divergence_names_the_iteration():
    """A NaN from the prior at rho = 2.5 (the 2nd iteration of rho 5, decay 0.5) stops at step 2/4; an unstable
    Langevin step (nonlinear operator) at step 1 with a hint naming langevin_step."""
    op, y, *_ = post.problem("inpaint", 0.01)
    with pytest.raises(DivergenceError, match=r"pnpdm diverged at step 2/4 \(sigma=2\.5\)"):
        pnpdm(y, op, NaNAbove(2.49, 2.51), sigma_y=0.01, seed=0, rho=5.0, rho_decay=0.5, steps=4, edm_steps=20)
    op, _, y = nonlinear_problem(1)
    with pytest.raises(DivergenceError, match=r"step 1/6 .*langevin_step"):
        pnpdm(y, op, post.prior(), sigma_y=0.05, seed=0, **{**FAST, "langevin_step": 1e3, "langevin_steps": 100})
