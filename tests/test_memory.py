"""The memory model (pnp_restore.memory) and the CLI's memory check (cli.plan.check_memory)."""

from __future__ import annotations

import pytest
import torch

from pnp_restore import priors
from pnp_restore.cli import plan
from pnp_restore.cli.settings import Common
from pnp_restore.errors import ConfigError
from pnp_restore.memory import (
    DEFAULT_MODEL, MIN_TILE, MemoryModel, advice, calibrate, is_out_of_memory, measure_peak, plan_tile,
)  # fmt: skip
from pnp_restore.operators import Inpainting

GiB = 2**30


def test_peak_tracker_counts_live_tensors_once():
    def work():
        a = torch.empty(1000)  # 4000 B
        b = torch.empty(2000)  # 8000 B: 12000 live
        a.add_(1)  # in place: same storage
        v = b[:10]  # a view: same storage
        del a
        c = torch.empty(500)  # a is gone: 8000 + 2000
        return b, c, v

    assert measure_peak(work) == 12000
    x = torch.ones(100)
    assert measure_peak(lambda: x.mul_(2)) == 0  # existing tensors do not count


@pytest.fixture(scope="module")
def builtin():
    return priors.load("builtin")


def test_network_activations_scale_with_pixels(builtin):
    """The calibration at 64x64 extrapolates: bytes per pixel at 32^2 and 128^2 agree within 2 %."""
    per_pixel = []
    for s in (32, 128):
        x = torch.rand(1, 3, s, s)
        with torch.inference_mode():
            per_pixel.append(measure_peak(lambda: builtin.denoise(x, 0.5)) / s**2)
    model = calibrate(builtin, "ddrm")
    for v in per_pixel:
        assert abs(v / model.net_bytes - 1) < 0.02


def test_the_cli_default_model_is_not_optimistic_for_the_builtin_prior(builtin):
    """check_memory runs before the prior is loaded, with DEFAULT_MODEL: it must cover the real calibration."""
    model = calibrate(builtin, "ddrm")
    assert model.solver_bytes <= DEFAULT_MODEL.solver_bytes <= 1.2 * model.solver_bytes
    assert model.net_bytes <= DEFAULT_MODEL.net_bytes <= 1.2 * model.net_bytes
    assert calibrate(builtin, "ddrm") is model  # cached per architecture
    grad = calibrate(builtin, "dps")  # differentiated through: activations kept for the backward pass
    assert grad.net_bytes > 2 * model.net_bytes


def test_tiles_are_chosen_only_when_needed():
    model = MemoryModel(solver_bytes=200, net_bytes=1600)
    assert plan_tile(model, (512, 512), 8 * GiB) is None
    assert plan_tile(model, (512, 512), None) is None
    t = plan_tile(model, (4000, 6000), 16 * GiB)
    assert t is not None and MIN_TILE <= t <= 1024 and model.peak((4000, 6000), tile=t) <= 0.85 * 16 * GiB
    assert plan_tile(model, (4000, 6000), 16 * GiB, tile=300) == 300  # the user's --tile wins
    with pytest.raises(ConfigError, match="use --tile 256"):  # smaller tiles would fit
        plan_tile(model, (2000, 3000), 4 * GiB, tile=1024)
    with pytest.raises(ConfigError, match="downscale"):  # the solver's state alone does not fit: tiles do not help
        plan_tile(model, (4000, 6000), 8 * GiB, tile=1024)
    # a local hole in a huge photo: the solver works on a small region, the whole region fits
    assert plan_tile(model, (4000, 6000), 8 * GiB, solved=400 * 400) is None
    # the peak grows with the batch and the solved pixels, is capped by the tile
    assert model.peak((100, 100), batch=2) > model.peak((100, 100))
    assert model.peak((1000, 1000), tile=128) < model.peak((1000, 1000))


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"batch": 4}, "use --batch-size 1"),
    ({}, "downscale or crop the image"),
    ({"device": "cuda"}, "or use --device cpu"),
])
def test_refusals_are_one_line_saying_what_to_do(kwargs, says):
    model = MemoryModel(solver_bytes=200, net_bytes=1600)
    with pytest.raises(ConfigError) as err:
        plan_tile(model, (4000, 6000), 2 * GiB, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and says in msg and msg.startswith("restoring ") and "GiB are available" in msg


def test_advice_goes_from_batch_to_tile_to_image():
    assert advice(2, None) == "use --batch-size 1 and --tile 256"
    assert advice(1, None) == "use --tile 256"
    assert advice(1, 256) == f"use --tile {MIN_TILE}"
    assert advice(1, MIN_TILE).startswith("downscale")


def test_check_memory_plans_tiles_and_regions():
    common = Common(solver="ddrm", device="cpu", quiet=True)
    photo = {(1, 3, 4000, 6000): 1}
    assert plan.check_memory(photo, common, None) == {}
    with pytest.raises(ConfigError, match=r"6000x4000 at once needs about \d+\.\d GiB .*downscale"):
        plan.check_memory(photo, common, 8 * GiB)  # the whole photo's solver state alone is too much
    tile = plan.check_memory(photo, common, 32 * GiB)[(1, 3, 4000, 6000)]
    assert tile is not None and tile <= 1024  # fits, the network in tiles
    mask = torch.ones(4000, 6000)
    mask[1000:1100, 2000:2100] = 0
    mask[3000:3050, 5000:5080] = 0
    op = Inpainting(mask)
    # local holes: the solver works on two small regions: fits in 8 GiB, whole regions
    assert plan.check_memory(photo, common, 8 * GiB, {(4000, 6000): op}) == {(1, 3, 4000, 6000): None}
    assert len(plan.solve_regions(op)) == 2


def test_out_of_memory_anywhere_in_a_run_is_one_line(builtin):
    op = Inpainting(torch.ones(16, 16))
    op.mask[..., 4:8, 4:8] = 0
    y = op(torch.rand(1, 3, 16, 16))

    for failure in (RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate "
                                 "memory: you tried to allocate 1099511627776 bytes. Error code 12"),
                    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), MemoryError()):
        assert is_out_of_memory(failure)

        def broken(*args, _failure=failure, **kwargs):
            raise _failure

        with pytest.raises(ConfigError) as err:
            plan.restore_planned(y, op, builtin, solver="ddrm", steps=2, seed=0, available=None, restore=broken)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("ran out of memory restoring 1 image(s) of 16x16") and "use --" in msg
    assert not is_out_of_memory(RuntimeError("shape mismatch"))

    def other(*args, **kwargs):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        plan.restore_planned(y, op, builtin, solver="ddrm", steps=2, seed=0, available=None, restore=other)
