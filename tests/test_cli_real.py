"""The command line with the real solvers and operators: an exact Gaussian prior (any
size, no weights), the built-in prior on 32x32 images, and the real prior loader's errors."""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np
import pytest
import torch

from cli_fakes import files, image, invoke, mask, python_cli
from pnp_restore.cli.pipeline import Backend


def _gaussian_prior(source, *, device, shape, **kwargs):
    """An exact Gaussian prior (i.i.d. pixels, mean 0.5, std 0.2) of images of ``shape``."""
    from pnp_restore.priors import GaussianPrior

    c, h, w = shape
    return GaussianPrior(torch.full((c, h, w), 0.5), 0.04 * torch.eye(c * h * w), shape=(c, h, w)).to(device)


@pytest.mark.parametrize("command, size, out", [
    (["inpaint", "M", "--sigma-y", "0", "--steps", "5"], 16, 16),
    (["sr", "--scale", "2", "--steps", "5"], 8, 16),
    (["deblur", "--kernel", "gaussian:1.0", "--steps", "5", "--solver", "ddrm", "--padding", "circular"], 16, 16),
    (["deblur", "--kernel", "gaussian:1.0", "--steps", "5"], 16, 16),
    (["denoise", "--sigma", "25"], 16, 16),
    (["denoise", "--sigma", "25", "--solver", "pnp_admm", "--steps", "5"], 16, 16),
])
def test_real_solvers_with_gaussian_prior(tmp_path, command, size, out):
    from click.testing import CliRunner

    from pnp_restore.cli import main

    backend = Backend(load_prior=functools.partial(_gaussian_prior, shape=(3, out, out)))
    arr = image(tmp_path / "p.png", size, size)
    m = mask(tmp_path / "m.png", size, size, box=(slice(4, 10), slice(4, 12))) > 0
    args = [a if a != "M" else str(tmp_path / "m.png") for a in command[1:]]
    res = CliRunner().invoke(main, [command[0], str(tmp_path / "p.png"), *args, "-q", "--samples", "2"], obj=backend,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res_0 = cv2.imread(str(tmp_path / "p_restored_0.png"))
    assert res_0.shape == (out, out, 3)
    rec = json.loads((tmp_path / "p_restored_1.json").read_text())
    denoiser = command[0] == "denoise" and "--solver" not in command  # one deterministic call: no seed
    assert rec["seed"] == (None if denoiser else 1) and rec["nfe"] >= 1 and rec["time_s"] > 0
    if command[0] == "inpaint":  # sigma_y = 0: the observed pixels are kept
        assert np.abs(res_0[~m].astype(int) - arr[~m]).max() <= 1
        assert np.abs(res_0[m].astype(float) - 127.5).mean() < 60  # filled from the prior


@pytest.mark.parametrize("prior, message", [
    ("ffhq_10m", "prior 'ffhq_10m' is not installed: download https://"),
    ("nope", "unknown prior 'nope'; use one of builtin, "),
    ("missing.pt", "checkpoint missing.pt does not exist"),
])
def test_real_prior_errors(tmp_path, monkeypatch, prior, message):
    monkeypatch.setenv("PNP_RESTORE_HOME", str(tmp_path / "home"))
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--prior", prior)
    assert res.exit_code == 1 and res.output.startswith(f"Error: {message}") and len(res.output.splitlines()) == 1
    assert files(tmp_path) == ["p.png"]


class TestRealStack:
    """The built-in prior and real solvers on 32x32 images with a few steps."""

    def test_inpaint_subprocess(self, tmp_path):
        arr = image(tmp_path / "p.png")
        m = mask(tmp_path / "m.png") > 0
        # 20 steps (DDRM's default): with very few steps published DDRM trusts y only weakly.
        res = python_cli("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--steps", "20", "--device", "cpu")
        assert res.returncode == 0, res.stderr
        out = cv2.imread(str(tmp_path / "p_restored.png"))
        assert out.shape == arr.shape
        # inpaint's default sigma_y = 0: the observed pixels are the input's, bit for bit.
        assert np.array_equal(out[~m], arr[~m])
        rec = json.loads((tmp_path / "p_restored.json").read_text())
        assert rec["solver"] == "ddrm" and rec["steps"] == 20 and rec["nfe"] >= 20
        assert rec["sigma_y"] == 0 and rec["observed_copied"] is True

    @pytest.mark.parametrize("solver", ["ddrm", "ddnm", "diffpir", "dps", "pnp_admm"])
    def test_inpaint_defaults_keep_the_unmasked_pixels_bit_identical(self, tmp_path, solver):
        """Every solver, default --sigma-y (0): the unmasked pixels of the written PNG are the input's; the hole is
        filled (not left black or white); --sigma-y 0.02 lets the solver change (denoise) the kept pixels."""
        arr = image(tmp_path / "p.png")
        m = mask(tmp_path / "m.png") > 0
        res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--solver", solver, "--steps", "3", "-q")
        assert res.exit_code == 0, res.output
        out = cv2.imread(str(tmp_path / "p_restored.png"))
        assert np.array_equal(out[~m], arr[~m]) and not np.array_equal(out[m], arr[m])
        assert 40 < out[m].mean() < 215
        if solver == "ddrm":
            res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--steps", "3", "--sigma-y", "0.02",
                         "--overwrite", "-q")
            assert res.exit_code == 0, res.output
            assert not np.array_equal(cv2.imread(str(tmp_path / "p_restored.png"))[~m], arr[~m])

    @pytest.mark.parametrize("command", [
        ["inpaint", "M", "--steps", "3"],
        ["deblur", "--kernel", "gaussian:1.0", "--solver", "ddrm", "--steps", "3"],
        ["denoise", "--sigma", "25"],
    ])
    def test_gray_images(self, tmp_path, command):
        """A gray photo with the RGB built-in prior: restored through Grayscale (DDRM's SVD path for
        inpainting and circular blur, the one-call denoiser on an i.i.d.-noise RGB observation), written gray."""
        arr = image(tmp_path / "g.png", channels=1)
        m = mask(tmp_path / "m.png") > 0
        args = [str(tmp_path / "m.png") if a == "M" else a for a in command[1:]]
        res = invoke(command[0], tmp_path / "g.png", *args, "-q")
        assert res.exit_code == 0, res.output
        out = cv2.imread(str(tmp_path / "g_restored.png"), cv2.IMREAD_UNCHANGED)
        assert out.shape == (32, 32)
        assert json.loads((tmp_path / "g_restored.json").read_text())["gray"]
        if command[0] == "inpaint":
            assert np.array_equal(out[~m], arr[~m])

    @pytest.mark.parametrize("command", [
        ["sr", "--scale", "2", "--steps", "3"],
        ["deblur", "--kernel", "gaussian:1.0", "--steps", "3"],
        ["denoise", "--sigma", "25"],
        ["denoise", "--sigma", "25", "--solver", "pnp_admm", "--steps", "3"],
    ])
    def test_commands(self, tmp_path, command):
        image(tmp_path / "p.png", 16, 16)
        res = invoke(command[0], tmp_path / "p.png", *command[1:], "-q")
        assert res.exit_code == 0, res.output
        out = cv2.imread(str(tmp_path / "p_restored.png"))
        assert out.shape == ((32, 32, 3) if command[0] == "sr" else (16, 16, 3))
