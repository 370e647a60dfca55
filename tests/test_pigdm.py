"""ΠGDM mechanics: the guidance against a dense closed form, SVD vs conjugate gradient, nonlinear operators
with and without a pseudo-inverse, seeds, dtypes and option errors (its posterior accuracy on exact
Gaussian problems: tests/test_posterior_pigdm.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pnp_restore._rng import SampleRNG
from pnp_restore.errors import ConfigError, DivergenceError, OperatorError
from pnp_restore.operators.base import DenseSVDOperator, FunctionOperator, NonlinearOperator
from pnp_restore.priors.base import Prior, vp_alpha_bar
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers.ddpm import ddim
from pnp_restore.solvers.pigdm import SPEC, pigdm

SHAPE = (3, 4, 4)
MASK = (torch.arange(48) % 3 != 0).double().view(1, *SHAPE)


def prior() -> GaussianPrior:
    mean = 0.5 + 0.1 * torch.sin(torch.arange(48, dtype=torch.float64)).view(SHAPE)
    return GaussianPrior(mean, squared_exponential_cov(SHAPE, 0.15, 1.5, 0.02))


def down(x):
    return F.avg_pool2d(x, 2)


def inpaint(x):
    return x * MASK.to(x)


#: an asymmetric 3x3 blur with zero padding: 48 distinct singular values in [0.087, 0.85], so conjugate
#: gradient iterates (on pooling or masking it converges in one step)
KERNEL = torch.tensor([[0.0, 1, 0.5], [2, 4, 1], [0.3, 1.5, 1]], dtype=torch.float64).div(11.3).view(1, 1, 3, 3)


def blur(x):
    return F.conv2d(x.reshape(-1, 1, 4, 4), KERNEL.to(x), padding=1).view_as(x)


def problem(fn=down, sigma_y=0.02, batch=3):
    """(forward-only operator, its dense SVD, y) for prior samples (seed 0) and noise seed 1."""
    x = prior().sample(batch, seed=0)
    svd_op = DenseSVDOperator(fn, SHAPE)
    ax = svd_op.forward(x)
    noise = torch.randn(ax.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return FunctionOperator(fn, in_shape=SHAPE), svd_op, ax + sigma_y * noise


# ---------------------------------------------------------------------------- the update itself
def oracle_step(x_t, y, a, s, s_next, sigma_y, weight):
    """One ΠGDM step with eta = 0 from dense matrices and the Gaussian prior's closed-form denoiser.

    D(x) = m + K (x - m), K = C (C + s^2 I)^{-1}, so x0_pm(x_t) = 2 D((x_t / sqrt(ab) + 1) / 2) - 1 and
    J = d x0_pm / d x_t = K / sqrt(ab) (symmetric). v = J^T A^T (A A^T + 4 sigma_y^2 / (1 - ab) I)^+ r,
    r = (2 y - A 1) - A x0_pm; x' = sqrt(ab') x0 + sqrt(1 - ab') eps + weight sqrt(ab' ab) v.
    """
    p = prior()
    ab, ab_next = vp_alpha_bar(s), vp_alpha_bar(s_next)
    cov, m = p.cov, p.mean.flatten()
    k = cov @ torch.linalg.inv(cov + s**2 * torch.eye(48, dtype=torch.float64))
    xf = x_t.flatten(1)
    x0 = 2 * (m + (((xf / math.sqrt(ab) + 1) / 2) - m) @ k.T) - 1
    eps = (xf - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    r = 2 * y.flatten(1) - a.sum(1) - x0 @ a.T
    lam = 4 * sigma_y**2 / (1 - ab)
    u = r @ torch.linalg.pinv(a @ a.T + lam * torch.eye(a.shape[0], dtype=torch.float64)).T @ a
    v = u @ k.T / math.sqrt(ab)
    out = math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next) * eps + weight * math.sqrt(ab_next * ab) * v
    return out.view_as(x_t)


@pytest.mark.parametrize(
    "fn,sigma_y,weight", [(down, 0.0, 1.0), (down, 0.05, 1.0), (inpaint, 0.0, 1.0), (inpaint, 0.03, 0.5)]
)
def test_steps_match_the_dense_closed_form(fn, sigma_y, weight):
    """Two deterministic steps (eta = 0; sigma 0.8, 0.1, then 0) against :func:`oracle_step`, to 1e-10: the
    guidance's sign, its (A A^T + sigma_y^2 / r_t^2)^{-1} with r_t^2 = 1 - ab, the [-1, 1] scale of y and
    sigma_y, the reference's sqrt(ab') sqrt(ab) coefficient and the DDIM part. (A zero-row inpainting matrix
    makes A A^T singular at sigma_y = 0: the pseudo-inverse branch.)"""
    _, svd_op, y = problem(fn, sigma_y)
    a = svd_op.matrix
    seen = []
    out = pigdm(y, svd_op, prior(), sigma_y=sigma_y, eta=0.0, weight=weight, sigmas=[0.8, 0.1], seed=4,
                callback=seen.append)  # fmt: skip
    x_t = SampleRNG(4, 3).randn((3, *SHAPE), dtype=torch.float64)
    x1 = oracle_step(x_t, y, a, 0.8, 0.1, sigma_y, weight)
    step0 = (2 * seen[0]["x"] - 1) * math.sqrt(vp_alpha_bar(0.1))  # the callback reports x / sqrt(ab') on [0, 1]
    assert (step0 - x1).abs().max() < 1e-10
    x2 = oracle_step(x1, y, a, 0.1, 0.0, sigma_y, weight)
    assert (2 * out - 1 - x2).abs().max() < 1e-10


def test_without_guidance_it_is_ddim():
    """weight = 0: the sampler is DDIM's (same coefficients, noise draws and last step) to 1e-12, for eta 1 and 0.3."""
    _, svd_op, y = problem()
    for eta in (1.0, 0.3):
        a = pigdm(y, svd_op, prior(), sigma_y=0.02, steps=10, eta=eta, weight=0.0, seed=3)
        b = ddim(prior(), (3, *SHAPE), steps=10, eta=eta, seed=3, dtype=torch.float64)
        assert (a - b).abs().max() < 1e-12


