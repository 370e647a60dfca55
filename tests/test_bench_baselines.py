"""Baselines without a diffusion model: pseudo-inverse, ADMM-TV, PnP-BM3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pnp_restore.benchmarks import baselines, metrics, protocols


def _image(size: int = 32) -> torch.Tensor:
    """A smooth synthetic RGB image (piecewise-smooth content TV and BM3D handle well)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = torch.stack([0.5 + 0.3 * torch.sin(4 * xx), 0.5 + 0.3 * torch.cos(3 * yy), (xx > 0.5).float() * 0.5 + 0.2])
    return x[None].double()


def _case(task: str, size: int = 32):
    x = _image(size)
    op, y = protocols.get(task, size=size).degrade(x, ["synthetic/0"])
    return x, op, y


def test_pinv_is_the_operator_pseudo_inverse():
    x, op, y = _case("sr4_avgpool@0")
    assert torch.equal(baselines.pinv(y, op), op.pinv(y))
    assert torch.allclose(op(baselines.pinv(y, op)), y, atol=1e-10)  # consistent with the measurement


@pytest.mark.parametrize("task,gain", [("random_inpaint_70@0", 10.0), ("gaussian_deblur@0.025", 10.0)])
def test_admm_tv_beats_pinv(task, gain):
    x, op, y = _case(task, 64)  # the 61 px blur kernel needs 64 px images
    p_pinv = metrics.psnr(baselines.pinv(y, op), x)[0]
    p_tv = metrics.psnr(baselines.admm_tv(y, op, sigma_y=protocols.get(task).sigma_y), x)[0]
    assert p_tv > p_pinv + gain


def test_admm_tv_per_sample_and_deterministic():
    x, op, y = _case("denoise@0.05")
    xb = torch.cat([x, x.flip(-1)])
    _, yb = protocols.get("denoise@0.05", size=32).degrade(xb, ["a/0", "a/1"])
    both = baselines.admm_tv(yb, op, sigma_y=0.05, steps=10)
    one = baselines.admm_tv(yb[1:], op, sigma_y=0.05, steps=10)
    assert torch.allclose(both[1:], one, atol=1e-12)


def test_pnp_bm3d_denoises():
    pytest.importorskip("bm3d", reason="pnp_bm3d needs the optional bm3d package")
    x, op, y = _case("denoise@0.05")
    out = baselines.pnp_bm3d(y, op, sigma_y=0.05, steps=2)
    assert metrics.psnr(out, x)[0] > metrics.psnr(y, x)[0] + 6  # measured: +12 dB
    assert np.isfinite(out.numpy()).all()
