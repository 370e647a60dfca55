"""Bad input to the Python API gets the library's own one-line errors; bare denoisers work as priors."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from pnp_restore import priors, restore, solvers
from pnp_restore.errors import ConfigError, OperatorError, PnPRestoreError, ShapeError
from pnp_restore.operators import DenseSVDOperator, Inpainting, NonlinearOperator, random_mask
from pnp_restore.priors.base import Prior, range_sigmas
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers import validate_options

SHAPE = (3, 4, 4)


def gaussian() -> GaussianPrior:
    return GaussianPrior(torch.full(SHAPE, 0.5, dtype=torch.float64), squared_exponential_cov(SHAPE, 0.15, 1.5, 0.02))


def problem(batch: int = 2):
    """(Inpainting operator, its measurement of prior samples, noise 0.02)."""
    op = Inpainting(random_mask((4, 4), missing=0.5, seed=0))
    x = gaussian().sample(batch, seed=0)
    return op, op(x) + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert isinstance(excinfo.value, PnPRestoreError) and text and "\n" not in text
    return text


# ---------------------------------------------------------------------------- validate_options
@pytest.mark.parametrize(
    "solver,options,message",
    [
        ("ddrm", {"eta": "abc"}, "eta must be a number in [0, 1]; got 'abc'"),
        ("ddrm", {"eta": [1, 2]}, "eta must be a number in [0, 1]; got [1, 2]"),
        ("ddrm", {"eta": None}, "eta must be a number in [0, 1]; got None"),
        ("ddrm", {"eta": -5}, "eta must be a number in [0, 1]; got -5"),
        ("ddrm", {"eta": float("nan")}, "eta must be a number in [0, 1]; got nan"),
        ("dps", {"zeta": "big"}, "zeta must be a number >= 0; got 'big'"),
        ("diffpir", {"lam": 0}, "lam must be a number > 0; got 0"),
        ("diffpir", {"clamp": "yes"}, "clamp must be True or False; got 'yes'"),
        ("ddnm", {"travel_length": 1.5}, "travel_length must be an integer >= 1; got 1.5"),
        ("pnp_admm", {"sigma_min": -1}, "sigma_min must be a number > 0 or None; got -1"),
        ("dps", {"x_init": "img.png"}, "x_init must be a tensor or None; got 'img.png'"),
        ("ddrm", {"sigmas": "fast"}, "sigmas must be a list of numbers or a tensor or None; got 'fast'"),
    ],
)
def test_validate_options_says_what_is_allowed(solver, options, message):
    with pytest.raises(ConfigError) as err:
        validate_options(solver, options)
    assert one_line(err) == message


def test_validate_options_names_and_conversion():
    out = validate_options("ddrm", {"eta": 1, "eta_b": np.float32(0.5), "sigmas": (2, 1)})
    assert out == {"eta": 1.0, "eta_b": 0.5, "sigmas": [2.0, 1.0]} and type(out["eta"]) is float
    assert validate_options("ddnm", {"travel_length": np.int64(2)}) == {"travel_length": 2}
    with pytest.raises(ConfigError, match="solver 'ddrm' has no option.*etta; valid options: eta, eta_b"):
        validate_options("ddrm", {"etta": 0.5})
    with pytest.raises(ConfigError, match=r"steps is not a solver option; pass it as restore\(\.\.\., steps=\.\.\.\)"):
        validate_options("ddrm", {"steps": 5})


def test_every_numeric_option_has_a_declared_range():
    """Every int/float option has a Range and every str option its Choices (e.g. DAPS's preset), nothing else."""
    for name in solvers.SOLVERS:
        hints = typing.get_type_hints(solvers.get(name))
        ranged = {k for k in solvers.options(name) if {int, float, str} & set(typing.get_args(hints[k]) or [hints[k]])}
        assert ranged and ranged == set(solvers.SPECS[name].ranges), name


def test_restore_uses_the_validated_options():
    op, y = problem()
    p = gaussian()
    with pytest.raises(ConfigError, match=r"eta must be a number in \[0, 1\]; got 'abc'"):
        restore(y, op, p, "ddrm", steps=3, eta="abc")
    x, info = restore(y, op, p, "ddrm", steps=3, seed=0, eta=1, return_info=True)
    assert type(info["options"]["eta"]) is float
    assert torch.equal(x, restore(y, op, p, "ddrm", steps=3, seed=0, eta=1.0))


# ---------------------------------------------------------------------------- restore(): arguments
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"steps": 10**12}, r"steps must be an integer in \[1, 100000\]; got 1000000000000"),
        ({"steps": True}, r"steps must be an integer in \[1, 100000\]; got True"),
        ({"steps": 0}, r"steps must be an integer in \[1, 100000\]; got 0"),
        ({"steps": 2.5}, r"steps must be an integer"),
        ({"seed": "abc"}, r"seed must be an integer in the int64 range or None; got 'abc'"),
        ({"seed": 1.7}, r"seed must be an integer .* got 1.7"),
        ({"sigma_y": "0.1"}, r"sigma_y must be a number >= 0; got '0.1'"),
        ({"sigma_y": -0.1}, r"sigma_y must be a number >= 0; got -0.1"),
        ({"callback": 3}, r"callback must be a function or None; got 3"),
    ],
)
def test_restore_rejects_bad_arguments(kwargs, message):
    op, y = problem()
    with pytest.raises(ConfigError, match=message) as err:
        restore(y, op, gaussian(), "ddrm", **{"steps": 2, **kwargs})
    one_line(err)


