"""Region-wise inpainting (pnp_restore.regions) and the CLI's planned restoration (cli.plan.restore_planned)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnp_restore import priors, restore
from pnp_restore.cli.plan import restore_planned, solve_regions
from pnp_restore.errors import ShapeError
from pnp_restore.operators import Inpainting, random_mask
from pnp_restore.regions import Box, default_margin, hole_regions, merge_boxes, missing_pixels, restore_regions


def _holes(h: int, w: int, *boxes: tuple[int, int, int, int]) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    for t, l, b, r in boxes:
        m[t:b, l:r] = True
    return m


def test_far_holes_get_their_own_regions_clipped_to_the_image():
    m = _holes(200, 300, (10, 20, 15, 30), (150, 250, 160, 255))
    assert hole_regions(m, 8) == [Box(2, 12, 23, 38), Box(142, 242, 168, 263)]
    assert hole_regions(m, 30) == [Box(0, 0, 45, 60), Box(120, 220, 190, 285)]
    assert hole_regions(torch.zeros(5, 5, dtype=torch.bool), 3) == []


def test_holes_closer_than_twice_the_margin_share_a_region():
    m = _holes(100, 100, (40, 10, 45, 15), (40, 30, 45, 35))  # 15 pixels apart
    assert hole_regions(m, 8) == [Box(32, 2, 53, 43)]
    assert len(hole_regions(m, 7)) == 2  # 14 + 1 < 15: the dilated holes do not touch


def test_regions_whose_boxes_overlap_are_merged():
    # an L-shaped hole and a dot inside its bounding box but far from its pixels
    m = _holes(200, 200, (10, 10, 100, 14), (96, 10, 100, 100), (20, 80, 22, 82))
    assert hole_regions(m, 2) == [Box(8, 8, 102, 102)]
    assert merge_boxes([Box(0, 0, 10, 10), Box(20, 20, 30, 30), Box(5, 5, 25, 25)]) == [Box(0, 0, 30, 30)]
    assert merge_boxes([Box(0, 0, 10, 10), Box(10, 0, 20, 10)]) == [Box(0, 0, 10, 10), Box(10, 0, 20, 10)]


def test_dense_holes_fall_back_to_the_whole_image():
    mask = random_mask((64, 80), missing=0.7, seed=0)
    assert hole_regions(missing_pixels(mask), 4) == [Box(0, 0, 64, 80)]


def test_missing_pixels_of_soft_and_per_sample_masks():
    mask = torch.ones(2, 1, 4, 5)
    mask[0, 0, 1, 2] = 0.5  # partly observed: must be restored too
    mask[1, 0, 3, 4] = 0.0
    assert missing_pixels(mask).nonzero().tolist() == [[1, 2], [3, 4]]


def _blur(y: torch.Tensor, k: int) -> torch.Tensor:
    """k passes of a 3x3 box filter with replicate padding: each output pixel sees a radius of k."""
    for _ in range(k):
        y = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return y


def test_regions_with_enough_context_equal_the_whole_image_and_keep_the_rest():
    """A restoration of receptive radius 5: regions with margin >= 5 reproduce the whole-image result in
    the holes (no seam), and pixels outside every region are the input bit for bit."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 90, 120, generator=g)
    missing = _holes(90, 120, (10, 10, 20, 25), (60, 90, 70, 100))
    whole = _blur(y, 5)
    seen = []
    out = restore_regions(y, missing, lambda crop, box, k: seen.append((box, k)) or _blur(crop, 5), margin=5)
    assert [k for _, k in seen] == [0, 1] and all(b.area < 40 * 40 for b, _ in seen)
    inside = torch.zeros(90, 120, dtype=torch.bool)
    for box, _ in seen:
        inside[box.slices] = True
    assert torch.equal(out[..., missing], whole[..., missing])
    assert torch.equal(out[..., ~inside], y[..., ~inside])
    short = restore_regions(y, missing, lambda crop, box, k: _blur(crop, 5), margin=2)
    assert not torch.allclose(short[..., missing], whole[..., missing])  # too little context: it shows
    with pytest.raises(ShapeError):
        restore_regions(y, missing[:10], lambda crop, box, k: crop, margin=5)


@pytest.fixture(scope="module")
def prior():
    return priors.load("builtin")


def _problem(h: int, w: int, batch: int = 1):
    g = torch.Generator().manual_seed(1)
    x = F.avg_pool2d(torch.rand(batch, 3, h, w, generator=g), 5, 1, 2)
    mask = torch.ones(h, w)
    mask[6:12, 8:16] = 0
    mask[h - 14 : h - 8, w - 18 : w - 10] = 0
    op = Inpainting(mask)
    return op(x), op


