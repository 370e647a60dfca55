"""RED-diff mechanics: the update against a hand-written reference, start, batch == single runs,
dtypes, nonlinear operators, option errors, divergence. (Accuracy on exact Gaussian problems:
tests/test_posterior_reddiff.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_posterior import operator, prior, problem
from test_solvers import NaNAfter

from pnp_restore.errors import ConfigError, DivergenceError, OperatorError, ShapeError
from pnp_restore.operators.base import NonlinearOperator
from pnp_restore.priors.base import vp_alpha_bar, vp_from_denoise
from pnp_restore.solvers.common import from_pm1, to_pm1
from pnp_restore.solvers.reddiff import REDDIFF_PARAMS, SPEC, WEIGHTS, reddiff
from pnp_restore.tasks import Task

SHAPE = (1, 8, 8)
LEVELS = [2.0, 0.8, 0.3, 0.1, 0.03, 0.01]  # [0, 1]-scale noise levels of the reference test


def reference(y, op, mu0, seed, lam, lr, weight, levels):
    """Algorithm 1 with the official loss, written out: explicit gradient of
    ``||y_pm - A mu||^2 / (2 m) + lam w_t <eps_hat - eps, mu> / d`` per image and Adam by its
    formulas (betas 0.9 / 0.99, eps 1e-8, bias correction); per-image noise streams ``seed + i``."""
    a = op.matrix
    y_pm = 2 * y - op.forward(torch.ones_like(mu0))
    gens = [torch.Generator().manual_seed(seed + i) for i in range(y.shape[0])]
    mu, m1, m2 = to_pm1(mu0), torch.zeros_like(mu0), torch.zeros_like(mu0)
    m, d = y[0].numel(), mu0[0].numel()
    for k, s in enumerate(levels, start=1):
        ab = vp_alpha_bar(s)
        eps = torch.stack([torch.randn(SHAPE, generator=g, dtype=torch.float64) for g in gens])
        _, eps_hat = vp_from_denoise(prior().denoise, math.sqrt(ab) * mu + math.sqrt(1 - ab) * eps, s)
        w = lam * weight(math.sqrt((1 - ab) / ab))
        r = y_pm.flatten(1) - mu.flatten(1) @ a.T
        grad = -(r @ a).view_as(mu) / m + w * (eps_hat - eps) / d
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.99 * m2 + 0.01 * grad**2
        mu = mu - lr * (m1 / (1 - 0.9**k)) / ((m2 / (1 - 0.99**k)).sqrt() + 1e-8)
    return from_pm1(mu)


@pytest.mark.parametrize("weight,lam,lr", [("linear", 0.25, 0.1), ("sqrt", 1.0, 0.5), ("const", 0.25, 0.1)])
def test_update_matches_the_official_loss_and_adam(weight, lam, lr):
    """Six steps on a fixed schedule from a given start equal the written-out reference (1e-10; measured
    ~1e-16): the loss's sign, the per-image means of both terms, the weighting ``w_t``, lambda, Adam's
    betas and the noise streams."""
    op, y, *_ = problem("blur", 0.01, 3)
    mu0 = prior().sample(3, seed=11).clamp(0, 1)
    got = reddiff(y, op, prior(), sigma_y=0.01, seed=4, sigmas=LEVELS, x_init=mu0, lam=lam, lr=lr, weight=weight)
    want = reference(y, op, mu0, 4, lam, lr, WEIGHTS[weight], LEVELS)
    assert (got - want).abs().max() < 1e-10


def test_weightings_are_the_official_ones():
    """``denoise_term_weight`` of algos/reddiff.py as functions of ``sqrt(1 - ab) / sqrt(ab)``."""
    w = 0.3
    expected = {"linear": w, "sqrt": w**0.5, "square": w**2, "log": math.log1p(w), "trunc_linear": w,
                "power2over3": w ** (2 / 3), "const": 1.0}  # fmt: skip
    assert set(WEIGHTS) == set(expected)
    for name, value in expected.items():
        assert WEIGHTS[name](w) == pytest.approx(value, rel=1e-12)
    assert WEIGHTS["trunc_linear"](3.0) == 1.0


class WithPinv(NonlinearOperator):
    """Entry-wise square, with its inverse as ``pinv``."""

    def forward(self, x):
        return x**2

    def pinv(self, y):
        return y.clamp(min=0).sqrt()


def test_start_is_the_pseudo_inverse_or_mid_grey():
    """With a negligible learning rate the output is the start: ``A^+ y_pm`` for a linear operator (so an
    inpainting hole starts mid-grey, 0 on [-1, 1], as the code's ``H_pinv``), shrunk to
    ``A^T y_pm / (1 + (2 sigma_y)^2)`` on measured pixels when sigma_y > 0 (the Tikhonov start), ``A^+(y)``
    for a nonlinear operator that has one, 0.5 for one without, and ``x_init`` when given."""
    run = dict(sigma_y=0.0, steps=1, seed=0, lr=1e-12)
    op, y, *_ = problem("inpaint", 0.0)
    mask = operator("inpaint").forward(torch.ones(1, *SHAPE, dtype=torch.float64))
    out = reddiff(y, op, prior(), **run)
    assert (out - (y + 0.5 * (1 - mask))).abs().max() < 1e-9
    _, y_noisy, *_ = problem("inpaint", 0.05)
    out = reddiff(y_noisy, op, prior(), **{**run, "sigma_y": 0.05})
    assert (out - from_pm1(mask * to_pm1(y_noisy) / (1 + 0.1**2))).abs().max() < 1e-9
    down, y_down, *_ = problem("down", 0.0)
    up = F.interpolate(y_down, scale_factor=2, mode="nearest")  # A^+ of 2x2 average pooling
    assert (reddiff(y_down, down, prior(), **run) - up).abs().max() < 1e-9
    x = prior().sample(2, seed=1).clamp(0, 1)
    assert (reddiff(x**2, WithPinv(), prior(), **run) - x).abs().max() < 1e-9
    plain = NonlinearOperator(lambda v: v**2)
    assert (reddiff(x**2, plain, prior(), **run) - 0.5).abs().max() < 1e-9
    assert (reddiff(x**2, plain, prior(), x_init=x, **run) - x).abs().max() < 1e-9
    with pytest.raises(ShapeError, match="x_init must have shape"):
        reddiff(x**2, plain, prior(), x_init=x[:1], **run)


def test_batch_equals_single_runs_and_seeds_matter():
    """Image i of a batch with seed s equals the single run with seed s + i (1e-12 in float64): the loss is
    averaged per image, not over the batch; another seed gives another output."""
    op, y, *_ = problem("down", 0.05, 3)
    batch = reddiff(y, op, prior(), sigma_y=0.05, steps=20, seed=5)
    singles = torch.cat([reddiff(y[i : i + 1], op, prior(), sigma_y=0.05, steps=20, seed=5 + i) for i in range(3)])
    assert (batch - singles).abs().max() < 1e-12
    assert torch.equal(batch, reddiff(y, op, prior(), sigma_y=0.05, steps=20, seed=5))
    assert (batch - reddiff(y, op, prior(), sigma_y=0.05, steps=20, seed=6)).abs().max() > 1e-3


def test_float32_and_float64_agree():
    """Both dtypes run, keep their dtype and agree to float32 accuracy (5e-3; measured ~1e-6)."""
    op, y, *_ = problem("blur", 0.01, 2)
    x64 = reddiff(y, op, prior(), sigma_y=0.01, steps=30, seed=1)
    x32 = reddiff(y.float(), op, prior(), sigma_y=0.01, steps=30, seed=1)
    assert x32.dtype == torch.float32 and x64.dtype == torch.float64
    assert (x32.double() - x64).abs().max() < 5e-3


@pytest.mark.parametrize(
    "name,fn", [("pooled square", lambda x: F.avg_pool2d(x, 2) ** 2), ("clamp", lambda x: x.clamp(0.2, 0.8))]
)
def test_nonlinear_operator_fits_y_and_beats_the_prior_mean(name, fn):
    """A forward-only nonlinear operator (gradient by autograd, no pinv: mid-grey start), 8 images,
    sigma_y = 0.02, 300 steps: every output fits y to below the noise level (RMS residual < sigma_y; RED-diff
    over-fits, measured 0.04-0.46 sigma_y) and the mean error is below 0.6 x that of the prior mean, which
    ignores y (measured 0.30 pooled square, 0.19 clamp)."""
    op = NonlinearOperator(fn, in_shape=SHAPE)
    x = prior().sample(8, seed=3)
    clean = op(x)
    y = clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = reddiff(y, op, prior(), sigma_y=0.02, steps=300, seed=0)
    res = (op(out) - y).flatten(1).pow(2).mean(1).sqrt()
    assert res.max() < 0.02, f"{name}: residual RMS {res.tolist()}"
    err = (out - x).flatten(1).pow(2).mean(1).sqrt().mean()
    base = (prior().mean.view(1, *SHAPE) - x).flatten(1).pow(2).mean(1).sqrt().mean()
    assert err < 0.6 * base, f"{name}: error {err:.4f} vs prior mean {base:.4f}"


@pytest.mark.parametrize(
    "kw,match",
    [({"lam": -1.0}, r"^lam must be a number >= 0; got -1.0$"), ({"lr": 0}, r"^lr must be a number > 0; got 0$"),
     ({"weight": "cubic"}, r"^weight must be a string \(one of linear, sqrt, .*const\); got 'cubic'$"),
     ({"lr": "fast"}, r"^lr must be a number > 0; got 'fast'$")],
)  # fmt: skip
def test_bad_options_are_one_line_config_errors(kw, match):
    op, y, *_ = problem("down", 0.05)
    with pytest.raises(ConfigError, match=match):
        reddiff(y, op, prior(), steps=2, **kw)


def test_non_operator_is_refused_with_the_fix():
    _, y, *_ = problem("down", 0.05)
    with pytest.raises(OperatorError, match="NonlinearOperator"):
        reddiff(y, lambda v: v, prior(), steps=2)


def test_nan_raises_divergence_error_naming_the_step():
    op, y, *_ = problem("down", 0.05)
    match = r"^reddiff diverged at step 3/10 \(sigma=.*\): NaN/Inf in the iterate; try a smaller learning rate"
    with pytest.raises(DivergenceError, match=match):
        reddiff(y, op, NaNAfter(prior(), 3), steps=10)


def test_callback_sees_every_step():
    """One call per step (= one denoiser call per step) with mu and the denoised iterate on [0, 1]."""
    op, y, *_ = problem("down", 0.05)
    seen = []
    out = reddiff(y, op, prior(), steps=7, seed=0, callback=seen.append)
    assert [i["step"] for i in seen] == list(range(7)) and [i["nfe"] for i in seen] == list(range(1, 8))
    assert torch.equal(seen[-1]["x"], out) and seen[-1]["x0"].shape == out.shape


def test_spec():
    """Registry entry: any differentiable operator, the denoiser not differentiated, 1000 steps, per-task lr."""
    assert SPEC.name == "reddiff" and SPEC.fn is reddiff
    assert not SPEC.linear and SPEC.prior == "vp" and SPEC.svd == "never" and SPEC.stochastic
    assert SPEC.default_steps == 1000
    assert SPEC.tasks is REDDIFF_PARAMS and SPEC.tasks[Task.INPAINTING] == {"lam": 0.25, "lr": 0.25}
