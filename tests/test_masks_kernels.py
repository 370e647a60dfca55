"""Mask generators and blur kernels."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from pnp_restore.errors import ConfigError, ShapeError
from pnp_restore.operators import box_mask, gaussian_kernel, mask_from_image, motion_kernel, random_mask


def _box_corner(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the zero region of a (H, W) mask."""
    rows = torch.nonzero((mask == 0).any(1)).flatten()
    cols = torch.nonzero((mask == 0).any(0)).flatten()
    return int(rows[0]), int(cols[0]), len(rows), len(cols)


def test_box_mask_center():
    m = box_mask(size=(64, 48), box=(20, 10), position="center")
    assert m.shape == (1, 1, 64, 48) and m.dtype == torch.float32
    assert _box_corner(m[0, 0]) == (22, 19, 20, 10)
    assert int((m == 0).sum()) == 200 and set(m.unique().tolist()) == {0.0, 1.0}


def test_box_mask_random_follows_dps_protocol():
    """DPS: 128x128 box on 256x256, top-left uniform in [16, 256 - 16 - 128) = [16, 112)."""
    m = box_mask(size=256, box=128, seed=0, batch=300)
    corners = [_box_corner(m[i, 0]) for i in range(300)]
    tops, lefts = [c[0] for c in corners], [c[1] for c in corners]
    assert all(c[2:] == (128, 128) for c in corners)
    assert min(tops) >= 16 and max(tops) <= 111 and min(lefts) >= 16 and max(lefts) <= 111
    assert min(tops) < 20 and max(tops) > 107  # the whole range is used
    assert len(set(tops)) > 50


def test_box_mask_seeds_per_sample():
    batch = box_mask(size=64, box=16, margin=4, seed=10, batch=3)
    for i in range(3):
        assert torch.equal(batch[i : i + 1], box_mask(size=64, box=16, margin=4, seed=10 + i))
    assert not torch.equal(batch[0], batch[1])
    assert torch.equal(box_mask(size=64, box=16, seed=3), box_mask(size=64, box=16, seed=3))


def test_box_mask_errors():
    with pytest.raises(ConfigError, match="no room"):
        box_mask(size=128, box=100, margin=16)
    with pytest.raises(ConfigError, match="does not fit"):
        box_mask(size=32, box=40, position="center")
    with pytest.raises(ConfigError):
        box_mask(position="corner")


@pytest.mark.parametrize("missing", [0.0, 0.3, 0.7, 0.92])
def test_random_mask_ratio(missing):
    m = random_mask(size=(50, 40), missing=missing, seed=1, batch=2)
    assert m.shape == (2, 1, 50, 40)
    dropped = (m == 0).flatten(1).float().mean(1)
    assert torch.allclose(dropped, torch.full((2,), missing), atol=0.01)
    assert set(m.unique().tolist()) <= {0.0, 1.0}


def test_random_mask_seeds():
    batch = random_mask(32, 0.5, seed=4, batch=2)
    assert torch.equal(batch[1:], random_mask(32, 0.5, seed=5))
    assert not torch.equal(batch[0], batch[1])
    with pytest.raises(ConfigError):
        random_mask(32, 1.5)


def test_mask_from_image_file(tmp_path):
    img = np.zeros((20, 30), np.uint8)
    img[:, 10:] = 255  # right part white = observed
    cv2.imwrite(str(tmp_path / "m.png"), img)
    m = mask_from_image(tmp_path / "m.png")
    assert m.shape == (1, 1, 20, 30)
    assert float(m[..., :10].sum()) == 0 and bool((m[..., 10:] == 1).all())
    assert torch.equal(mask_from_image(str(tmp_path / "m.png"), invert=True), 1 - m)
    # colour with alpha, 16 bit
    rgba = np.zeros((20, 30, 4), np.uint16)
    rgba[:, 10:, :3] = 65535
    cv2.imwrite(str(tmp_path / "m16.png"), rgba)
    assert torch.equal(mask_from_image(tmp_path / "m16.png"), m)
    with pytest.raises(ConfigError, match="cannot read"):
        mask_from_image(tmp_path / "missing.png")


