"""Integration: every solver with the real operators through ``restore``, on an exact Gaussian prior.

The prior is :class:`GaussianPrior` with a squared-exponential covariance on 3x16x16 images
(float64), so the exact posterior mean ``E[x | y]`` is known in closed form and gives every
check a scale: the error of a posterior *sample* is about sqrt(2) times the error of the
posterior mean, whatever the operator. Ground truths are prior samples (image ``i``: seed ``i``);
``y = A x + 0.02 n`` (noise seed ``10 + i``); the solver's seed for image ``i`` is ``i``.

The tests restore images 0 and 1. Their limits come from ``tests/data/calibration.json``
(section ``integration``), where ``python tests/calibration/calibrate.py`` measured the same
metrics per (solver, operator) on images 0..99 (50 seeds x 2) and set limit = max x 1.3 (lower
bounds: min / 1.3); see ``tests/calibrated.py``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from calibrated import limit
from pnp_restore import restore
from pnp_restore.errors import OperatorError
from pnp_restore.operators import (
    Blur,
    BlurDownsample,
    Colorization,
    DenseSVDOperator,
    Denoising,
    FunctionOperator,
    GaussianNoise,
    Inpainting,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    motion_kernel,
    random_mask,
)
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers import SOLVERS, SPECS

SHAPE = (3, 16, 16)
SIGMA_Y = 0.02
ROOT = Path(__file__).resolve().parents[1]
#: images of the calibration (the tests use the first 2)
IMAGES = 100

#: few steps, enough for stable numbers on this 768-dimensional problem (DPS needs more: one
#: gradient step per denoiser call and no exact data step; PnP-ADMM converges, and is checked
#: against its limit, the MAP = posterior mean, at its default 100 iterations; RED-diff's Adam moves
#: ~lr per step). DAPS: few annealing levels with a Langevin at the true noise (tau=None; the
#: published tau is a tuning value for 256 px images, and its lr diverges on operators of gain > 1);
#: PnP-DM: its coupling annealed below the noise level (the published rho_min, 6x the noise here,
#: samples a smoothed posterior that loses to A^+ y on sr_avgpool).
RUN = {
    "ddrm": {"steps": 20}, "ddnm": {"steps": 20}, "dps": {"steps": 100}, "diffpir": {"steps": 20},
    "pnp_admm": {"steps": 100}, "pigdm": {"steps": 20}, "reddiff": {"steps": 100},
    "daps": {"steps": 20, "ode_steps": 2, "langevin_steps": 20, "tau": None, "lr": 1.5e-3, "sigma_min": 0.01,
             "ode_sigma_min": 0.001},
    "pnpdm": {"steps": 60, "rho_min": 0.02, "edm_steps": 30},
}  # fmt: skip
STEPS = {name: run["steps"] for name, run in RUN.items()}
#: the solvers added after the first calibration are calibrated on 50 images (50 seeds, one image each)
#: rather than 100 (50 seeds x 2 images): their calibration costs minutes per operator on these CPUs
CALIBRATION_IMAGES = {"daps": 50, "pigdm": 50, "reddiff": 50, "pnpdm": 50}


def options(solver: str) -> dict:
    """The solver's settings in these tests besides ``steps``."""
    return {k: v for k, v in RUN[solver].items() if k != "steps"}

# name -> factory of the operator (fresh per call, so caches of one test never reach another)
OPERATORS = {
    "inpaint_random": lambda: Inpainting(random_mask(16, missing=0.5, seed=1)),
    "inpaint_box": lambda: Inpainting(box_mask(16, box=6, position="center")),
    "sr_bicubic": lambda: SuperResolution(2, "bicubic"),
    "sr_avgpool": lambda: SuperResolution(2, "avgpool"),
    "blur_circular_gauss": lambda: Blur(gaussian_kernel(5, 1.0), "circular"),
    "blur_reflect_gauss": lambda: Blur(gaussian_kernel(5, 1.0), "reflect"),
    "blur_circular_motion": lambda: Blur(motion_kernel(7, 0.5, seed=0), "circular"),
    "blur_reflect_motion": lambda: Blur(motion_kernel(7, 0.5, seed=0), "reflect"),
    "blur_downsample": lambda: BlurDownsample(gaussian_kernel(5, 1.0), 2),
    "colorization": lambda: Colorization(),
    "denoising": lambda: Denoising(),
    "composition": lambda: SuperResolution(2, "avgpool") @ Blur(gaussian_kernel(3, 0.8), "reflect"),
}

