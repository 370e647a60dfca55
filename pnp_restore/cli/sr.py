"""``pnp-restore sr``: super-resolution (:class:`pnp_restore.operators.SuperResolution`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .group import CONTEXT, main
from .options import common_options, images_argument, run_command, sigma_y_option
from .settings import COMMAND_TASK, MAX_SCALE, Common


@main.command(context_settings=CONTEXT)
@images_argument()
@click.option("--scale", type=click.IntRange(2, MAX_SCALE), default=4, show_default=True, help="Upscaling factor.")
@click.option("--kind", default="bicubic", show_default=True, help="Downsampling the low-resolution image went through.")
@sigma_y_option("sr")
@common_options("sr")
@click.pass_context
def sr(ctx: click.Context, images: tuple[Path, ...], scale: int, kind: str, sigma_y: float, common: Common) -> None:
    """Super-resolve IMAGES by --scale (output is scale times larger).

    \b
    Examples:
      pnp-restore sr small.png --scale 4
      pnp-restore sr *.png --scale 2 -o big/
    """

    def operator_for(h: int, w: int) -> Any:
        from .. import operators

        return operators.get("sr", scale=scale, kind=kind)

    run_command(ctx, "sr", images, common, sigma_y=sigma_y, operator_for=operator_for, task=COMMAND_TASK["sr"],
                record={"scale": scale, "kind": kind})