def test_mask_from_array():
    a = np.zeros((4, 5, 3), np.uint8)
    a[1:3] = 200
    a[3] = 255
    m = mask_from_image(a)
    assert m.shape == (1, 1, 4, 5) and int(m.sum()) == 5  # only pure white is observed by default
    assert int(mask_from_image(a, threshold=0.5).sum()) == 15
    assert torch.equal(mask_from_image(torch.tensor([[0.2, 0.8]]), threshold=0.5), torch.tensor([[[[0.0, 1.0]]]]))
    with pytest.raises(ShapeError):
        mask_from_image(np.zeros(5))
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="threshold"):
            mask_from_image(a, threshold=bad)


def test_mask_from_image_antialiased_edges_are_missing():
    """A stroke drawn with an anti-aliased brush (black = missing): its grey rim is damaged, so missing."""
    img = np.full((21, 21), 255, np.uint8)
    cv2.circle(img, (10, 10), 5, 0, -1, lineType=cv2.LINE_AA)
    grey = (img > 0) & (img < 255)
    assert grey.sum() > 10
    m = mask_from_image(img)[0, 0].numpy()
    assert (m[grey] == 0).all() and (m[img == 255] == 1).all() and (m[img == 0] == 0).all()
    inv = mask_from_image(255 - img, invert=True)[0, 0].numpy()  # white = missing, as the CLI's masks
    assert np.array_equal(inv, m)


def test_gaussian_kernel():
    k = gaussian_kernel(61, 3.0)
    assert k.shape == (61, 61) and k.dtype == torch.float64
    assert float(k.sum()) == pytest.approx(1, abs=1e-12)
    r2 = (torch.arange(61, dtype=torch.float64) - 30) ** 2
    ref = torch.exp(-(r2[:, None] + r2[None, :]) / (2 * 9.0))
    assert torch.allclose(k, ref / ref.sum(), atol=1e-14)
    with pytest.raises(ConfigError):
        gaussian_kernel(5, 0.0)
    with pytest.raises(ConfigError):
        gaussian_kernel(0, 1.0)


def _anisotropy(k: torch.Tensor) -> float:
    """Ratio of the minor to the major std of the kernel's mass."""
    i, j = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in k.shape), indexing="ij")
    mi, mj = (k * i).sum(), (k * j).sum()
    cov = torch.tensor(
        [[(k * (i - mi) ** 2).sum(), (k * (i - mi) * (j - mj)).sum()], [0.0, (k * (j - mj) ** 2).sum()]]
    )
    cov[1, 0] = cov[0, 1]
    ev = torch.linalg.eigvalsh(cov)
    return math.sqrt(ev[0] / ev[1])


def test_motion_kernel_properties():
    k = motion_kernel(61, 0.5, seed=0)
    assert k.shape == (61, 61) and k.dtype == torch.float64
    assert float(k.sum()) == pytest.approx(1, abs=1e-12) and bool((k >= 0).all())
    assert torch.equal(k, motion_kernel(61, 0.5, seed=0))
    assert not torch.allclose(k, motion_kernel(61, 0.5, seed=1))
    assert (k > 1e-4).sum() > 10  # a path, not a delta


def test_motion_kernel_intensity_controls_curvature():
    # intensity 0: turning angles are at most 0.1 rad, so long kernels are near-straight segments;
    # intensity 1 gives curved paths (measured: median anisotropy 0.06 vs 0.25 over 10 seeds).
    straight = [motion_kernel(41, 0.0, seed=s) for s in range(10)]
    curved = [_anisotropy(motion_kernel(41, 1.0, seed=s)) for s in range(10)]
    long_ones = [_anisotropy(k) for k in straight if (k > 1e-3).sum() > 50]
    assert len(long_ones) >= 5 and max(long_ones) < 0.15
    assert float(np.median([_anisotropy(k) for k in straight])) < 0.5 * float(np.median(curved))
    with pytest.raises(ConfigError):
        motion_kernel(61, 1.5)
