"""Benchmark images: any folder of images, brought to a fixed square size.

A dataset is a folder; its name is the folder's name and its images are the
files with an image extension, in sorted order (``limit`` takes the first N).
Images are read with :func:`pnp_restore.io.read_image`; grayscale images are
repeated to RGB (two Set14 images are grayscale) and alpha is dropped.

On these machines the standard sets live in ``../shared/data/test/{CBSD68,
Kodak24,McMaster,Set5,Set14}`` with a ``MANIFEST.tsv`` (``sha256<TAB>path``
relative to the manifest's folder); pass it as ``manifest`` to verify every
file. Nothing here depends on that location.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError, PnPRestoreError

Tensor = torch.Tensor

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DatasetError(PnPRestoreError, ValueError):
    """A dataset folder is missing, empty, or fails its checksum manifest."""


@dataclass
class BenchImage:
    """One benchmark image: ``x`` (1, 3, size, size) float32 in [0, 1]; ``index`` is its place in the folder."""

    dataset: str
    name: str
    index: int
    path: Path
    x: Tensor

    @property
    def key(self) -> str:
        """``<dataset>/<name>``: seeds the degradation and identifies result rows."""
        return f"{self.dataset}/{self.name}"


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files of ``folder`` in sorted order (the first ``limit`` if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist; pass --data DIR with a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
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
        if hashlib.sha256(f.read_bytes()).hexdigest() != table[rel]:
            raise DatasetError(f"{f} does not match its SHA-256 in {manifest}; the file is corrupt or modified, copy it again")


def fit(x: Tensor, size: int, crop: str = "center") -> Tensor:
    """Bring (1, C, H, W) to (1, C, size, size).

    ``"center"``: centre crop (an image smaller than ``size`` is first upscaled so
    its short side is ``size``). ``"resize"``: short side resized to ``size``
    (bicubic, antialiased, clipped to [0, 1]), then centre crop.
    """
    if crop not in ("center", "resize"):
        raise ConfigError(f"crop must be 'center' or 'resize'; got {crop!r}")
    h, w = x.shape[-2:]
    if crop == "resize" or min(h, w) < size:
        f = size / min(h, w)
        hw = (max(size, round(h * f)), max(size, round(w * f)))
        x = F.interpolate(x, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        h, w = hw
    t, l = (h - size) // 2, (w - size) // 2
    return x[..., t : t + size, l : l + size].contiguous()


def load(
    folder: str | Path,
    size: int = 256,
    crop: str = "center",
    limit: int | None = None,
    manifest: str | Path | None = None,
) -> list[BenchImage]:
    """The images of ``folder`` as :class:`BenchImage` (RGB, ``size x size``), verified against ``manifest`` if given."""
    from ..io import read_image

    folder = Path(folder)
    files = list_images(folder, limit)
    if manifest is not None:
        verify(files, manifest)
    out = []
    for i, f in enumerate(files):
        x, _ = read_image(f)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        out.append(BenchImage(folder.name, f.stem, i, f, fit(x.float(), size, crop)))
    return out


__all__ = ["BenchImage", "DatasetError", "list_images", "verify", "fit", "load", "read_manifest"]
