"""The built-in prior: EDM preconditioning, shipped weights, sha256 checks, denoising quality."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pnp_restore.data import read_rgb_uint8, to_tensor
from pnp_restore.errors import CheckpointError
from pnp_restore.priors.builtin import (
    CONFIG_NAME,
    WEIGHTS_DIR,
    WEIGHTS_NAME,
    BuiltinPrior,
    EDMDenoiser,
    UNetConfig,
    file_sha256,
    load_builtin,
)

CARD = Path(__file__).resolve().parents[1] / "docs" / "builtin-prior.md"
TINY = UNetConfig(channels=(8, 16, 16), blocks=1, emb_dim=16, groups=4)


@pytest.fixture(scope="module")
def prior() -> BuiltinPrior:
    return load_builtin()


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (x - ref).pow(2).mean()))


def test_preconditioning_at_init_is_c_skip():
    # The output conv is zero-initialised, so an untrained net is D(x; s) = c_skip(s) x (EDM Table 1).
    torch.manual_seed(0)
    p = BuiltinPrior(EDMDenoiser(TINY))
    x = torch.rand(2, 3, 13, 10)
    sigma = torch.tensor([0.05, 1.0])
    s_net = 2 * sigma.view(-1, 1, 1, 1)
    expected = (0.25 / (s_net**2 + 0.25) * (2 * x - 1) + 1) / 2
    torch.testing.assert_close(p.denoise(x, sigma), expected, rtol=0, atol=1e-6)
    assert (p.sigma_min, p.sigma_max) == (0.001, 40.0)


def test_shipped_weights_match_json_and_card(prior):
    meta = json.loads((WEIGHTS_DIR / CONFIG_NAME).read_text())
    digest = file_sha256(WEIGHTS_DIR / WEIGHTS_NAME)
    assert digest == meta["sha256"]
    assert digest in CARD.read_text(), "docs/builtin-prior.md must quote the shipped weights' sha256"
    size = (WEIGHTS_DIR / WEIGHTS_NAME).stat().st_size + (WEIGHTS_DIR / CONFIG_NAME).stat().st_size
    assert size < 25e6
    assert prior.info["sha256"] == digest
    assert meta["parameters"] == sum(p.numel() for p in prior.parameters())
    card_params = re.search(r"([\d,]+) parameters", CARD.read_text())
    assert card_params and int(card_params.group(1).replace(",", "")) == meta["parameters"]


def test_corrupt_or_missing_weights_raise(tmp_path):
    shutil.copy(WEIGHTS_DIR / CONFIG_NAME, tmp_path / CONFIG_NAME)
    with pytest.raises(CheckpointError, match="missing"):
        load_builtin(tmp_path)
    data = bytearray((WEIGHTS_DIR / WEIGHTS_NAME).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_builtin(tmp_path)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    net = EDMDenoiser(TINY)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    BuiltinPrior(net, {"note": "test"}).save_pretrained(tmp_path)
    loaded = BuiltinPrior.from_pretrained(tmp_path)
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(loaded.denoise(x, 0.2), BuiltinPrior(net).denoise(x, 0.2))
    assert loaded.info["note"] == "test" and loaded.net.cfg == TINY
    assert load_builtin(tmp_path / WEIGHTS_NAME).info["sha256"] == file_sha256(tmp_path / WEIGHTS_NAME)


def test_batch_equals_single_calls_and_any_size(prior):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 37, 29, generator=g)
    sigma = torch.tensor([0.05, 0.3])
    with torch.no_grad():
        both = prior.denoise(x, sigma)
        singles = torch.cat([prior.denoise(x[i : i + 1], sigma[i : i + 1]) for i in range(2)])
    assert both.shape == x.shape
    torch.testing.assert_close(both, singles, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(prior.denoise(x, 0.0), x, rtol=0, atol=1e-6)  # c_out(0) = 0


def test_float64(prior):
    p64 = load_builtin(dtype=torch.float64)
    x = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        out = p64.denoise(x, 0.1)
        ref = prior.denoise(x.float(), 0.1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=1e-4)


@pytest.mark.data
def test_denoises_cbsd68_crop(prior, data_dir):
    img = to_tensor(read_rgb_uint8(data_dir / "test" / "CBSD68" / "101085.png"))[None]
    h, w = img.shape[-2:]
    clean = img[..., (h - 128) // 2 : (h + 128) // 2, (w - 128) // 2 : (w + 128) // 2]
    sigma = 25 / 255
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        den = prior.denoise(noisy, sigma)
    gain = psnr(den, clean) - psnr(noisy, clean)
    assert gain >= 8.0, f"PSNR gain {gain:.2f} dB"
    assert np.isfinite(gain)
