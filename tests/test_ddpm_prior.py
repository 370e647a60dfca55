"""Beta schedules, the discrete VP schedule and the DDPM -> Prior adapter."""

from __future__ import annotations

import math

import pytest
import torch

from pnp_restore.errors import ConfigError, ShapeError
from pnp_restore.priors import DDPMPrior, DiscreteVPSchedule, betas


# ---------------------------------------------------------------- schedules
def test_linear_betas_published_values():
    b = betas("linear", 1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4, rel=1e-12) and b[-1].item() == pytest.approx(0.02, rel=1e-12)
    # guided-diffusion rescales for other T: 1000 / T
    b250 = betas("linear", 250)
    assert b250[0].item() == pytest.approx(4e-4) and b250[-1].item() == pytest.approx(0.08)
    # alpha_bar_T of Ho et al.'s schedule
    assert DiscreteVPSchedule(b).alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-4)
    # explicit endpoints are used unscaled (diffusers' "linear")
    assert betas("linear", 10, 1e-3, 2e-3)[-1].item() == pytest.approx(2e-3)


def test_cosine_betas_follow_alpha_bar():
    T = 1000

    def f(t):
        return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

    ab = DiscreteVPSchedule(betas("cosine", T)).alphas_cumprod
    for t in (0, 10, 500, 900):
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas("cosine", T).max().item() == pytest.approx(0.999)


def test_quadratic_and_sigmoid_betas():
    q = betas("quadratic", 100, 0.00085, 0.012)  # Stable Diffusion's scaled_linear
    assert q[0].item() == pytest.approx(0.00085) and q[-1].item() == pytest.approx(0.012)
    assert q.sqrt().diff().diff().abs().max().item() < 1e-12  # linear in sqrt(beta)
    s = betas("sigmoid", 100)
    assert bool((s.diff() > 0).all())
    assert torch.allclose(s + s.flip(0), torch.full_like(s, 1e-4 + 0.02), atol=1e-12)  # point symmetric
    with pytest.raises(ConfigError, match="unknown beta schedule"):
        betas("exponential", 10)


def test_schedule_sigmas_and_timesteps():
    sch = DiscreteVPSchedule("linear")
    ab = sch.alphas_cumprod
    assert torch.allclose(sch.sigmas, ((1 - ab) / ab).sqrt() / 2, rtol=1e-14)
    assert sch.sigma_min == pytest.approx(0.5 * math.sqrt(1e-4 / (1 - 1e-4)))
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    # exact integers, also after a float32 round trip of sigma
    assert torch.equal(sch.t_from_sigma(sch.sigmas[t]), t.double())
    assert torch.equal(sch.t_from_sigma(sch.sigmas[t].float()), t.double())
    # halfway in log-sigma -> halfway in t; nearest with quantize
    mid = ((sch.log_sigmas[500] + sch.log_sigmas[501]) / 2).exp()
    assert sch.t_from_sigma(mid[None]).item() == pytest.approx(500.5, abs=1e-9)
    near = (0.7 * sch.log_sigmas[500] + 0.3 * sch.log_sigmas[501]).exp()
    assert sch.t_from_sigma(near[None], quantize=True).item() == 500
    # clamped outside the range
    assert sch.t_from_sigma(torch.tensor([0.0, 1e4], dtype=torch.float64)).tolist() == [0.0, 999.0]


def test_respacing():
    sch = DiscreteVPSchedule("linear")
    assert sch.respaced(10).tolist() == list(range(900, -1, -100))  # DDIM uniform skip
    assert sch.respaced(1000).tolist() == list(range(999, -1, -1))
    assert sch.respaced(30).tolist() == [33 * i for i in range(29, -1, -1)]
    # guided-diffusion space_timesteps(1000, [10])
    assert sch.respaced(10, "linspace").tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    quad = sch.respaced(10, "quad")
    assert quad[0].item() == int(math.sqrt(800) ** 2) and quad[-1].item() == 0 and bool((quad.diff() < 0).all())
    with pytest.raises(ConfigError):
        sch.respaced(1001)
    with pytest.raises(ConfigError):
        sch.respaced(10, "cubic")