#: Operators whose pseudo-inverse error is about 2x the posterior-mean error or more (measured 1.99x to
#: 250x: zero-filled holes, noise amplified by small singular values), so that a posterior sample
#: (about 1.4x) must beat A^+ y. Not asserted elsewhere because it is not true: colorization's pinv *is*
#: the posterior mean (independent channels), bicubic SR / blur+downsample / denoising leave A^+ y within
#: 1.3x / 1.8x / 1.65x of it, and restorations reach 0.56-1.5x the pinv error there.
PINV_BEATEN = {
    "inpaint_random", "inpaint_box", "sr_avgpool", "composition",
    "blur_circular_gauss", "blur_reflect_gauss", "blur_circular_motion", "blur_reflect_motion",
}  # fmt: skip


@lru_cache(maxsize=None)
def prior() -> GaussianPrior:
    mean = torch.full(SHAPE, 0.5, dtype=torch.float64)
    return GaussianPrior(mean, squared_exponential_cov(SHAPE, std=0.15, length_scale=2.0, nugget=1e-3))


def rms(x: torch.Tensor) -> torch.Tensor:
    """Per-image root mean square, shape (B,)."""
    return x.flatten(1).norm(dim=1) / math.sqrt(x[0].numel())


def measure(op, x: torch.Tensor, seed: int = 10) -> torch.Tensor:
    return GaussianNoise(SIGMA_Y)(op(x), seed=seed)


@lru_cache(maxsize=None)
def problem(op_name: str, count: int = 2):
    """Images 0..count-1: (x, y, exact posterior mean, RMS error of A^+ y, RMS error of the posterior mean)."""
    op = OPERATORS[op_name]()
    x = prior().sample(count, seed=0)
    y = measure(op, x)
    matrix = DenseSVDOperator(op, SHAPE).matrix
    post_mean, _ = prior().posterior(y, matrix, SIGMA_Y)
    return x, y, post_mean, rms(op.pinv(y) - x), rms(post_mean - x)


def quality(solver: str, op_name: str, op, out: torch.Tensor, count: int = 2) -> dict[str, torch.Tensor]:
    """Per image (count,): ``fit`` = ||A x - y|| / sqrt(m) / sigma_y (m = numel of y per image; y carries
    noise on every entry, also the unobserved pixels of inpainting), ``err_post`` = RMS error / the
    posterior mean's, ``err_pinv`` = RMS error / the pseudo-inverse's, and for PnP-ADMM ``map`` = RMS
    distance to the MAP (= posterior mean) / the posterior mean's error."""
    x, y, post_mean, err_pinv, err_post = problem(op_name, count)
    err = rms(out - x)
    got = {
        "fit": (op(out) - y).flatten(1).norm(dim=1) / math.sqrt(y[0].numel()) / SIGMA_Y,
        "err_post": err / err_post,
        "err_pinv": err / err_pinv,
    }
    if solver == "pnp_admm":
        got["map"] = rms(out - post_mean) / err_post
    return got


def restored_quality(solver: str, op_name: str, count: int = 2) -> dict[str, torch.Tensor]:
    """:func:`quality` of ``restore`` with the tests' settings on images 0..count-1."""
    op = OPERATORS[op_name]()
    y = problem(op_name, count)[1]
    out = restore(y, op, prior(), solver, sigma_y=SIGMA_Y, seed=0, **RUN[solver])
    assert out.shape == (count, *SHAPE) and out.dtype == torch.float64 and torch.isfinite(out).all()
    return quality(solver, op_name, op, out, count)


