"""``pnp-restore deblur``: non-blind deblurring (:class:`pnp_restore.operators.Blur`) and ``--kernel`` parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..tasks import Task
from .group import CONTEXT, main
from .options import common_options, images_argument, run_command, sigma_y_option
from .settings import COMMAND_TASK, Common


@main.command(context_settings=CONTEXT)
@images_argument()
@click.option("--kernel", default="gaussian:3.0", show_default=True,
              help="gaussian:STD (pixels), motion:INTENSITY (0..1, random kernel from --seed) or a kernel image file.")
@click.option("--kernel-size", type=click.IntRange(1, 1001), default=61, show_default=True,
              help="Size of gaussian/motion kernels (capped to the image, made odd).")
@click.option("--padding", type=click.Choice(["circular", "reflect"]), default="circular", show_default=True,
              help="Boundary model of the blur. circular: exact FFT solve (fast; DiffPIR's own choice). "
                   "reflect: closer to real borders, but the data step is iterative (slow with large kernels).")
@sigma_y_option("deblur")
@common_options("deblur")
@click.pass_context
def deblur(ctx: click.Context, images: tuple[Path, ...], kernel: str, kernel_size: int, padding: str,
           sigma_y: float, common: Common) -> None:
    """Remove a known blur from IMAGES.

    \b
    Examples:
      pnp-restore deblur blurry.png --kernel gaussian:3.0
      pnp-restore deblur blurry.png --kernel psf.png --solver dps --steps 1000
    """

    def operator_for(h: int, w: int) -> Any:
        return blur_operator(kernel, kernel_size, h, w, seed=common.seed, padding=padding)

    run_command(ctx, "deblur", images, common, sigma_y=sigma_y, operator_for=operator_for,
                inputs=(Path(kernel),) if Path(kernel).is_file() else (),
                task=Task.MOTION_DEBLUR if kernel.startswith("motion:") else COMMAND_TASK["deblur"],
                record={"kernel": kernel, "kernel_size": kernel_size, "padding": padding})


def blur_operator(spec: str, size: int, h: int, w: int, *, seed: int, padding: str) -> Any:
    """The blur of ``--kernel`` ``spec`` for (h, w) images: ``gaussian:STD``, ``motion:INTENSITY`` or a file.

    Generated kernels are ``size`` x ``size`` capped to the image and made odd (so
    they have a centre); a kernel image is averaged over its channels and
    normalised to sum 1.
    """
    from .. import operators

    size = min(size, h, w)
    size -= 1 - size % 2
    name, sep, value = spec.partition(":")
    if sep and name in ("gaussian", "motion"):
        try:
            v = float(value)
        except ValueError:
            example = "3.0" if name == "gaussian" else "0.5"
            raise ConfigError(f"--kernel {spec}: {value!r} is not a number; write e.g. {name}:{example}") from None
        if name == "gaussian":
            return operators.get("blur", size=size, std=v, padding=padding)
        return operators.get("motion", size=size, intensity=v, seed=seed, padding=padding)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--kernel {spec}: not gaussian:STD, motion:INTENSITY or an existing image file")
    from ..io import read_image

    k = read_image(path)[0][0].mean(0).double()
    if float(k.sum()) <= 0:
        raise ConfigError(f"--kernel {spec}: the kernel image is all black; give a PSF with positive values")
    return operators.get("blur", kernel=k / k.sum(), padding=padding)