# ---------------------------------------------------------------- adapter
MEAN, STD = 0.4, 0.15  # data: x0 ~ N(MEAN, STD^2) per pixel on [0, 1]


class OracleNet(torch.nn.Module):
    """Exact network for Gaussian data, in any parameterisation, from (x_t, t) only."""

    def __init__(self, schedule: DiscreteVPSchedule, prediction: str, learned_sigma: bool = False) -> None:
        super().__init__()
        self.schedule, self.prediction, self.learned_sigma = schedule, prediction, learned_sigma
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.in_channels = 3

    def forward(self, x_t, t):
        ls = self.schedule.log_sigmas.to(x_t.dtype)
        lo = t.floor().long().clamp(0, len(ls) - 2)
        s = 2 * (ls[lo] + (t.to(x_t.dtype) - lo) * (ls[lo + 1] - ls[lo])).exp().view(-1, 1, 1, 1)  # sigma_net
        a = (1 + s**2).rsqrt()  # sqrt(alpha_bar)
        m, v = 2 * MEAN - 1, (2 * STD) ** 2  # data on [-1, 1]
        x_ve = x_t / a
        x0 = m + v / (v + s**2) * (x_ve - m)
        eps = (x_ve - x0) / s
        out = {"epsilon": eps, "sample": x0, "v": a * eps - s * a * x0}[self.prediction]
        return torch.cat([out, torch.randn_like(out)], 1) if self.learned_sigma else out


def posterior_mean(x, sigma):
    return MEAN + STD**2 / (STD**2 + sigma**2) * (x - MEAN)


@pytest.mark.parametrize("prediction,learned", [("epsilon", False), ("v", False), ("sample", False), ("epsilon", True)])
def test_denoise_matches_gaussian_posterior_mean(prediction, learned):
    sch = DiscreteVPSchedule("cosine")
    prior = DDPMPrior(OracleNet(sch, prediction, learned).double(), sch, prediction, learned_sigma=learned)
    x0 = MEAN + STD * torch.randn(4, 3, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.2, 1.3, 7.0], dtype=torch.float64)  # not on the discrete grid
    x = x0 + sigma.view(-1, 1, 1, 1) * torch.randn_like(x0)
    out = prior.denoise(x, sigma)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, posterior_mean(x, sigma.view(-1, 1, 1, 1)), rtol=0, atol=1e-9)


def test_denoise_float32_discrete_sigmas_and_per_sample_independence():
    sch = DiscreteVPSchedule("linear")
    prior = DDPMPrior(OracleNet(sch, "epsilon"), sch)
    sig = prior.sigmas(20)
    assert sig.dtype == torch.float64 and bool((sig.diff() < 0).all()) and sig.numel() == 20
    torch.testing.assert_close(sig, sch.sigmas[prior.timesteps(20)])
    x = torch.rand(3, 3, 8, 8)
    s = sig[[2, 10, 19]].float()
    batch = prior.denoise(x, s)
    torch.testing.assert_close(batch, posterior_mean(x, s.view(-1, 1, 1, 1)), rtol=0, atol=2e-5)
    for i in range(3):
        torch.testing.assert_close(batch[i : i + 1], prior.denoise(x[i : i + 1], float(s[i])), rtol=0, atol=1e-6)
    assert torch.equal(prior.denoise(x, 0.0), x)  # sigma = 0 is the identity for eps prediction


def test_gradients_flow_and_clip():
    sch = DiscreteVPSchedule("linear")
    prior = DDPMPrior(OracleNet(sch, "sample"), sch, "sample", clip=True)
    x = torch.full((1, 3, 4, 4), 3.0, requires_grad=True)
    out = prior.denoise(x, 0.01)
    assert out.max().item() == pytest.approx(1.0)  # x0 clamped to [-1, 1] before mapping back
    prior = DDPMPrior(OracleNet(sch, "epsilon"), sch)
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    prior.denoise(x, 0.3).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


class Plain(torch.nn.Module):
    def __init__(self, out_channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, out_channels, 1)

    def forward(self, x, t):
        return self.conv(x)


