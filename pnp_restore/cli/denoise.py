"""``pnp-restore denoise``: Gaussian denoising, by one MMSE denoiser call or a solver with
:class:`pnp_restore.operators.Denoising`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from .group import CONTEXT, main
from .options import common_options, images_argument, run_command
from .settings import Common


@main.command(context_settings=CONTEXT)
@images_argument()
@click.option("--sigma", default="auto", show_default=True,
              help="Noise std on the 0..255 scale, or 'auto' to estimate it per image (scikit-image).")
@common_options("denoise")
@click.pass_context
def denoise(ctx: click.Context, images: tuple[Path, ...], sigma: str, common: Common) -> None:
    """Remove Gaussian noise of std --sigma (0..255 scale) from IMAGES.

    With the default --solver denoiser this is one call of the prior's MMSE
    denoiser; any other solver samples with the Denoising operator. A gray
    image with an RGB prior gets independent noise on its two colour axes
    first (seeded by --seed), so the denoiser sees i.i.d. noise of std
    sqrt(3) x SIGMA per channel whose channel mean is the image (docs/cli.md).

    \b
    Examples:
      pnp-restore denoise noisy.png --sigma 25
      pnp-restore denoise scans/*.tif -o clean/ --solver pnp_admm
    """

    def operator_for(h: int, w: int) -> Any:
        from .. import operators

        return operators.get("denoising")

    # No paper task: the published per-task settings cover inpainting, SR and deblurring only.
    run_command(ctx, "denoise", images, common, sigma_y=parse_sigma(sigma), operator_for=operator_for,
                record={"sigma_255": sigma})


def parse_sigma(sigma: str) -> float | Callable[[Any], float]:
    """``--sigma`` (0..255 scale, or ``auto``) as sigma_y on the [0, 1] scale, or :func:`estimate_sigma`."""
    if sigma == "auto":
        return estimate_sigma
    try:
        sigma_y = float(sigma) / 255.0
    except ValueError:
        raise ConfigError(f"--sigma {sigma!r} is not a number; give e.g. --sigma 25 (0..255 scale) or auto") from None
    if not 0 < sigma_y < 1:
        raise ConfigError(f"--sigma {sigma} is outside (0, 255); give the noise std on the 0..255 scale")
    return sigma_y


def estimate_sigma(x: Any) -> float:
    """Gaussian noise std of a (1, C, H, W) image in [0, 1] (Donoho's wavelet MAD, via scikit-image); at least 1e-3."""
    from skimage.restoration import estimate_sigma as wavelet_sigma

    img = x[0].permute(1, 2, 0).double().numpy()
    return max(float(wavelet_sigma(img, channel_axis=-1, average_sigmas=True)), 1e-3)
