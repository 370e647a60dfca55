"""Inpaint a large image by restoring only the regions around its holes.

A photo with a few local holes does not need the prior on every pixel: each hole, with a
context margin of known pixels around it, is an inpainting problem of its own. The regions
are the bounding boxes of the connected components of the missing pixels dilated by
``margin`` (so holes closer than ``2 margin`` share a region), merged while any two
overlap; pixels outside every region are returned exactly as given. When the regions would
cover most of the image (e.g. 70 % random pixels missing) the whole image is one region.

``margin`` should be at least twice the network's receptive radius (:func:`default_margin`),
so that the prior sees the same context around each hole as in the whole image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .errors import ShapeError

Tensor = torch.Tensor

#: above this fraction of the image's pixels in regions, restore the whole image instead.
WHOLE_FRACTION = 0.6
#: the built-in prior's receptive radius in pixels (3x3 convolutions over three UNet levels,
#: two downsamplings: 66), rounded up.
BUILTIN_RECEPTIVE_RADIUS = 68
#: seeds of region k: ``seed + k * SEED_STRIDE`` (image i of a batch: ``+ i``), so regions get
#: independent noise and a batch still equals single runs.
SEED_STRIDE = 2**20


@dataclasses.dataclass(frozen=True)
class Box:
    """Rows ``top:bottom`` and columns ``left:right`` of an image (half-open)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)

    def overlaps(self, other: Box) -> bool:
        return (self.top < other.bottom and other.top < self.bottom
                and self.left < other.right and other.left < self.right)

    def union(self, other: Box) -> Box:
        return Box(min(self.top, other.top), min(self.left, other.left),
                   max(self.bottom, other.bottom), max(self.right, other.right))


def default_margin(prior: object | None = None) -> int:
    """Context margin for ``prior``: twice its receptive radius (``receptive_radius`` attribute if it
    has one, else the built-in prior's)."""
    return 2 * int(getattr(prior, "receptive_radius", None) or BUILTIN_RECEPTIVE_RADIUS)


def _dilate(missing: np.ndarray, r: int) -> np.ndarray:
    """``missing`` (H, W) bool dilated by a (2r+1)^2 square: two 1-D window counts from cumulative sums."""
    out = missing
    for axis in (0, 1):
        n = out.shape[axis]
        c = np.cumsum(out, axis=axis, dtype=np.int32)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        i = np.arange(n)
        out = np.take(c, np.minimum(i + r + 1, n), axis=axis) > np.take(c, np.maximum(i - r, 0), axis=axis)
    return out


def merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Boxes merged (by their union box) until no two overlap, sorted top-left first."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if out[i].overlaps(out[j]):
                    out[i] = out[i].union(out.pop(j))
                    merged = True
                    break
            if merged:
                break
    return sorted(out, key=lambda b: (b.top, b.left))


def hole_regions(missing: Tensor | np.ndarray, margin: int, whole_fraction: float = WHOLE_FRACTION) -> list[Box]:
    """The regions to restore for the missing pixels ``missing`` (H, W) (True = missing).

    Returns:
        Non-overlapping boxes, each a hole's bounding box grown by ``margin`` (clipped to the
        image), merged while they overlap; ``[]`` when nothing is missing; the whole image when
        the boxes would cover more than ``whole_fraction`` of it.
    """
    from scipy import ndimage

    m = missing.detach().cpu().numpy() if isinstance(missing, Tensor) else np.asarray(missing)
    if m.ndim != 2:
        raise ShapeError(f"missing must be an (H, W) mask; got shape {m.shape}")
    m = m.astype(bool)
    h, w = m.shape
    if not m.any():
        return []
    labels, _ = ndimage.label(_dilate(m, margin) if margin > 0 else m, structure=np.ones((3, 3)))
    boxes = merge_boxes([Box(r.start, c.start, r.stop, c.stop) for r, c in ndimage.find_objects(labels)])
    if sum(b.area for b in boxes) > whole_fraction * h * w:
        return [Box(0, 0, h, w)]
    return boxes


def missing_pixels(mask: Tensor) -> Tensor:
    """(H, W) bool: pixels some image or channel of an inpainting ``mask`` (.., H, W) does not fully observe."""
    m = mask.reshape(-1, *mask.shape[-2:])
    return (m < 1).any(dim=0)


def restore_regions(
    y: Tensor,
    missing: Tensor | None,
    restore_fn: Callable[[Tensor, Box, int], Tensor],
    *,
    margin: int,
    regions: Sequence[Box] | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Restore ``y`` region by region: ``restore_fn(y[..., box], box, k)`` for region ``k``, pasted into ``y``.

    Args:
        y: (B, C, H, W) measurement on [0, 1]; its pixels outside the regions are the result there.
        missing: (H, W) bool, True where a pixel is not (fully) observed (:func:`missing_pixels`);
            may be None when ``regions`` is given.
        restore_fn: ``(y_crop (B, C, h, w), box, k) -> x_crop (B, C, h, w)``: restores one region
            (its operator is the original one cropped to ``box``).
        margin: context pixels around each hole (:func:`default_margin`).
        regions: the boxes (default :func:`hole_regions` of ``missing`` and ``margin``).
        out: the (B, C, H, W) result buffer, holding ``y`` outside the regions (default a copy of ``y``).

    Returns:
        (B, C, H, W): ``y`` with every region replaced by its restoration (``out`` when given).
    """
    if y.dim() != 4 or (missing is not None and tuple(missing.shape) != tuple(y.shape[-2:])):
        got = None if missing is None else tuple(missing.shape)
        raise ShapeError(f"y must be (B, C, H, W) and missing (H, W) of the same size; got {tuple(y.shape)} and {got}")
    if regions is None:
        if missing is None:
            raise ShapeError("restore_regions needs the missing pixels or the regions")
        regions = hole_regions(missing, margin)
    out = y.clone() if out is None else out
    for k, box in enumerate(regions):
        rows, cols = box.slices
        out[..., rows, cols] = restore_fn(y[..., rows, cols], box, k)
    return out


def region_seed(seed: int | None, k: int) -> int | None:
    """The seed of region ``k`` (see :data:`SEED_STRIDE`)."""
    return None if seed is None else seed + k * SEED_STRIDE


__all__ = [
    "BUILTIN_RECEPTIVE_RADIUS",
    "Box",
    "default_margin",
    "hole_regions",
    "merge_boxes",
    "missing_pixels",
    "region_seed",
    "restore_regions",
]
