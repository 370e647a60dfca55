"""Inpainting masks: float tensors with 1 = observed, 0 = missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._rng import SampleRNG
from ..errors import ConfigError, ShapeError

Tensor = torch.Tensor


def _pair(v, name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or any(int(i) != i or i < 0 for i in t):
        raise ConfigError(f"{name} must be an int or a pair of ints >= 0; got {v!r}")
    return int(t[0]), int(t[1])


def box_mask(
    size: tuple[int, int] | int = (256, 256),
    box: tuple[int, int] | int = (128, 128),
    position: str = "random",
    margin: tuple[int, int] | int = (16, 16),
    seed: int | None = None,
    batch: int = 1,
) -> Tensor:
    """A rectangular hole: (batch, 1, H, W) float32, 0 inside the box, 1 elsewhere.

    ``position="random"`` follows DPS (Chung et al., ICLR 2023, ``random_sq_bbox``
    in ``util/img_utils.py``): the box's top-left corner ``(t, l)`` is drawn
    uniformly from the integers ``margin_h <= t < H - margin_h - h`` and
    ``margin_w <= l < W - margin_w - w`` (upper bound excluded, as ``np.random.randint``),
    so the box keeps at least ``margin`` pixels to the top/left and ``margin + 1``
    to the bottom/right. DPS's box protocol is a 128x128 box on 256x256 images.
    ``position="center"`` puts the box at ``((H - h) // 2, (W - w) // 2)``.
    Sample ``i`` of the batch draws from a generator seeded ``seed + i``.

    Args:
        size: image (H, W) or an int for square images.
        box: box (h, w) or an int for a square box.
        position: ``"random"`` or ``"center"``.
        margin: (margin_h, margin_w) for ``"random"``.
        seed: base seed (None: non-deterministic).
        batch: number of masks B.
    """
    (hh, ww), (bh, bw), (mh, mw) = _pair(size, "size"), _pair(box, "box"), _pair(margin, "margin")
    if bh > hh or bw > ww:
        raise ConfigError(f"box {bh}x{bw} does not fit in a {hh}x{ww} image; use a smaller box")
    if position not in ("random", "center"):
        raise ConfigError(f"position must be 'random' or 'center'; got {position!r}")
    if position == "random" and (hh - mh - bh <= mh or ww - mw - bw <= mw):
        raise ConfigError(
            f"a {bh}x{bw} box with margin {mh}x{mw} leaves no room in a {hh}x{ww} image; reduce the box or margin"
        )
    mask = torch.ones(batch, 1, hh, ww)
    for i, g in enumerate(SampleRNG(seed, batch).generators):
        if position == "center":
            t, l = (hh - bh) // 2, (ww - bw) // 2
        else:
            t = int(torch.randint(mh, hh - mh - bh, (1,), generator=g))
            l = int(torch.randint(mw, ww - mw - bw, (1,), generator=g))
        mask[i, :, t : t + bh, l : l + bw] = 0
    return mask


def random_mask(
    size: tuple[int, int] | int = (256, 256),
    missing: float = 0.7,
    seed: int | None = None,
    batch: int = 1,
) -> Tensor:
    """Random pixel dropping: (batch, 1, H, W) float32 with exactly ``round(missing * H * W)`` zeros.

    The pixels are drawn without replacement (as DPS's random mask) and shared by
    all channels. Sample ``i`` uses a generator seeded ``seed + i``.
    """
    hh, ww = _pair(size, "size")
    if not 0.0 <= float(missing) <= 1.0:
        raise ConfigError(f"missing must be a fraction in [0, 1]; got {missing!r}")
    n = hh * ww
    k = round(float(missing) * n)
    mask = torch.ones(batch, n)
    for i, g in enumerate(SampleRNG(seed, batch).generators):
        mask[i, torch.randperm(n, generator=g)[:k]] = 0
    return mask.view(batch, 1, hh, ww)


def mask_from_image(path_or_array, invert: bool = False, threshold: float = 0.0) -> Tensor:
    """Read a mask image (any format OpenCV reads) or array: (1, 1, H, W) float32, 1 = observed.

    White means observed and black missing; ``invert=True`` swaps them. A pixel
    is missing where its distance from the observed colour (1 - value, or the
    value with ``invert``) is above ``threshold``: with the default 0 only pure
    white (pure black with ``invert``) pixels are observed, so the partly
    painted, anti-aliased edges of a mask drawn in an editor count as missing
    rather than as trustworthy data. Colour images are reduced to the mean of
    their colour channels; an alpha channel is ignored.

    Args:
        path_or_array: file path, or an (H, W) / (H, W, C) array (integers are
            scaled by their dtype's maximum, floats are taken as [0, 1]).
        invert: black = observed instead of white = observed.
        threshold: in [0, 1); e.g. 0.5 splits grey values at mid-grey.

    Raises:
        ConfigError: unreadable file, or ``threshold`` outside [0, 1).
        ShapeError: not a 2-D (or 2-D + channels) image.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ConfigError(f"mask threshold must be in [0, 1); got {threshold!r}")
    if isinstance(path_or_array, (str, Path)):
        import cv2  # lazily: importing the operators must not need OpenCV

        img = cv2.imread(str(path_or_array), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ConfigError(f"cannot read a mask image from {str(path_or_array)!r}; check the path and format")
    else:
        img = path_or_array.detach().cpu().numpy() if isinstance(path_or_array, Tensor) else np.asarray(path_or_array)
        img = np.squeeze(img) if img.ndim > 3 else img
    scale = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    img = img.astype(np.float64) / scale
    if img.ndim == 3 and img.shape[-1] in (1, 3, 4):
        img = img[..., :3].mean(-1)
    if img.ndim != 2:
        raise ShapeError(f"a mask image must be (H, W) or (H, W, C); got shape {img.shape}")
    missingness = img if invert else 1.0 - img
    return torch.from_numpy(missingness <= threshold).float()[None, None]
