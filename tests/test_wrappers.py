"""PaddedPrior and TiledPrior."""

from __future__ import annotations

import pytest
import torch

from pnp_restore.errors import ConfigError
from pnp_restore.priors import DDPMPrior, DiscreteVPSchedule, EDMPrior, PaddedPrior, TiledPrior


class ConvD(torch.nn.Module):
    """Fully convolutional toy denoiser D(x, sigma) (two 3x3 convs: receptive radius 2);
    with ``multiple`` it refuses sizes that are not multiples, like a UNet."""

    def __init__(self, multiple: int = 1, kernel: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.multiple = multiple
        self.a = torch.nn.Conv2d(3, 8, kernel, padding=kernel // 2)
        self.b = torch.nn.Conv2d(8, 3, kernel, padding=kernel // 2)

    def forward(self, x, sigma):
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise RuntimeError(f"size {tuple(x.shape[-2:])} is not a multiple of {self.multiple}")
        return x + self.b(torch.tanh(self.a(x))) * sigma.view(-1, 1, 1, 1)


def test_padding_preserves_shape_and_interior():
    x = torch.rand(2, 3, 37, 45, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5], dtype=torch.float64)
    padded = PaddedPrior(EDMPrior(ConvD(multiple=16).double()), 16)
    out = padded.denoise(x, sigma)
    assert out.shape == x.shape and padded.multiple == 1
    free = EDMPrior(ConvD(multiple=1).double()).denoise(x, sigma)
    r = 2  # receptive radius: pixels further than this from the border see no padding
    torch.testing.assert_close(out[..., r:-r, r:-r], free[..., r:-r, r:-r], rtol=0, atol=1e-12)
    assert (out - free).abs().max() > 1e-6  # ...but the border does differ (reflect vs zero padding)
    aligned = torch.rand(1, 3, 32, 48, dtype=torch.float64)
    torch.testing.assert_close(padded.denoise(aligned, 0.2), EDMPrior(ConvD(16).double()).denoise(aligned, 0.2))
    tiny = torch.rand(1, 3, 3, 5, dtype=torch.float64)  # too small to reflect: replicate
    assert padded.denoise(tiny, 0.2).shape == tiny.shape


def test_tiling_a_per_pixel_network_is_exact():
    prior = EDMPrior(ConvD(kernel=1).double())
    x = torch.rand(2, 3, 100, 77, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.3], dtype=torch.float64)
    tiled = TiledPrior(prior, tile=32, overlap=8)
    torch.testing.assert_close(tiled.denoise(x, sigma), prior.denoise(x, sigma), rtol=0, atol=1e-12)
    small = torch.rand(1, 3, 20, 30, dtype=torch.float64)
    assert torch.equal(tiled.denoise(small, 0.1), prior.denoise(small, 0.1))


def test_tiling_blends_smoothly():
    prior = EDMPrior(ConvD(kernel=3).double())
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    out = TiledPrior(prior, tile=24, overlap=8).denoise(x, 0.5)
    full = prior.denoise(x, 0.5)
    assert out.shape == x.shape
    # only pixels near tile edges see different (zero-padded) context: errors stay small
    assert (out - full).abs().mean() < 0.1 * (full - x).abs().mean()
    with pytest.raises(ConfigError):
        TiledPrior(prior, tile=16, overlap=16)


def test_wrappers_forward_attributes():
    class Eps(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    inner = DDPMPrior(Eps(), DiscreteVPSchedule("linear"), multiple=8)
    wrapped = TiledPrior(PaddedPrior(inner, 8), tile=64)
    assert wrapped.schedule is inner.schedule
    assert torch.equal(wrapped.sigmas(10), inner.sigmas(10))
    assert (wrapped.sigma_min, wrapped.sigma_max) == (inner.sigma_min, inner.sigma_max)
    x = torch.rand(1, 3, 70, 90)
    torch.testing.assert_close(wrapped.denoise(x, 0.2), inner.denoise(torch.nn.functional.pad(x, (3, 3, 1, 1)), 0.2)[..., 1:-1, 3:-3])