def check_quality(solver: str, op_name: str, got: dict[str, torch.Tensor]) -> None:
    """Every metric of :func:`quality` inside its calibrated limits (calibration key ``solver/op_name``)."""
    key = f"{solver}/{op_name}"
    fit_lo, fit_hi = limit("integration", f"{key}/fit_min"), limit("integration", f"{key}/fit_max")
    assert ((got["fit"] > fit_lo) & (got["fit"] < fit_hi)).all(), f"{key}: data fit {got['fit'].tolist()} x sigma_y"
    for name in ("err_post", "map"):
        if name in got:
            bound = limit("integration", f"{key}/{name}")
            assert (got[name] < bound).all(), f"{key}: {name} {got[name].tolist()} (limit {bound:.3g})"
    if op_name in PINV_BEATEN:
        assert (got["err_pinv"] < 1).all(), f"{key}: error {got['err_pinv'].tolist()} x the pseudo-inverse's"


def works(solver: str, op) -> bool:
    return not SPECS[solver].needs_svd(SIGMA_Y) or op.has_svd


def test_the_table_covers_every_solver():
    assert set(RUN) == set(SOLVERS)


# ----------------------------------------------------------------------------- 1. solvers x operators
@pytest.mark.parametrize("op_name", list(OPERATORS))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_restores_every_operator(solver, op_name):
    """Through ``restore``: float64 (2, 3, 16, 16) finite output; data fit, error / the posterior mean's
    (and for PnP-ADMM the distance to the MAP) inside the calibrated limits; error < pinv's where that is
    sound (PINV_BEATEN). A solver that needs an SVD the operator lacks must refuse it, naming the solvers
    that work."""
    op = OPERATORS[op_name]()
    if not works(solver, op):
        alternatives = ", ".join(n for n, s in SPECS.items() if not s.needs_svd(SIGMA_Y))
        with pytest.raises(OperatorError, match=f"{solver}.*use one of {alternatives}, or wrap"):
            restore(problem(op_name)[1], op, prior(), solver, sigma_y=SIGMA_Y, seed=0, **RUN[solver])
        return
    check_quality(solver, op_name, restored_quality(solver, op_name))


@pytest.mark.parametrize("op_name", ["inpaint_box", "sr_bicubic", "blur_circular_motion"])  # closed-form/SVD/FFT prox
def test_pnp_admm_converges_to_the_map(op_name):
    """With a Gaussian prior the denoiser is the exact prox of -log p, so PnP-ADMM's iterates converge to the
    MAP = posterior mean: after 800 iterations (default schedule) within 1e-3 of the posterior mean's error
    (a convergence bound, not a statistical one; measured 2.5e-6 on inpaint_box, the slowest: 0.24 after
    the default 100 iterations, 8e-4 after 400; 3e-13 on the others)."""
    op = OPERATORS[op_name]()
    _, y, post_mean, _, err_post = problem(op_name)
    out = restore(y, op, prior(), "pnp_admm", sigma_y=SIGMA_Y, steps=800)
    dist = rms(out - post_mean) / err_post
    assert (dist < 1e-3).all(), f"distance to the MAP {dist.tolist()} x the posterior mean's error"


# ----------------------------------------------------------------------------- 2. batch independence
def _per_sample_kernels() -> torch.Tensor:
    return torch.stack([motion_kernel(5, 0.5, seed=s) for s in range(3)])


PER_SAMPLE = {
    "inpainting": (
        lambda: Inpainting(random_mask(16, missing=0.6, seed=3, batch=3)),
        lambda i: Inpainting(random_mask(16, missing=0.6, seed=3 + i)),
    ),
    "blur_circular": (lambda: Blur(_per_sample_kernels()), lambda i: Blur(_per_sample_kernels()[i])),
    "blur_reflect": (
        lambda: Blur(_per_sample_kernels(), "reflect"),
        lambda i: Blur(_per_sample_kernels()[i], "reflect"),
    ),
}