def test_planned_restoration_equals_restore_when_one_region_covers_the_image(prior):
    y, op = _problem(40, 48)
    x, info = restore_planned(y, op, prior, solver="ddrm", steps=2, seed=3, sigma_y=0.0, available=None)
    ref = restore(y, op, prior, "ddrm", steps=2, seed=3)
    assert torch.equal(x, ref) and info["regions"] == 1 and info["tile"] is None and info["nfe"] == 2


def test_planned_restoration_by_regions(prior):
    """Two far holes: two sub-problems; the bar sees steps x regions from the first call and full-size x0;
    pixels outside the regions are y exactly; a batch equals the single runs (seeds s, s + 1)."""
    y, op = _problem(64, 96, batch=2)
    calls = []

    def bar(i: dict) -> None:
        calls.append((i["steps"], i["region"], tuple(i["x0"].shape), i["nfe"]))

    x, info = restore_planned(y, op, prior, solver="ddrm", steps=2, seed=5, sigma_y=0.0, margin=6, available=None,
                              callback=bar)
    boxes = solve_regions(op, 6)
    assert len(boxes) == 2 and info["regions"] == 2 and info["nfe"] == 4 and info["steps"] == 2
    assert calls == [(4, 0, (2, 3, 64, 96), 1), (4, 0, (2, 3, 64, 96), 2), (4, 1, (2, 3, 64, 96), 3),
                     (4, 1, (2, 3, 64, 96), 4)]
    inside = torch.zeros(64, 96, dtype=torch.bool)
    for b in boxes:
        inside[b.slices] = True
    assert torch.equal(x[..., ~inside], y[..., ~inside])
    assert not torch.equal(x[..., inside], y[..., inside])
    for i in range(2):
        xi, _ = restore_planned(y[i : i + 1], op, prior, solver="ddrm", steps=2, seed=5 + i, margin=6, available=None)
        torch.testing.assert_close(xi, x[i : i + 1], rtol=0, atol=1e-6)


def test_a_noisy_photo_is_restored_whole(prior):
    """sigma_y > 0: the kept pixels are to be denoised too, so the whole image is one problem."""
    y, op = _problem(64, 96)
    _, info = restore_planned(y, op, prior, solver="ddrm", steps=2, seed=5, sigma_y=0.02, margin=6, available=None)
    assert info["regions"] == 1 and info["nfe"] == 2


def test_nothing_to_fill_returns_the_input(prior):
    op = Inpainting(torch.ones(16, 16))
    y = op(torch.rand(1, 3, 16, 16))
    x, info = restore_planned(y, op, prior, solver="ddrm", steps=2, seed=0, available=None)
    assert torch.equal(x, y) and info["nfe"] == 0 and info["regions"] == 0


def test_default_margin_covers_twice_the_receptive_radius():
    assert default_margin() >= 2 * 66  # the built-in UNet's receptive radius (module docstring of regions)

    class Wide:
        receptive_radius = 100

    assert default_margin(Wide()) == 200


def test_region_boxes_of_a_large_mask_are_fast_to_find():
    """A 24-megapixel mask with five local holes: a handful of regions (the dilation is O(pixels))."""
    m = np.zeros((4000, 6000), dtype=bool)
    for cy, cx in [(500, 500), (900, 5000), (2000, 3000), (3500, 800), (3600, 5600)]:
        m[cy - 60 : cy + 60, cx - 60 : cx + 60] = True
    boxes = hole_regions(m, default_margin())
    assert len(boxes) == 5 and all(b.area == (120 + 2 * default_margin()) ** 2 for b in boxes)


def test_dense_holes_restore_the_whole_image_in_tiles_when_memory_is_short(prior):
    """70 % random pixels missing: one region, the whole image; with too little memory for the network
    on all of it, the prior runs in tiles (the largest that fits), exactly as a TiledPrior would."""
    from pnp_restore.memory import calibrate
    from pnp_restore.priors.wrappers import TiledPrior, default_overlap

    g = torch.Generator().manual_seed(2)
    op = Inpainting(random_mask((200, 200), missing=0.7, seed=0))
    y = op(torch.rand(1, 3, 200, 200, generator=g))
    model = calibrate(prior, "ddrm")
    available = int(model.peak((200, 200), tile=128) / 0.85) + 1
    x, info = restore_planned(y, op, prior, solver="ddrm", steps=2, seed=1, available=available)
    assert info["regions"] == 1 and info["tile"] == 128
    ref = restore(y, op, TiledPrior(prior, tile=128, overlap=default_overlap(prior, 128)), "ddrm", steps=2, seed=1)
    assert torch.equal(x, ref)