@pytest.mark.parametrize("sigma_y,bound", [(0.02, 1e-9), (0.0, 1e-4)])
def test_svd_closed_form_equals_conjugate_gradient(sigma_y, bound):
    """The same blur as a DenseSVDOperator (closed form through the SVD) and as a FunctionOperator (conjugate
    gradient) give the same samples. Bounds: CG's relative tolerance times the condition number of A^T A
    (96): sigma_y > 0 goes through the prox's float64 CG (1e-12: bound 1e-9, measured 3e-14), sigma_y = 0
    through the CG pinv (1e-6: bound 1e-4, measured 3e-12)."""
    op, svd_op, y = problem(blur, sigma_y)
    a = pigdm(y, op, prior(), sigma_y=sigma_y, steps=10, seed=2)
    b = pigdm(y, svd_op, prior(), sigma_y=sigma_y, steps=10, seed=2)
    assert not op.has_svd and svd_op.has_svd
    assert (a - b).abs().max() < bound


def test_batch_equals_single_runs_and_seeds_are_reproducible():
    """Image i of a batch with seed s equals a single run with seed s + i (1e-12, float64); the same seed gives
    the same output, another seed another one. Also through conjugate gradient (per-sample stopping)."""
    op, svd_op, y = problem(blur)
    for operator in (svd_op, op):
        batch = pigdm(y, operator, prior(), sigma_y=0.02, steps=8, seed=5)
        singles = [pigdm(y[i : i + 1], operator, prior(), sigma_y=0.02, steps=8, seed=5 + i) for i in range(3)]
        singles = torch.cat(singles)
        assert (batch - singles).abs().max() < 1e-12
    assert torch.equal(batch, pigdm(y, op, prior(), sigma_y=0.02, steps=8, seed=5))
    assert (batch - pigdm(y, op, prior(), sigma_y=0.02, steps=8, seed=6)).abs().max() > 1e-3


def test_float32_and_float64_agree():
    """Both dtypes run, keep their dtype and agree to float32 accuracy (5e-3; measured ~1e-5)."""
    _, svd_op, y = problem()
    x64 = pigdm(y, svd_op, prior(), sigma_y=0.02, steps=20, seed=1)
    x32 = pigdm(y.float(), svd_op, prior(), sigma_y=0.02, steps=20, seed=1)
    assert x32.dtype == torch.float32 and x64.dtype == torch.float64
    assert (x32.double() - x64).abs().max() < 5e-3


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """Noise is drawn on the CPU, so a seed gives the same result on CUDA (1e-8 in float64), SVD and CG paths."""
    op, svd_op, y = problem(blur)
    for operator in (svd_op, op):
        cpu = pigdm(y, operator, prior(), sigma_y=0.02, steps=6, seed=3)
        gpu = pigdm(y.cuda(), operator, prior().cuda(), sigma_y=0.02, steps=6, seed=3)
        assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max() < 1e-8


# ---------------------------------------------------------------------------- nonlinear operators
class AsNonlinear(NonlinearOperator):
    """A linear operator seen as a nonlinear one with its exact pseudo-inverse as ``h^+``."""

    def __init__(self, op):
        super().__init__(in_shape=SHAPE)
        self.op = op

    def forward(self, x):
        return self.op.forward(x)

    def pinv(self, y):
        return self.op.pinv(y)


def test_pseudo_inverse_form_equals_the_linear_guidance():
    """At sigma_y = 0 the nonlinear guidance 2 (h^+(y) - h^+(h(x0))) is the linear A^+ (y_pm - A x0_pm) for a
    linear h: same samples to 1e-10 (a wrong [0, 1] <-> [-1, 1] factor is off by ~1e-1). sigma_y does not
    enter the nonlinear guidance (documented), so sigma_y = 0.05 gives the same samples."""
    _, svd_op, y = problem(down, 0.0)
    lin = pigdm(y, svd_op, prior(), steps=10, seed=0)
    nonlin = pigdm(y, AsNonlinear(svd_op), prior(), steps=10, seed=0)
    assert (lin - nonlin).abs().max() < 1e-10
    assert torch.equal(nonlin, pigdm(y, AsNonlinear(svd_op), prior(), sigma_y=0.05, steps=10, seed=0))


