"""Benchmark images: any folder of images, brought to a fixed square size.

A dataset is a folder; its name is the folder's name and its images are the
files with an image extension, in sorted order (``limit`` takes the first N).
An image is named by its file stem (by the whole file name when two files share
a stem) and identified in result rows by that name and the SHA-256 of its file.
Images are read with :func:`pnp_restore.io.read_image`; grayscale images are
repeated to RGB (two Set14 images are grayscale) and alpha is dropped.

On these machines the standard sets live in ``../shared/data/test/{CBSD68,
Kodak24,McMaster,Set5,Set14}`` with a ``MANIFEST.tsv`` (``sha256<TAB>path``
relative to the manifest's folder); pass it as ``manifest`` to verify every
file. Nothing here depends on that location.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import DatasetError, file_sha256, list_images, verify  # noqa: F401
from ..errors import ConfigError

Tensor = torch.Tensor

@dataclass
class BenchImage:
    """One benchmark image: ``x`` (1, 3, size, size) float32 in [0, 1]; ``index`` is its place in the folder,
    ``sha256`` the hex SHA-256 of its file."""

    dataset: str
    name: str
    index: int
    path: Path
    x: Tensor
    sha256: str | None = None

    @property
    def key(self) -> str:
        """``<dataset>/<name>``: seeds the degradation and identifies result rows."""
        return f"{self.dataset}/{self.name}"


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


def dataset_name(folder: str | Path) -> str:
    """The name of the dataset in ``folder``: the folder's own name (also for ``.`` or a trailing slash)."""
    return Path(os.path.abspath(folder)).name


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
    stems = [f.stem for f in files]
    out = []
    for i, f in enumerate(files):
        x, _ = read_image(f)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        name = f.stem if stems.count(f.stem) == 1 else f.name
        out.append(BenchImage(dataset_name(folder), name, i, f, fit(x.float(), size, crop), file_sha256(f)))
    return out


__all__ = ["BenchImage", "DatasetError", "list_images", "verify", "fit", "load", "dataset_name"]
