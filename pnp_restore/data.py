"""Training images: a folder read into RAM and random augmented patches of it.

Images are read with :func:`pnp_restore.io.read_image` (PNG, JPG, TIF, ... via
OpenCV), optionally verified against a ``MANIFEST.tsv`` with :func:`verify`, and
kept in RAM as RGB ``uint8`` arrays (H, W, 3). :class:`RandomPatches` draws
augmented crops (scale jitter, flips, 90-degree rotations) as float tensors
(3, crop, crop) in [0, 1]; item ``i`` depends only on ``(seed, i)``, so a training
run that asks for items ``step * batch ... step * batch + batch - 1`` is exactly
resumable.

OpenCV is imported only where images are read or resized: the checksum helpers
(:func:`file_sha256`, :func:`verify`) also serve prior loading, which must not need it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, PnPRestoreError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DatasetError(PnPRestoreError, ValueError):
    """A dataset folder is missing, empty, or fails its checksum manifest."""



def list_images(folder: str | Path, limit: int | None = None, recursive: bool = False) -> list[Path]:
    """Image files of ``folder`` (and its subfolders if ``recursive``), sorted by path; the first ``limit`` if given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist; pass a folder of PNG/JPG/TIF images")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DatasetError(f"no images ({', '.join(EXTENSIONS)}) in {folder}")
    return files[:limit] if limit else files


def read_manifest(manifest: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256<TAB>path`` file (a header line is skipped)."""
    out = {}
    for line in Path(manifest).read_text().splitlines():
        parts = line.strip().split("\t")
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1]] = parts[0].lower()
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(files: list[Path], manifest: str | Path) -> None:
    """Check each file's SHA-256 against ``manifest`` (paths relative to its folder); raise :class:`DatasetError`."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DatasetError(f"manifest {manifest} does not exist; pass the MANIFEST.tsv next to the data or omit it")
    root, table = manifest.resolve().parent, read_manifest(manifest)
    for f in files:
        try:
            rel = f.resolve().relative_to(root).as_posix()
        except ValueError:
            raise DatasetError(f"{f} is not under {root}, the folder of manifest {manifest}") from None
        if rel not in table:
            raise DatasetError(f"{rel} is not listed in {manifest}; use the manifest that belongs to this data")
        if file_sha256(f) != table[rel]:
            raise DatasetError(f"{f} does not match its SHA-256 in {manifest}; the file is corrupt or modified, copy it again")


def read_rgb_uint8(path: str | Path) -> np.ndarray:
    """An image file as RGB ``uint8`` (H, W, 3) via :func:`pnp_restore.io.read_image`; gray is repeated to RGB."""
    from .io import read_image  # OpenCV

    x, _ = read_image(path)
    return (x[0].expand(3, -1, -1) * 255).round().byte().permute(1, 2, 0).numpy().copy()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB ``uint8`` (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255.0


def load_folder(root: str | Path, manifest: str | Path | None = None) -> list[np.ndarray]:
    """Every image under ``root`` (recursive) as RGB ``uint8``; files are first checked against ``manifest`` if given.

    Raises:
        DatasetError: a file is not in the manifest or its sha256 differs.
    """
    files = list_images(root, recursive=True)
    if manifest is not None:
        verify(files, manifest)
    return [read_rgb_uint8(f) for f in files]


class RandomPatches(torch.utils.data.Dataset):
    """Endless augmented crops from in-memory images.

    Item ``i`` (any int >= 0) picks an image, a scale ``s`` (log-uniform in
    ``scale_range``; a region of ``crop / s`` pixels is resized to ``crop`` with
    area interpolation, so s < 1 down-samples, which also lowers the camera noise),
    a position, a horizontal flip and a rotation by a multiple of 90 degrees,
    all from ``numpy.random.default_rng((seed, i))``.

    Args:
        images: RGB ``uint8`` arrays (H, W, 3), each at least ``crop`` pixels on both sides.
        crop: side of the square patches, in pixels.
        seed: base seed of the augmentation.
        scale_range: (min, max) scale factor; (1, 1) disables the jitter.
    """

    def __init__(self, images: list[np.ndarray], crop: int, seed: int = 0, scale_range=(0.5, 1.0)) -> None:
        if not images:
            raise ConfigError("RandomPatches needs at least one image")
        small = [im.shape[:2] for im in images if min(im.shape[:2]) < crop]
        if small:
            raise ConfigError(f"crop {crop} is larger than an image of size {small[0]}; lower --crop")
        lo, hi = scale_range
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"scale_range must satisfy 0 < min <= max <= 1; got {scale_range}")
        self.images, self.crop, self.seed, self.scale_range = images, int(crop), int(seed), (lo, hi)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, int(i)))
        img = self.images[rng.integers(len(self.images))]
        h, w = img.shape[:2]
        lo, hi = self.scale_range
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        side = min(round(self.crop / scale), h, w)
        y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
        patch = img[y : y + side, x : x + side]
        if side != self.crop:
            import cv2

            patch = cv2.resize(patch, (self.crop, self.crop), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patch = np.rot90(patch, k=int(rng.integers(4)))
        return to_tensor(patch)

    def batch(self, step: int, size: int) -> torch.Tensor:
        """Items ``step * size ... step * size + size - 1`` stacked: (size, 3, crop, crop)."""
        return torch.stack([self[step * size + j] for j in range(size)])


__all__ = ["RandomPatches", "list_images", "load_folder", "read_rgb_uint8", "to_tensor"]
