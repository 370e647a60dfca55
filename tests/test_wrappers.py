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


def _photo_like(size: int) -> torch.Tensor:
    """A deterministic (1, 3, size, size) image in [0, 1] with smooth shading, stripes and edges."""
    g = torch.linspace(0, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    r = 0.5 + 0.3 * torch.sin(7 * xx + 3 * yy) * (xx < 0.6) + 0.2 * (yy > 0.4)
    gch = 0.4 + 0.3 * torch.cos(11 * yy) + 0.2 * (xx + yy > 1.1)
    b = 0.3 + 0.5 * xx * yy + 0.1 * torch.sin(25 * xx)
    return torch.stack([r, gch, b]).clamp(0, 1)[None].float()


def _seam_jump(err: torch.Tensor, cols: list[int]) -> float:
    """Largest jump of ``err`` (1, C, H, W) between neighbouring columns at ``cols`` beyond its typical jump."""
    d = (err[..., 1:] - err[..., :-1]).abs()
    return float(max(d[..., c - 1 : c + 1].max() for c in cols))


@pytest.mark.parametrize(("sigma", "bound"), [(0.1, 0.03), (0.5, 0.08), (2.0, 0.15)])
def test_tiles_of_the_builtin_prior_are_seamless(sigma, bound):
    """96x96 image, 64-pixel tiles with the default overlap (32): tiles span 0-64 and 32-96 in rows and columns.

    Measured (this image, noise seed 0): max |tiled - whole| = 0.020 / 0.052 / 0.101 at sigma 0.1 / 0.5 / 2,
    from each tile's own GroupNorm statistics, spread smoothly by the blend; bounds are 1.5x that. No seam:
    the difference's jump between neighbouring columns at the tile edges is no larger than elsewhere
    (measured ratio 0.8 / 1.0 / 0.3; bound 1.25), whereas tiles averaged without the window (overlap 0)
    step there (ratio 1.5 / 2.2 / 2.1), which the same check catches.
    """
    from pnp_restore import priors
    from pnp_restore.priors.wrappers import default_overlap

    prior = priors.load("builtin")
    x0 = _photo_like(96)
    x = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    assert default_overlap(prior, 64) == 32
    with torch.inference_mode():
        whole = prior.denoise(x, sigma)
        tiled = TiledPrior(prior, tile=64, overlap=default_overlap(prior, 64)).denoise(x, sigma)
        hard = TiledPrior(prior, tile=64, overlap=0).denoise(x, sigma)
    assert (tiled - whole).abs().max() < bound
    edges, inner = [32, 64], [c for c in range(8, 88) if abs(c - 32) > 3 and abs(c - 64) > 3]
    for err in (tiled - whole, (tiled - whole).transpose(-1, -2)):
        assert _seam_jump(err, edges) <= 1.25 * _seam_jump(err, inner)
    assert _seam_jump(hard - whole, edges) > 1.25 * _seam_jump(hard - whole, inner)
