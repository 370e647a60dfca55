"""Baselines without a diffusion model: pseudo-inverse, ADMM-TV, PnP-BM3D and the classical single-task tools."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pnp_restore.benchmarks import baselines, metrics, presets, protocols
from pnp_restore.benchmarks.report import method
from pnp_restore.errors import ConfigError, OperatorError


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


# -- classical single-task baselines ---------------------------------------------------------
def _smooth(size: int = 32) -> torch.Tensor:
    """A smooth RGB image without edges (the step of :func:`_image` sits on a 4 px block border,
    which favours nearest-neighbour upsampling over any interpolator)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = torch.stack([0.5 + 0.3 * torch.sin(4 * xx), 0.5 + 0.3 * torch.cos(3 * yy), 0.5 + 0.2 * torch.sin(3 * xx + 2 * yy)])
    return x[None].double()


#: (baseline, task, image size, dB over the better of the degraded input and pinv). Measured
#: margins (this image, the measurement of "synthetic/0"): inpainting +18.8 to +27.7 dB, SR +3.3
#: (bicubic) / +2.8 dB (Lanczos), Wiener +2.4 / +7.4 dB, RL +2.5 / +4.1 dB (gaussian / motion),
#: NLM +6.5 dB, BM3D +12.3 dB.
CASES = [
    ("opencv_telea", "random_inpaint_70@0.025", 32, 10.0),
    ("opencv_ns", "random_inpaint_70@0.025", 32, 10.0),
    ("biharmonic", "random_inpaint_70@0.025", 32, 10.0),
    ("opencv_telea", "box_inpaint_center@0.025", 32, 10.0),
    ("opencv_ns", "box_inpaint_center@0.025", 32, 10.0),
    ("biharmonic", "box_inpaint_center@0.025", 32, 10.0),
    ("bicubic", "sr4_bicubic@0.025", 32, 1.0),
    ("lanczos", "sr4_bicubic@0.025", 32, 1.0),
    ("wiener", "gaussian_deblur@0.025", 64, 1.0),
    ("wiener", "motion_deblur@0.025", 64, 3.0),
    ("richardson_lucy", "gaussian_deblur@0.025", 64, 1.0),
    ("richardson_lucy", "motion_deblur@0.025", 64, 2.0),
    ("nlm", "denoise@0.025", 32, 3.0),
    ("bm3d", "denoise@0.025", 32, 6.0),
]
SINGLE_TASK = sorted({c[0] for c in CASES})
OTHER_TASK = {"opencv_telea": "denoise@0", "opencv_ns": "sr4_avgpool@0", "biharmonic": "gaussian_deblur@0",
              "bicubic": "random_inpaint_70@0", "lanczos": "denoise@0", "wiener": "sr4_bicubic@0",
              "richardson_lucy": "box_inpaint_center@0", "nlm": "random_inpaint_70@0", "bm3d": "sr4_bicubic@0"}  # fmt: skip


def _needs(name: str) -> None:
    if name in ("bm3d", "pnp_bm3d"):
        pytest.importorskip("bm3d", reason=f"{name} needs the optional bm3d package")


def _smooth_case(task: str, size: int, n: int = 1):
    x = _smooth(size)
    x = torch.cat([x if i % 2 == 0 else x.flip(-1) for i in range(n)])
    op, y = protocols.get(task, size=size).degrade(x, [f"synthetic/{i}" for i in range(n)])
    return x, op, y


