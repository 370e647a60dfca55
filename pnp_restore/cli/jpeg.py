"""``pnp-restore jpeg``: remove JPEG artefacts with the file's own codec as the forward model
(:func:`pnp_restore.operators.jpeg.jpeg_operator_from_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .group import CONTEXT, main
from .options import common_options, images_argument, run_command, sigma_y_option
from .settings import COMMAND_TASK, Common


@main.command(context_settings=CONTEXT)
@images_argument("JPEG...")
@sigma_y_option("jpeg")
@common_options("jpeg")
@click.pass_context
def jpeg(ctx: click.Context, images: tuple[Path, ...], sigma_y: float, common: Common) -> None:
    """Remove the compression artefacts of JPEG files.

    The forward model is each file's own encoder: its quantisation tables and
    chroma subsampling, read from the file, in a differentiable JPEG codec; the
    measurement is the file's decoded pixels. Only the solvers that take a
    nonlinear operator run it (pigdm, dps, daps, reddiff, pnpdm).

    \b
    Examples:
      pnp-restore jpeg photo.jpg
      pnp-restore jpeg *.jpg -o clean/ --solver reddiff
    """

    def operator_for(h: int, w: int, path: Path) -> Any:
        from ..operators.jpeg import jpeg_operator_from_file

        _, operator = jpeg_operator_from_file(path)
        return operator

    run_command(ctx, "jpeg", images, common, sigma_y=sigma_y, operator_for=operator_for, per_file=True,
                task=COMMAND_TASK["jpeg"], record={})