@pytest.mark.parametrize("op_name", list(PER_SAMPLE))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_batch_with_per_sample_operators_equals_single_runs(solver, op_name):
    """A batch of 3 with per-sample masks / kernels and seed s equals the 3 single runs, each
    with its own mask / kernel and seed s + i, to 1e-10 in float64 (measured <= 7e-16, and for the
    reflect blur, whose prox is per-sample preconditioned conjugate gradient, 8e-14 for pnp_admm and
    1e-11 for diffpir: its early steps have lam = rho sigma_y^2 ~ 1e-8, where only a CG solved to
    1e-12 (LinearOperator.cg, a CGConfig) stops amplifying the prior's 1e-16 batch/single rounding)."""
    batch_op, single_op = PER_SAMPLE[op_name]
    op = batch_op()
    if not works(solver, op):
        pytest.skip(f"{solver} needs an SVD with sigma_y > 0")
    x = prior().sample(3, seed=20)
    y = measure(op, x)
    kw = dict(sigma_y=SIGMA_Y, steps=min(STEPS[solver], 10), **options(solver))
    batch = restore(y, op, prior(), solver, seed=7, **kw)
    singles = torch.cat([restore(y[i : i + 1], single_op(i), prior(), solver, seed=7 + i, **kw) for i in range(3)])
    diff = float((batch - singles).abs().max())
    assert diff < 1e-10


# ----------------------------------------------------------------------------- 3. a user's operator
def box_average(x: torch.Tensor) -> torch.Tensor:
    """Strided 2x2 box average, written by hand: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]) / 4


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_user_forward_only_operator_works_with_every_solver(solver):
    """A FunctionOperator (adjoint by autograd, pinv/prox by CG; wrapped in DenseSVDOperator for
    the solvers needing an SVD) meets the limits of test 1 for sr_avgpool. It is the avgpool SR operator,
    so every solver gives SuperResolution(2, "avgpool")'s result to 1e-10 (measured <= 3e-15): CG converges
    exactly in 2 iterations (A^T A has the eigenvalues 1/4 and 0), and as all singular values are
    equal, DDRM/DDNM+ do not depend on which SVD basis the dense factorisation picked."""
    user = FunctionOperator(box_average, in_shape=SHAPE)
    op = DenseSVDOperator(user, SHAPE) if SPECS[solver].needs_svd(SIGMA_Y) else user
    y = problem("sr_avgpool")[1]
    out = restore(y, op, prior(), solver, sigma_y=SIGMA_Y, seed=0, **RUN[solver])
    assert out.shape == (2, *SHAPE) and torch.isfinite(out).all()
    check_quality(solver, "sr_avgpool", quality(solver, "sr_avgpool", user, out))
    ref = restore(y, SuperResolution(2, "avgpool"), prior(), solver, sigma_y=SIGMA_Y, seed=0, **RUN[solver])
    assert (out - ref).abs().max() < 1e-10


# ----------------------------------------------------------------------------- 4. the README
def readme_blocks() -> list[str]:
    """The python code blocks under '## In Python' and '### Your own operator' of README.md."""
    sections: dict[str, list[str]] = {}
    heading, fence, block = None, None, []
    for line in (ROOT / "README.md").read_text().splitlines():
        if fence is None and re.match(r"#{1,6} ", line):
            heading = line.strip()
        elif fence is None and line.startswith("```"):
            fence, block = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == "python":
                sections.setdefault(heading, []).append("\n".join(block))
            fence = None
        elif fence is not None:
            block.append(line)
    wanted = ("## In Python", "### Your own operator")
    for name in wanted:
        assert sections.get(name), f"README.md has no python block under {name!r}"
    return [b for name in wanted for b in sections[name]]


BUILTIN = ROOT / "pnp_restore" / "priors" / "weights" / "builtin.safetensors"


@pytest.mark.parametrize("which", ["builtin", "gaussian"])
def test_readme_examples_run(which, monkeypatch):
    """The README's Python examples run as written and give finite restorations of the right shape.

    ``builtin``: verbatim, with the shipped prior (skipped if its weights are absent).
    ``gaussian``: ``priors.load("builtin")`` returns a GaussianPrior; an exact prior at the README's
    64x64 would need a 12288x12288 eigendecomposition, so the code's image size 64 is set to 16."""
    from pnp_restore import priors

    code = "\n".join(readme_blocks())
    size = 64
    if which == "builtin":
        assert BUILTIN.is_file(), f"the built-in weights {BUILTIN} ship with the package but are missing"
    else:
        assert "64, 64" in code, "the README examples no longer use 64x64 images; update this test"
        code, size = code.replace("64", "16"), 16
        gaussian = GaussianPrior(torch.full((3, size, size), 0.5), squared_exponential_cov((3, size, size)))
        asked = []
        monkeypatch.setattr(priors, "load", lambda source, *a, **k: asked.append(source) or gaussian)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    if which == "gaussian":
        assert asked == ["builtin"]
    x, x_hat = scope["x"], scope["x_hat"]
    assert x.shape == x_hat.shape == (1, 3, size, size)
    assert x_hat.dtype == x.dtype and torch.isfinite(x_hat).all()
    assert scope["A_small"].has_svd