@pytest.mark.parametrize("solver", list(solvers.SOLVERS))
def test_steps_bound_also_holds_for_direct_solver_calls(solver):
    op, y = problem()
    with pytest.raises(ConfigError, match=r"steps must be an integer in \[1, 100000\]"):
        solvers.get(solver)(y, op, gaussian(), steps=10**12)


def test_empty_batch():
    op, y = problem()
    with pytest.raises(ShapeError, match=r"y is empty \(shape \(0, 3, 4, 4\)\)") as err:
        restore(y[:0], op, gaussian(), "pnp_admm", steps=2)
    one_line(err)


def test_a_0_to_255_measurement_is_refused():
    op, y = problem()
    for solver in ("ddrm", "pnp_admm"):
        with pytest.raises(ConfigError, match="y looks like a 0..255 image; divide it by 255") as err:
            restore(y * 255, op, gaussian(), solver, steps=2)
        one_line(err)
    with pytest.raises(ConfigError, match="0..255"):  # the same check in a direct solver call
        solvers.dps(y * 255, op, gaussian(), steps=2)
    # noise around [0, 1] is fine, and so is an operator whose measurements are larger (A(1) = 4)
    assert torch.isfinite(restore((y + 0.3).clamp_max(1.4), op, gaussian(), "ddrm", steps=2, seed=0)).all()
    summing = DenseSVDOperator(lambda x: 4 * x, SHAPE)
    assert torch.isfinite(restore(4 * y, summing, gaussian(), "ddrm", steps=2, seed=0)).all()


class ForwardOnly:
    def forward(self, x):
        return x


@pytest.mark.parametrize("operator", [lambda x: x, ForwardOnly()], ids=["lambda", "forward-only"])
def test_operator_must_be_an_operator(operator):
    _, y = problem()
    for solver in ("ddrm", "dps"):
        message = "operator must be a pnp_restore.operators Operator; got .*FunctionOperator.*NonlinearOperator"
        with pytest.raises(OperatorError, match=message) as err:
            restore(y, operator, gaussian(), solver, steps=2)
        one_line(err)


def test_linear_solvers_refuse_a_nonlinear_operator():
    """DDRM, DDNM, DiffPIR and PnP-ADMM use A^T, A^+, prox or the SVD: a nonlinear operator is one line naming
    the solvers that take it; DPS runs it."""
    _, y = problem()
    clip = NonlinearOperator(lambda x: x.clamp(0.2, 0.8))
    for solver in ("ddrm", "ddnm", "diffpir", "pnp_admm"):
        with pytest.raises(OperatorError, match=f"{solver} needs a linear operator and NonlinearOperator is nonlinear; use one of .*dps") as err:
            restore(y, clip, gaussian(), solver, steps=2)
        one_line(err)
    assert torch.isfinite(restore(y, clip, gaussian(), "dps", steps=2, seed=0)).all()


