"""Benchmark protocols: ids, fields and degradations seeded per image (not by run order)."""

from __future__ import annotations

import pytest
import torch

from pnp_restore.benchmarks import protocols
from pnp_restore.errors import ConfigError
from pnp_restore.tasks import Task

KEYS = ["Set5/baby", "Set5/bird", "CBSD68/101085"]


def _images(n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_task_ids_and_levels():
    ps = protocols.expand("sr4_bicubic,box_inpaint@0.05", size=64)
    assert [p.id for p in ps] == ["sr4_bicubic@0", "sr4_bicubic@0.025", "sr4_bicubic@0.05", "box_inpaint@0.05"]
    assert len(protocols.expand("all")) == len(protocols.TASKS) * 3
    p = protocols.get("gaussian_deblur@0.025")
    assert (p.kernel_size, p.kernel_std, p.padding, p.sigma_y, p.size) == (61, 3.0, "circular", 0.025, 256)
    assert set(p.fields()) >= {"name", "version", "kind", "sigma_y", "size", "crop", "padding"}
    with pytest.raises(ConfigError, match="unknown benchmark task"):
        protocols.get("sr3@0")
    with pytest.raises(ConfigError, match="bad noise level"):
        protocols.get("denoise@x")


def test_protocols_speak_the_task_vocabulary():
    tasks = {name: p.task for name, p in protocols.TASKS.items()}
    assert all(isinstance(t, Task) for t in tasks.values())
    assert tasks["sr4_avgpool"] is Task.SUPER_RESOLUTION and tasks["random_inpaint_92"] is Task.INPAINTING
    assert protocols.get("motion_deblur").paper_task is Task.MOTION_DEBLUR
    assert protocols.get("box_inpaint_center").paper_task == "inpainting"  # a str-enum: keys the papers' tables
    assert protocols.get("denoise").task is Task.DENOISING and protocols.get("denoise").paper_task is None
    with pytest.raises(ConfigError, match="unknown protocol kind"):
        protocols.get("denoise", kind="wavelet").operator(KEYS, (2, 3, 64, 64))


@pytest.mark.parametrize("task", sorted(protocols.TASKS))
def test_degradation_same_across_calls_batches_and_order(task):
    p = protocols.get(task + "@0.05", size=64)
    x = _images()
    op1, y1 = p.degrade(x, KEYS)
    _, y2 = p.degrade(x, KEYS)
    assert torch.equal(y1, y2)  # same in every run / for every solver
    single = torch.cat([p.degrade(x[i : i + 1], KEYS[i : i + 1])[1] for i in range(3)])
    assert torch.equal(y1, single)  # independent of the batch composition
    _, y_rev = p.degrade(x.flip(0), KEYS[::-1])
    assert torch.equal(y1, y_rev.flip(0))  # independent of the order
    # the noise really has the protocol's std (around the measuring operator: JPEG/quantisation round exactly)
    residual = y1 - p.measurement_operator(KEYS, tuple(x.shape))(x)
    assert residual.std().item() == pytest.approx(0.05, rel=0.1)


def test_random_parts_differ_between_images_and_share_noise_across_levels():
    x = _images(2)
    x = torch.cat([x[:1], x[:1]])  # same pixels, two names
    op, _ = protocols.get("random_inpaint_92@0", size=64).degrade(x, KEYS[:2])
    assert not torch.equal(op.mask[0], op.mask[1])
    assert (op.mask == 0).double().mean().item() == pytest.approx(0.92, abs=1e-3)
    a = protocols.get("denoise@0.025", size=64).degrade(x, KEYS[:2])[1] - x
    b = protocols.get("denoise@0.05", size=64).degrade(x, KEYS[:2])[1] - x
    assert torch.allclose(2 * a, b, atol=1e-12)  # one noise pattern at two strengths
    m = protocols.get("motion_deblur@0", size=64).operator(KEYS[:2], tuple(x.shape))
    assert m.kernel.shape == (2, 1, 61, 61) and not torch.equal(m.kernel[0], m.kernel[1])


def test_box_scaled_to_image_size():
    x = _images(2, 64)
    for name, centred in (("box_inpaint", False), ("box_inpaint_center", True)):
        op, _ = protocols.get(name + "@0", size=64).degrade(x, KEYS[:2])
        holes = (op.mask[:, 0] == 0).nonzero()
        for i in range(2):
            rows, cols = holes[holes[:, 0] == i, 1], holes[holes[:, 0] == i, 2]
            assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (32, 32)  # 128/256 of 64 px
            assert rows.min() >= 4 and cols.min() >= 4  # DPS margin 16/256 of 64 px
            if centred:
                assert (rows.min().item(), cols.min().item()) == (16, 16)


def test_sr_shape_and_dtype():
    x = _images(1).float()
    _, y = protocols.get("sr4_avgpool@0", size=64).degrade(x, KEYS[:1])
    assert y.shape == (1, 3, 16, 16) and y.dtype == torch.float32
    assert torch.allclose(y, torch.nn.functional.avg_pool2d(x, 4), atol=1e-6)


def test_nonlinear_protocols_record_their_settings_and_measure_exactly():
    """Phase retrieval (oversampling 2, no best-of), JPEG 10 and 3-bit quantisation (y from the exact codec, the
    solver's operator smooth), HDR (scale 2); linear protocols' rows keep their fields (no nonlinear keys)."""
    from pnp_restore.operators import HDR, JPEG, PhaseRetrieval, Quantization

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expect = {"phase_retrieval@0.025": (PhaseRetrieval, {"oversample": 2.0, "best_of": 1}),
              "jpeg10@0": (JPEG, {"quality": 10, "subsampling": "4:2:0", "rounding": "exact"}),
              "hdr@0.025": (HDR, {"clip_scale": 2.0}),
              "quantization3@0": (Quantization, {"bits": 3, "rounding": "exact"})}
    for task, (cls, fields) in expect.items():
        p = protocols.get(task, size=32)
        op, y = p.degrade(x, ["d/0"])
        assert isinstance(op, cls) and not op.linear and fields.items() <= p.fields().items()
        if p.rounding == "exact":
            assert op.rounding == "smooth" and torch.equal(y, p.measurement_operator(["d/0"], x.shape)(x))
            assert not torch.equal(y, op(x))
    assert "oversample" not in protocols.get("denoise").fields()


def test_linear_only_solvers_and_baselines_skip_nonlinear_tasks():
    from pnp_restore.benchmarks.runner import _applies, resolve_solvers

    fns = resolve_solvers(["ddrm", "dps", "pinv", "opencv_telea"])
    phase, box = protocols.get("phase_retrieval@0", size=32), protocols.get("box_inpaint_center@0", size=32)
    assert [n for n, (fn, *_) in fns.items() if _applies(n, fn, phase)] == ["dps"]
    assert [n for n, (fn, *_) in fns.items() if _applies(n, fn, box)] == ["ddrm", "dps", "pinv", "opencv_telea"]