# ----------------------------------------------------------------------------- 5. float32
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_float32_runs_match_float64(solver):
    """Circular motion blur (complex FFT SVD, small singular values): float32 input gives a finite
    float32 result within 1e-5 (max abs) of float64; measured 1.9e-7 (dps) to 5.8e-7 (diffpir). RED-diff:
    1e-4 (measured 2.1e-5): Adam divides each step by the running RMS of its gradients, so the float32
    rounding of small gradients moves the iterate by up to ~lr x their relative error."""
    op = OPERATORS["blur_circular_motion"]()
    y = problem("blur_circular_motion")[1]
    kw = dict(sigma_y=SIGMA_Y, seed=0, **RUN[solver])
    x64 = restore(y, op, prior(), solver, **kw)
    x32 = restore(y.float(), op, prior(), solver, **kw)
    assert x32.dtype == torch.float32 and torch.isfinite(x32).all()
    assert (x32.double() - x64).abs().max() < (1e-4 if solver == "reddiff" else 1e-5)


# --------------------------------------------------------------------------- per-task published defaults
def test_task_defaults_apply_under_explicit_options():
    """``restore(..., task=...)`` uses the paper's per-task values (DPS_SCALES, DIFFPIR_PARAMS);
    explicit steps/options win; solvers with one published setting get none; unknown tasks fail."""
    from pnp_restore.errors import ConfigError
    from pnp_restore.solvers import DIFFPIR_PARAMS, DPS_SCALES, task_defaults

    assert task_defaults("dps", "inpainting") == {"zeta": DPS_SCALES["inpainting"]} == {"zeta": 0.5}
    assert task_defaults("diffpir", "gaussian_deblur") == DIFFPIR_PARAMS["gaussian_deblur"]
    assert task_defaults("ddrm", "super_resolution") == {} and task_defaults("dps", None) == {}
    with pytest.raises(ConfigError, match="unknown task"):
        task_defaults("dps", "colourisation")

    prior = GaussianPrior(torch.full((3, 8, 8), 0.5, dtype=torch.float64), squared_exponential_cov((3, 8, 8)))
    op = Inpainting(random_mask((8, 8), missing=0.5, seed=0))
    y = op(torch.rand(1, 3, 8, 8, dtype=torch.float64))
    _, info = restore(y, op, prior, "diffpir", task="inpainting", seed=0, return_info=True)
    assert info["steps"] == DIFFPIR_PARAMS["inpainting"]["steps"] and info["options"] == {"lam": 1.0, "zeta": 1.0}
    _, info = restore(y, op, prior, "dps", task="inpainting", steps=5, zeta=0.2, seed=0, return_info=True)
    assert info["steps"] == 5 and info["options"] == {"zeta": 0.2}
    a = restore(y, op, prior, "dps", task="inpainting", steps=5, seed=0)
    b = restore(y, op, prior, "dps", steps=5, zeta=0.5, seed=0)
    assert torch.equal(a, b)