def test_bad_inputs_raise_clear_errors():
    sch = DiscreteVPSchedule("linear")
    with pytest.raises(ShapeError, match="returned 6 channels"):
        DDPMPrior(Plain(6), sch).denoise(torch.rand(1, 3, 4, 4), 0.1)
    with pytest.raises(ShapeError, match="learned_sigma=False"):
        DDPMPrior(Plain(3), sch, learned_sigma=True).denoise(torch.rand(1, 3, 4, 4), 0.1)
    with pytest.raises(ConfigError, match="unknown prediction"):
        DDPMPrior(Plain(3), sch, prediction="score")
    with pytest.raises(ConfigError, match="unknown respacing"):
        DDPMPrior(Plain(3), sch, respacing="cubic")
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        DiscreteVPSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ShapeError):
        DDPMPrior(Plain(3), sch, channels=3).denoise(torch.rand(1, 1, 4, 4), 0.1)


# ---------------------------------------------------------------- the native VP path
@pytest.mark.parametrize(
    "prediction,clip", [("epsilon", False), ("epsilon", True), ("v", False), ("sample", False), ("sample", True)]
)
def test_native_vp_matches_the_view_derived_from_denoise(prediction, clip):
    """``DDPMPrior.vp`` (network in, network out) equals the generic [0, 1] round trip of
    ``vp_from_denoise`` (1e-10 in float64), per-sample sigmas included; x_t = sqrt(ab) x0 + sqrt(1-ab) eps."""
    from pnp_restore.priors.base import vp_alpha_bar, vp_from_denoise

    sch = DiscreteVPSchedule("cosine")
    prior = DDPMPrior(OracleNet(sch, prediction).double(), sch, prediction, clip=clip)
    sigma = torch.tensor([0.02, 0.3, 2.0], dtype=torch.float64)
    x_t = 1.5 * torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x0, eps = prior.vp(x_t, sigma)
    ref_x0, ref_eps = vp_from_denoise(prior.denoise, x_t, sigma)
    torch.testing.assert_close(x0, ref_x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(eps, ref_eps, rtol=0, atol=1e-10)
    ab = vp_alpha_bar(sigma).view(-1, 1, 1, 1)
    torch.testing.assert_close(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, x_t, rtol=0, atol=1e-10)
    for i in range(3):  # a float sigma gives the same as the (B,) tensor
        torch.testing.assert_close(prior.vp(x_t[i : i + 1], float(sigma[i]))[0], x0[i : i + 1], rtol=0, atol=1e-12)


def test_solvers_use_the_native_vp_once_per_step():
    """Solvers call a DDPM prior's ``vp`` (not ``denoise``) and count each call as one NFE."""
    from pnp_restore import restore
    from pnp_restore.operators import Inpainting, random_mask

    sch = DiscreteVPSchedule("linear")
    prior = DDPMPrior(OracleNet(sch, "epsilon").double(), sch)
    calls = {"vp": 0, "denoise": 0}
    for name in calls:
        def counted(*a, _name=name, _fn=getattr(prior, name)):
            calls[_name] += 1
            return _fn(*a)

        setattr(prior, name, counted)
    op = Inpainting(random_mask((8, 8), missing=0.5, seed=0))
    y = op(torch.rand(1, 3, 8, 8, dtype=torch.float64))
    _, info = restore(y, op, prior, "ddnm", steps=5, seed=0, return_info=True)
    assert calls == {"vp": 5, "denoise": 0} and info["nfe"] == 5


def test_schedule_table_follows_the_module_but_keeps_float64():
    """The log-sigma table is a non-persistent buffer: it moves with ``prior.to(...)``, stays float64 when
    the prior is cast (timesteps must stay exact) and is not part of the prior's state dict."""
    sch = DiscreteVPSchedule("linear")
    prior = DDPMPrior(OracleNet(sch, "epsilon"), sch)
    ref = sch.sigmas.log()
    prior.half()
    assert sch.log_sigmas.dtype == torch.float64 and torch.equal(sch.log_sigmas, ref)
    assert not any(k.startswith("schedule.") for k in prior.state_dict())
    prior.to("meta")
    assert sch.log_sigmas.device.type == "meta"