@pytest.mark.parametrize("name,task,size,gain", CASES)
def test_classical_baseline_beats_input_and_pinv(name, task, size, gain):
    _needs(name)
    x, op, y = _smooth_case(task, size)
    shown = torch.nn.functional.interpolate(y, size=(size, size), mode="nearest") if y.shape != x.shape else y
    ref = max(metrics.psnr(shown, x)[0], metrics.psnr(op.pinv(y), x)[0])
    out = baselines.BASELINES[name](y, op, sigma_y=protocols.get(task).sigma_y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert metrics.psnr(out, x)[0] > ref + gain


@pytest.mark.parametrize("name", SINGLE_TASK)
def test_single_task_baseline_refuses_other_operators(name):
    x, op, y = _smooth_case(OTHER_TASK[name], 64)
    assert not baselines.supports(name, op)
    with pytest.raises(OperatorError) as e:
        baselines.BASELINES[name](y, op, sigma_y=0.0)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and type(op).__name__ in msg and "pinv" in msg


def test_supports_matches_what_runs():
    """For every baseline and task kind, supports() is False exactly when the call raises OperatorError,
    so a runner can skip those pairs before running them."""
    names = [n for n in baselines.BASELINES if n not in baselines.available() and n not in ("admm_tv", "pnp_bm3d")]
    for task in ["sr4_bicubic@0", "box_inpaint_center@0", "gaussian_deblur@0", "denoise@0"]:
        x, op, y = _smooth_case(task, 64)
        for name in names:
            try:
                baselines.BASELINES[name](y, op, sigma_y=0.0)
                raised = False
            except OperatorError:
                raised = True
            assert baselines.supports(name, op) is not raised, (name, task)
    assert baselines.supports("pinv", op) and baselines.supports("admm_tv", op) and baselines.supports("pnp_bm3d", op)
    with pytest.raises(ConfigError, match="unknown baseline"):
        baselines.supports("nope", op)


#: one task per baseline for the batch test; per-sample masks and kernels where the task has them.
BATCH = {"opencv_telea": "random_inpaint_70@0.025", "opencv_ns": "box_inpaint@0.025", "biharmonic": "random_inpaint_70@0.025",
         "bicubic": "sr4_bicubic@0.025", "lanczos": "sr4_bicubic@0.025", "wiener": "motion_deblur@0.025",
         "richardson_lucy": "motion_deblur@0.025", "nlm": "denoise@0.05", "bm3d": "denoise@0.05"}  # fmt: skip


@pytest.mark.parametrize("name", SINGLE_TASK)
def test_classical_batch_equals_single_images(name):
    _needs(name)
    task = BATCH[name]
    size = 64 if "deblur" in task else 32
    x, op, y = _smooth_case(task, size, n=2)
    kw = {"steps": 5} if name == "richardson_lucy" else {}
    both = baselines.BASELINES[name](y, op, sigma_y=protocols.get(task).sigma_y, **kw)
    for i in range(2):
        op_i, y_i = protocols.get(task, size=size).degrade(x[i : i + 1], [f"synthetic/{i}"])
        assert torch.equal(y_i, y[i : i + 1])
        one = baselines.BASELINES[name](y_i, op_i, sigma_y=protocols.get(task).sigma_y, **kw)
        if name == "bm3d":
            # the bm3d package computes in float32 and is not reproducible: two calls on one array differ by
            # about 5e-7 (max) and, rarely, a block match changes and a few pixels move further (seen once, > 1e-5)
            diff = (both[i : i + 1] - one).abs()
            assert diff.mean() < 1e-5 and diff.max() < 1e-2
        else:
            assert torch.allclose(both[i : i + 1], one, atol=1e-12, rtol=0), name


@pytest.mark.parametrize(
    "name,dtype",
    [(n, d) for n in SINGLE_TASK for d in (torch.float32, torch.float64) if (n, d) != ("bm3d", torch.float64)],
)  # bm3d: float32 only (about 3 s a call)
def test_classical_dtype_and_device_preserved(name, dtype):
    _needs(name)
    task = BATCH[name]
    size = 64 if "deblur" in task else 32
    _, op, y = _smooth_case(task, size)
    y = y.to(dtype)
    kw = {"steps": 3} if name == "richardson_lucy" else {}
    out = baselines.BASELINES[name](y, op, sigma_y=protocols.get(task).sigma_y, **kw)
    assert out.dtype == dtype and out.device == y.device
    assert out.shape == op.x_shape(tuple(y.shape))


def test_opencv_inpaint_stays_in_range_on_unit_scale_images():
    """Telea's weights assume the 0..255 scale; fed [0, 1] floats directly it overshoots to [-0.6, 2]."""
    x, op, y = _smooth_case("box_inpaint_center@0", 32)
    for name in ("opencv_telea", "opencv_ns"):
        out = baselines.BASELINES[name](y, op)
        assert out.min() > 0.1 and out.max() < 0.9, name  # the image spans [0.2, 0.8]
        hole = op.mask.expand_as(x) == 0
        assert torch.allclose(out[~hole], y[~hole], atol=1e-5)  # observed pixels kept (float32 round trip)


def test_richardson_lucy_even_kernel_keeps_the_centre():
    """An even kernel's centre is k // 2 (Blur's convention): RL must not shift the image."""
    from pnp_restore.operators import Blur

    x = _smooth(32)
    k = torch.zeros(4, 4, dtype=torch.float64)
    k[1:3, 1:3] = 1
    op = Blur(k)
    out = baselines.richardson_lucy(op(x), op, steps=50)
    assert metrics.psnr(out, x)[0] > metrics.psnr(op(x), x)[0] + 3


@pytest.mark.parametrize("sigma", [0.0])
def test_denoisers_return_y_without_noise(sigma):
    _, op, y = _smooth_case("denoise@0", 32)
    assert torch.equal(baselines.nlm(y, op, sigma_y=sigma), y)
    if "bm3d" not in baselines.available():
        assert torch.equal(baselines.bm3d(y, op, sigma_y=sigma), y)


def test_bm3d_baselines_missing_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d -> ImportError
    assert set(baselines.available()) == {"pnp_bm3d", "bm3d"}
    _, op, y = _smooth_case("denoise@0.05", 32)
    with pytest.raises(ConfigError, match="pip install bm3d"):
        baselines.bm3d(y, op, sigma_y=0.05)


def test_quick_preset_baselines_fit_its_tasks():
    """Every baseline of the quick preset is a known baseline, and each single-task one has a task there."""
    quick = presets.get("quick")
    base = [s for s in quick["solvers"] if baselines.is_baseline(s)]
    assert {"opencv_telea", "opencv_ns", "biharmonic", "bicubic", "lanczos", "wiener", "richardson_lucy"} <= set(base)
    for name in base:
        ops = [protocols.get(t, size=quick["size"]).operator(["k/0"], (1, 3, quick["size"], quick["size"])) for t in quick["tasks"]]
        assert any(baselines.supports(name, op) for op in ops), name


def test_report_labels_baselines():
    row = {"solver": "wiener", "prior": "none", "steps": None, "dtype": "float32"}
    assert method(row) == "wiener (baseline)"
    assert method({**row, "dtype": "float64"}) == "wiener, float64 (baseline)"
    assert method({**row, "solver": "ddrm", "prior": "builtin", "steps": 20}) == "ddrm + builtin, 20 steps"