def test_prior_given_as_a_string_or_without_denoise():
    op, y = problem()
    message = r"prior is the string 'builtin', not a prior; load it first: prior = pnp_restore.priors.load\('builtin'\)"
    with pytest.raises(ConfigError, match=message) as err:
        restore(y, op, "builtin", "ddrm", steps=2)
    one_line(err)
    with pytest.raises(ConfigError, match="prior must be an object with a denoise"):
        restore(y, op, object(), "dps", steps=2)
    with pytest.raises(ConfigError, match="prior is the string"):  # direct solver calls share the check
        solvers.pnp_admm(y, op, "builtin", steps=2)


class Returns:
    """A bare denoiser returning ``fn(x)``."""

    def __init__(self, fn):
        self.fn = fn

    def denoise(self, x, sigma):
        return self.fn(x)


@pytest.mark.parametrize("solver", list(solvers.SOLVERS))
@pytest.mark.parametrize(
    "fn,error,message",
    [
        (lambda x: x[:, :1], ShapeError, r"returned shape \(2, 1, 4, 4\) for x of shape \(2, 3, 4, 4\)"),
        (lambda x: None, ConfigError, r"returned NoneType; it must return a torch tensor"),
        (lambda x: x.detach().numpy(), ConfigError, r"returned ndarray; it must return a torch tensor"),
    ],
    ids=["shape", "None", "numpy"],
)
def test_a_denoiser_returning_the_wrong_thing(solver, fn, error, message):
    op, y = problem()
    with pytest.raises(error, match=message) as err:
        restore(y, op, Returns(fn), solver, steps=2)
    one_line(err)


# ---------------------------------------------------------------------------- bare denoisers
class Bare:
    """Only ``denoise``: no sigmas(), sigma range, channels or nn.Module."""

    def denoise(self, x, sigma):
        return gaussian().denoise(x, sigma)


class OnlyDenoise(Prior):
    """A Prior subclass that defines nothing but ``denoise``."""

    def denoise(self, x, sigma):
        return gaussian().denoise(x, sigma)


@pytest.mark.parametrize("solver", list(solvers.SOLVERS))
def test_any_object_with_denoise_is_a_prior_for_every_solver(solver):
    """README: "any object with denoise(x, sigma) works as a prior for every solver". It gets the
    schedule a Prior subclass inherits (range_sigmas), so both give the same result."""
    op, y = problem()
    kw = dict(sigma_y=0.02, steps=4, seed=0)
    bare = restore(y, op, Bare(), solver, **kw)
    assert bare.shape == (2, *SHAPE) and torch.isfinite(bare).all()
    assert torch.equal(bare, restore(y, op, OnlyDenoise(), solver, **kw))
    assert torch.equal(bare, solvers.get(solver)(y, op, Bare(), **kw))  # direct calls too


def test_range_sigmas_uses_the_denoisers_range_if_it_has_one():
    class Ranged(Bare):
        sigma_min, sigma_max = 0.01, 2.0

    torch.testing.assert_close(range_sigmas(Bare(), 5), OnlyDenoise().sigmas(5))
    s = range_sigmas(Ranged(), 5)
    assert s[0].item() == pytest.approx(2.0) and s[-1].item() == pytest.approx(0.01)


# ---------------------------------------------------------------------------- priors.load
def test_load_builtin_rejects_unknown_options():
    with pytest.raises(ConfigError, match="the built-in prior takes no option.*foo; it accepts device, dtype") as err:
        priors.load("builtin", foo="bar")
    one_line(err)
    with pytest.raises(ConfigError, match="no option.*arch"):
        priors.load("builtin", arch="ffhq_10m")


def test_load_on_a_device_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = r"device 'cuda' was requested but CUDA is not available to PyTorch .*; use cpu"
    with pytest.raises(ConfigError, match=message) as err:
        priors.load("builtin", device="cuda")
    one_line(err)
    with pytest.raises(ConfigError, match="device 'gpu' is not a device name"):
        priors.load("builtin", device="gpu")
    with pytest.raises(ConfigError, match="dtype must be a floating torch dtype"):
        priors.load("builtin", dtype=torch.int32)
    with pytest.raises(ConfigError, match="dtype must be a floating torch dtype"):
        priors.load("nonsense", dtype="float16")  # checked before the source is looked up
