"""Benchmark metrics: PSNR/SSIM equal scikit-image's on fixed arrays; resource counters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pnp_restore.benchmarks import metrics
from pnp_restore.errors import ShapeError


def _pair(seed: int = 0, shape=(3, 3, 24, 20)):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(shape, generator=g, dtype=torch.float64)
    x = (ref + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psnr_ssim_match_skimage(dtype):
    x, ref = _pair()
    got_p, got_s = metrics.psnr(x.to(dtype), ref.to(dtype)), metrics.ssim(x.to(dtype), ref.to(dtype))
    for i in range(x.shape[0]):
        a, r = x[i].to(dtype).double().permute(1, 2, 0).numpy(), ref[i].to(dtype).double().permute(1, 2, 0).numpy()
        assert got_p[i] == pytest.approx(peak_signal_noise_ratio(r, a, data_range=1.0), abs=1e-10)
        assert got_s[i] == pytest.approx(structural_similarity(r, a, data_range=1.0, channel_axis=-1), abs=1e-10)


def test_psnr_known_value_and_clipping():
    ref = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    x = ref + torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    assert metrics.psnr(x, ref) == pytest.approx([20.0, 40.0], abs=1e-9)
    # values outside [0, 1] are clipped before scoring: 1.7 counts as 1.0
    assert metrics.psnr(torch.full_like(ref, 1.7), ref)[0] == pytest.approx(-20 * math.log10(0.5), abs=1e-9)
    assert metrics.ssim(ref, ref) == pytest.approx([1.0, 1.0])


def test_per_sample_independent():
    x, ref = _pair(1)
    full = metrics.psnr(x, ref) + metrics.ssim(x, ref)
    single = [metrics.psnr(x[i : i + 1], ref[i : i + 1])[0] for i in range(3)]
    single += [metrics.ssim(x[i : i + 1], ref[i : i + 1])[0] for i in range(3)]
    assert np.allclose(full, single, rtol=0, atol=0)


def test_shape_mismatch_raises():
    with pytest.raises(ShapeError):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_peak_memory_cpu_positive():
    assert metrics.peak_memory_mb("cpu") > 10  # a Python process with torch holds well over 10 MiB