class Quantized(NonlinearOperator):
    """2x2 average pooling quantised to 1/8 (not differentiable: zero gradient); ``h^+``: nearest upsampling,
    a right inverse (h(h^+(y)) = y for every y it produces)."""

    def __init__(self):
        super().__init__(in_shape=SHAPE)

    def forward(self, x):
        return torch.round(F.avg_pool2d(x, 2) * 8) / 8

    def pinv(self, y):
        return F.interpolate(y, scale_factor=2, mode="nearest")


def test_nonlinear_operator_with_a_pseudo_inverse_fits_y():
    """A non-differentiable quantiser (ΠGDM never differentiates h), 8 prior samples: the restorations' 2x2
    means land within the quantisation of y (RMS < 1/16 for each; measured 0.025-0.037), on average < 0.3x
    as far as unguided samples' (weight 0; measured 0.032 vs 0.19), and h(x) = y on > 90 % of the
    entries (measured all of them; unguided 1/3)."""
    op = Quantized()
    x = prior().sample(8, seed=0)
    y = op(x)
    guided = pigdm(y, op, prior(), steps=50, seed=0)
    free = pigdm(y, op, prior(), steps=50, seed=0, weight=0.0)

    def rms(out):
        return (F.avg_pool2d(out, 2) - y).flatten(1).norm(dim=1) / math.sqrt(y[0].numel())

    assert rms(guided).max() < 1 / 16
    assert rms(guided).mean() < 0.3 * rms(free).mean()
    assert (op(guided) == y).double().mean() > 0.9


class NoPinv(NonlinearOperator):
    def forward(self, x):
        return x.clamp(0, 0.8)


def test_nonlinear_operator_without_a_pseudo_inverse_is_refused():
    """One line naming the operator, what to implement and the solvers that need only its forward model."""
    _, _, y = problem(lambda x: x)
    message = r"pigdm needs a pseudo-inverse h\^\+ of the nonlinear NoPinv.*NoPinv.pinv\(y\).*use one of .*dps"
    with pytest.raises(OperatorError, match=message) as e:
        pigdm(y, NoPinv(in_shape=SHAPE), prior(), steps=2, seed=0)
    assert "\n" not in str(e.value)
    with pytest.raises(OperatorError, match="nonlinear NonlinearOperator"):
        pigdm(y, NonlinearOperator(lambda x: x**2, in_shape=SHAPE), prior(), steps=2, seed=0)


# ---------------------------------------------------------------------------- options and errors
@pytest.mark.parametrize(
    "kw,message",
    [
        ({"eta": 1.5}, r"eta must be a number in \[0, 1\]; got 1.5"),
        ({"weight": -1.0}, "weight must be a number >= 0; got -1.0"),
        ({"weight": "big"}, "weight must be a number"),
        ({"sigma_y": -0.1}, "sigma_y must be a number >= 0"),
        ({"steps": 0}, "steps must be an integer"),
        ({"sigmas": [0.1, 0.5]}, "sigmas must be"),
    ],
)
def test_invalid_options_are_one_line_config_errors(kw, message):
    _, svd_op, y = problem()
    with pytest.raises(ConfigError, match=message) as e:
        pigdm(y, svd_op, prior(), **{"steps": 4, **kw})
    assert "\n" not in str(e.value)


class NaNAfter(Prior):
    """The Gaussian prior, returning NaN from its ``k``-th call on."""

    def __init__(self, k):
        super().__init__()
        self.base, self.k, self.calls = prior(), k, 0

    def denoise(self, x, sigma):
        self.calls += 1
        out = self.base.denoise(x, sigma)
        return out * float("nan") if self.calls >= self.k else out


def test_divergence_names_the_step_and_nfe_counts_the_prior_calls():
    _, svd_op, y = problem()
    with pytest.raises(DivergenceError, match=r"pigdm diverged at step 3/6 \(sigma=.*guidance weight"):
        pigdm(y, svd_op, NaNAfter(3), steps=6, seed=0)
    p, seen = NaNAfter(10**9), []
    pigdm(y, svd_op, p, steps=6, seed=0, callback=seen.append)
    assert [s["step"] for s in seen] == list(range(6)) and seen[-1]["nfe"] == p.calls == 6


def test_spec():
    """Registry entry: any operator (linear, or nonlinear with pinv: checked by the solver), gradients through the
    prior, the reference's 100 steps and one setting for every task."""
    assert SPEC.name == "pigdm" and SPEC.fn is pigdm and not SPEC.linear and SPEC.svd == "never"
    assert SPEC.prior == "vp+grad" and SPEC.stochastic and SPEC.default_steps == 100 and dict(SPEC.tasks) == {}
    assert set(SPEC.ranges) == {"eta", "weight"}
