"""``pnp-restore inpaint``: fill the white pixels of a mask (:class:`pnp_restore.operators.Inpainting`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .group import CONTEXT, main
from .options import common_options, finite, images_argument, run_command, sigma_y_option
from .settings import COMMAND_TASK, Common


@main.command(context_settings=CONTEXT)
@images_argument("IMAGE [MASK] | IMAGE... --mask MASK")
@click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Mask for all IMAGES (white = fill). Without it, the last argument is the mask.")
@click.option("--mask-invert", is_flag=True, help="The mask is white where pixels are KEPT (observed).")
@click.option("--mask-threshold", type=click.FloatRange(0, 1, max_open=True), callback=finite, default=0.0,
              show_default=True,
              help="Fill pixels whose mask value is above this (0..1; with --mask-invert: whose 1 - value is). "
                   "0: every pixel that is not pure black is filled, so anti-aliased mask edges count as missing.")
@click.option("--resize-mask", is_flag=True, help="Resize a mask of another size to each image.")
@sigma_y_option("inpaint")
@common_options("inpaint")
@click.pass_context
def inpaint(ctx: click.Context, images: tuple[Path, ...], mask_path: Path | None, mask_invert: bool,
            mask_threshold: float, resize_mask: bool, sigma_y: float, common: Common) -> None:
    """Fill the white pixels of MASK in IMAGE.

    Every pixel of MASK that is not pure black is filled (--mask-threshold):
    the soft edges of a brush stroke are partly damaged too. The other pixels
    are copied from IMAGE unchanged (with --sigma-y > 0 they are denoised too).

    \b
    Examples:
      pnp-restore inpaint photo.png mask.png
      pnp-restore inpaint *.png --mask mask.png -o filled/ --samples 3
    """
    if mask_path is None:
        if len(images) != 2:
            raise click.UsageError("give IMAGE MASK, or several images with --mask MASK")
        images, mask_path = images[:1], images[1]

    def operator_for(h: int, w: int) -> Any:
        from .. import operators
        from ..io import read_mask

        mask = read_mask(mask_path, (h, w), invert=mask_invert, resize=resize_mask, threshold=mask_threshold)
        return operators.get("inpainting", mask=mask)

    run_command(ctx, "inpaint", images, common, sigma_y=sigma_y, operator_for=operator_for, measure=True,
                observed=observed_pixels, inputs=(mask_path,), task=COMMAND_TASK["inpaint"],
                record={"mask": str(mask_path), "mask_invert": mask_invert, "mask_threshold": mask_threshold})


def observed_pixels(operator: Any) -> Any:
    """The pixels the inpainting ``operator`` keeps, (1 or B, 1 or C, H, W) bool (its mask > 0)."""
    return operator.mask > 0
