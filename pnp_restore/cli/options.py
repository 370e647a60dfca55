"""The click side of the options the restoration commands share, and the hand-off to the pipeline.

The values, defaults and checks live in :mod:`.settings` (click-free); this module
only declares them as click options, collects them into one
:class:`~.settings.Common`, and runs :func:`.pipeline.run` for a command.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .group import ARGV_KEY, debug_option
from .settings import (DEFAULT_SIGMA_Y, DEFAULT_SOLVER, DEFAULTS, DENOISER, MAX_BATCH, MAX_SAMPLES, MAX_SEED,
                       MAX_STEPS, MAX_TILE, Common)


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback refusing NaN and infinities (FloatRange lets NaN through); None (unset) passes."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


def images_argument(metavar: str = "IMAGE...") -> Callable:
    """The input images: one or more existing files."""
    return click.argument("images", nargs=-1, required=True, metavar=metavar,
                          type=click.Path(exists=True, dir_okay=False, path_type=Path))


def sigma_y_option(command: str) -> Callable:
    """``--sigma-y`` of inpaint, sr and deblur, with the command's default (:data:`~.settings.DEFAULT_SIGMA_Y`;
    denoise has --sigma on the 0..255 scale instead)."""
    extra = " With 0 the unmasked pixels are copied from the input; > 0 also denoises them." if command == "inpaint" else ""
    return click.option("--sigma-y", type=click.FloatRange(0, 1), callback=finite, default=DEFAULT_SIGMA_Y[command],
                        show_default=True,
                        help="Measurement noise std on the [0, 1] scale (0 = exact data consistency)." + extra)


def common_options(command: str) -> Callable:
    """Add the shared options to a command, passed on as one ``common`` (:class:`Common`) argument."""
    d = DEFAULTS
    options = [
        click.option("--solver", default=DEFAULT_SOLVER[command], show_default=True,
                     help="Solver: ddrm, ddnm, dps, diffpir, pnp_admm, ..."
                     + (f" or '{DENOISER}' (one MMSE denoiser call)." if command == "denoise" else ".")),
        click.option("--prior", default=d["prior"], show_default=True,
                     help="Prior: a name from `pnp-restore priors`, a Hugging Face hub id, a folder or a checkpoint file."),
        click.option("--prompt", default=d["prompt"],
                     help="Text prompt of a latent (Stable Diffusion) prior  [default: the empty prompt]."),
        click.option("--guidance", type=click.FloatRange(0, 100), callback=finite, default=d["guidance"],
                     help="Classifier-free guidance scale of a latent prior  [default: 1, no guidance]."),
        click.option("--offline", is_flag=True, default=d["offline"],
                     help="Never download: a prior that is not installed fails at once (as HF_HUB_OFFLINE=1)."),
        click.option("--arch", default=d["arch"],
                     help="Architecture of a checkpoint file or preset (see `pnp-restore priors`); not for the built-in prior."),
        click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=d["steps"],
                     help="Solver steps  [default: the solver's published value]."),
        click.option("--seed", type=click.IntRange(0, MAX_SEED), default=d["seed"], show_default=True,
                     help="Base seed; output k (in processing order) uses SEED + k."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=d["device"], show_default=True,
                     help="auto = cuda, else mps, else cpu."),
        click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default=d["dtype"], show_default=True,
                     help="Precision of the prior network (float16/bfloat16: GPU only); the solver runs in float32."),
        click.option("-o", "--output", default=d["output"],
                     help="Output file, or folder (ends in /, exists, or several inputs)  "
                          "[default: IMAGE_restored.png beside IMAGE]. Never an input."),
        click.option("--overwrite", is_flag=True, default=d["overwrite"], help="Replace existing output files (never the inputs)."),
        click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=d["samples"], show_default=True,
                     help="Posterior samples per image, written as OUT_0.png, OUT_1.png, ..."),
        click.option("--save-steps", is_flag=True, default=d["save_steps"],
                     help="Also save the intermediate x0 estimates (OUT_steps.gif)."),
        click.option("--tile", type=click.IntRange(0, MAX_TILE), default=d["tile"],
                     help="Run the prior on overlapping tiles of this many pixels (large images, little memory; 0 = off)."),
        click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=d["batch_size"], show_default=True,
                     help="Images (x samples) restored together; equal sizes only."),
        click.option("--sidecar/--no-sidecar", default=d["sidecar"], show_default=True,
                     help="Write OUT.json with the settings, seed, NFE and time."),
        click.option("--opt", multiple=True, metavar="KEY=VALUE",
                     help="Extra solver hyper-parameter, e.g. --opt eta=0.85 (repeatable)."),
        click.option("--paper-defaults", is_flag=True, default=d["paper_defaults"],
                     help="Use the papers' published solver settings instead of the prior's tuned defaults "
                          "(`pnp-restore bench tune`; the sidecar says which ran)."),
        click.option("-q", "--quiet", is_flag=True, default=d["quiet"], help="No progress bar or messages."),
        debug_option,
    ]

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command_(**kwargs: Any) -> None:
            common = Common(**{fld.name: kwargs.pop(fld.name) for fld in dataclasses.fields(Common)})
            return f(common=common, **kwargs)

        for option in reversed(options):
            command_ = option(command_)
        return command_

    return decorate


def run_command(ctx: click.Context, command: str, images: tuple[Path, ...], common: Common, **job: Any) -> None:
    """Run :func:`.pipeline.run` for ``command`` with the raw arguments of this invocation.

    ``ctx.obj`` may hold a :class:`.pipeline.Backend` (tests: a fake prior and
    solver); by default the real prior loader and :func:`pnp_restore.restore` run.
    """
    from .pipeline import Backend, run

    backend = ctx.find_object(Backend) or Backend()
    argv = ctx.meta.get(ARGV_KEY, sys.argv[1:])
    run(images, common, command=command, argv=argv, backend=backend, echo=click.echo, **job)
