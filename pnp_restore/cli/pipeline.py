"""The restoration pipeline behind ``inpaint``, ``sr``, ``deblur`` and ``denoise``, without click.

:func:`run` checks everything that can be checked before any work (options,
outputs, memory), reads the images, builds one operator per image size, loads
the prior, restores the images in batches and writes all outputs (images,
sidecars, step GIFs) at the end: all of them, or none. Its inputs are explicit:
paths, a :class:`~.settings.Common`, an operator factory and a :class:`Backend`
(prior loader, solver, memory probe) that tests replace by stand-ins.

Grayscale images with an RGB prior are restored as what they are, the measurement of one
gray channel: the operator becomes ``Grayscale(A)``, ``A(mean_c x)``
(:class:`pnp_restore.operators.grayscale.Grayscale`), the solver gets the 1-channel
measurement with its noise on that one channel, and the result is written as its channel
mean. (Replicating the gray image to RGB instead feeds the solvers noise that is identical
in the three channels, not the independent noise they assume.)
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..tasks import Task
from .plan import (Item, available_memory, check_memory, check_outputs, output_paths, plan_batches, restore_planned,
                   side_paths)
from .settings import DENOISER, MAX_FRAMES, Common, check_arch, check_seeds, solver_options


def load_prior(source: str, *, arch: str | None, device: Any, dtype: Any, tile: int | None, **extra: Any) -> Any:
    """:func:`pnp_restore.priors.load` with the CLI's settings (``arch``, ``tile`` and ``extra``: ``prompt``,
    ``guidance``, ``offline``, only when given)."""
    from ..priors import load

    kwargs: dict[str, Any] = {"arch": arch} if arch else {}
    if tile:
        kwargs["tile"] = tile
    kwargs.update(extra)
    return load(source, device=device, dtype=dtype, **kwargs)


def restore_with_info(y: Any, operator: Any, prior: Any, **kwargs: Any) -> tuple[Any, dict]:
    """:func:`pnp_restore.restore` returning ``(x, info)``."""
    from ..restoration import restore

    return restore(y, operator, prior, return_info=True, **kwargs)


@dataclasses.dataclass(frozen=True)
class Backend:
    """What :func:`run` calls to do the work.

    Attributes:
        load_prior: ``load_prior(source, *, arch, device, dtype, tile) -> prior`` (called once,
            after every check).
        restore: ``restore(y, operator, prior, *, solver, sigma_y, seed, callback, task[, steps], **opts)
            -> (x, info)`` with ``info`` as :func:`pnp_restore.restore` returns it.
        available_memory: ``available_memory(device) -> bytes | None``.
    """

    load_prior: Callable[..., Any] = load_prior
    restore: Callable[..., tuple[Any, dict]] = restore_planned
    available_memory: Callable[[Any], int | None] = available_memory


def run(
    images: Sequence[Path],
    common: Common,
    *,
    command: str,
    sigma_y: float | Callable[[Any], float],
    operator_for: Callable[..., Any],
    record: dict[str, Any],
    measure: bool = False,
    per_file: bool = False,
    observed: Callable[[Any], Any] | None = None,
    task: Task | None = None,
    inputs: Sequence[Path] = (),
    argv: Sequence[str] = (),
    backend: Backend = Backend(),
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Restore ``images`` with the operator ``operator_for(H, W)`` of each image size.

    Everything that can be checked without the images (options, output paths) is
    checked first, then memory before the prior is loaded. The outputs are written
    together at the end: all of them, or none.

    Args:
        images: input image files.
        common: the shared settings.
        command: the command name (``inpaint``, ``sr``, ``deblur``, ``denoise``), for the
            sidecar, the progress bar and option checks.
        sigma_y: measurement noise ([0, 1] scale), or a function of the image
            tensor (1, C, H, W) in [0, 1] giving it (``denoise --sigma auto``).
        operator_for: ``(H, W) -> operator`` for images of that size (``per_file``:
            ``(H, W, path) -> operator`` for each input, e.g. the JPEG tables of that file).
        record: command settings for the sidecar JSON.
        measure: the measurement is ``operator(image)`` (inpainting: zero the
            missing pixels) instead of the image itself.
        per_file: one operator per input file; a batch then holds the samples of one file.
        observed: ``observed(operator) -> bool (1|B, 1|C, H, W)``, the pixels the measurement
            keeps (inpainting). Where ``sigma_y`` is 0 they are copied from the input into
            the output, so they are bit-identical in a PNG/TIFF (whatever the solver did to
            them; DDRM, for one, ends on its denoiser's estimate); the sidecar records
            ``observed_copied``. With ``sigma_y > 0`` the solver's values are kept.
        task: the paper task whose published solver settings apply
            (:func:`pnp_restore.solvers.task_defaults`); None: none.
        inputs: other input files (mask, kernel) that no output may replace.
        argv: the command line after ``pnp-restore``, recorded in the sidecars.
        backend: prior loader, solver and memory probe.
        echo: prints one ``wrote PATH`` line per output (unless ``common.quiet``).

    Returns:
        The output image paths, in processing order.
    """
    import torch

    from ..devices import resolve_device
    from ..errors import ShapeError
    from ..io import OutputSet, read_image, remove_stale_temporaries
    from ..memory import enable_huge_pages

    enable_huge_pages()  # before the first large allocation, or it has no effect (pnp_restore.memory)

    images = [Path(p) for p in images]
    opts = solver_options(common, command)
    check_arch(common)
    outs = output_paths(images, common.output, common.samples)
    check_outputs(outs, common, [*images, *inputs])
    check_seeds(common, len(images) * common.samples)
    device = resolve_device(common.device)
    for folder in {p.parent for ps in outs for p in ps if p.parent.is_dir()}:
        remove_stale_temporaries(folder)

    loaded = [read_image(p) for p in images]
    sizes = [tuple(x.shape[-2:]) for x, _ in loaded]
    if per_file:
        keys: list[Any] = list(range(len(images)))
        operators = {i: operator_for(*hw, path) for i, (hw, path) in enumerate(zip(sizes, images))}
    else:
        keys = sizes
        operators = {hw: operator_for(*hw) for hw in dict.fromkeys(sizes)}
    gray_operators: dict[Any, Any] = {}
    per_shape: dict[tuple, int] = {}
    for key, hw in zip(keys, sizes):
        shape = tuple(operators[key].x_shape((1, 3, *hw)))
        per_shape[shape] = per_shape.get(shape, 0) + common.samples
    sigmas = [float(sigma_y(x)) if callable(sigma_y) else float(sigma_y) for x, _ in loaded]
    exact = {hw: operators[key] for key, hw, sigma in zip(keys, sizes, sigmas) if sigma == 0}  # solved by regions
    check_memory({shape: min(n, common.batch_size) for shape, n in per_shape.items()}, common,
                 backend.available_memory(device), exact)

    prior = backend.load_prior(common.prior, arch=common.arch, device=device, dtype=getattr(torch, common.dtype),
                               tile=common.tile, **_latent_options(common))
    channels = getattr(prior, "channels", None)
    for (x, _), path in zip(loaded, images):
        if channels == 1 and x.shape[1] == 3:
            raise ShapeError(f"{path.name} is RGB but the prior models grayscale images; convert the image or use an RGB prior")

    items, batches = plan_batches(list(zip(keys, sigmas)), outs, common.batch_size)

    from tqdm import tqdm

    bar = tqdm(total=len(batches) if common.solver == DENOISER else None, unit="step", disable=common.quiet,
               file=sys.stderr, dynamic_ncols=True, desc=command)
    cmdline = shlex.join(["pnp-restore", *argv])
    try:
        with OutputSet(common.overwrite) as staged:
            for batch in batches:
                first = items[batch[0]]
                x_file = torch.cat([loaded[items[k].image][0] for k in batch])
                # The solver works in float32; --dtype sets the network's precision (the prior casts).
                x_in = x_file.to(device=device, dtype=torch.float32)
                key = keys[first.image]
                operator = operators[key]
                y = operator(x_in) if measure else x_in
                gray = channels == 3 and x_in.shape[1] == 1
                if gray:
                    if key not in gray_operators:
                        gray_operators[key] = _gray_operator(operator)
                    operator = gray_operators[key]
                frames: list[list] = [[] for _ in batch]
                sigma = sigmas[first.image]
                x, info = _solve(y, operator, prior, common, sigma, opts, seed=common.seed + batch[0],
                                 restore=backend.restore, bar=bar, n_batches=len(batches), frames=frames, task=task)
                x = _as_input(x.detach().to("cpu", torch.float32), x_file.shape[1])
                copied = observed is not None and sigma == 0
                if copied:
                    x = torch.where(observed(operators[key]).cpu(), x_file, x)
                for b, k in enumerate(batch):
                    item = items[k]
                    extra = {} if observed is None else {"observed_copied": copied}
                    if gray:
                        extra["gray"] = "measured as the channel mean of the prior's RGB image"
                    _stage_output(staged, item, x[b : b + 1], loaded[item.image][1], frames[b], common, {
                        "command": cmdline, "solver": info["solver"], "prior": common.prior,
                        "seed": None if info["seed"] is None else info["seed"] + b,
                        "steps": info["steps"], "sigma_y": info["sigma_y"],
                        "nfe": info.get("nfe"), "time_s": info.get("time_s"),
                        "task": command, "input": str(images[item.image]), "sample": item.sample,
                        "batch_size": len(batch), "device": str(device), "dtype": common.dtype,
                        **record, **extra, "options": info.get("options") or {},
                        "defaults": info.get("defaults"), "schedule": info.get("schedule"),
                        "regions": info.get("regions"), "tile": info.get("tile"),
                    })
    finally:
        bar.close()
    if not common.quiet:
        for item in items:
            echo(f"wrote {item.path}")
    return [item.path for item in items]


def _solve(y: Any, operator: Any, prior: Any, common: Common, sigma_y: float, opts: dict, *, seed: int,
           restore: Callable[..., tuple[Any, dict]], bar: Any, n_batches: int, frames: list[list],
           task: Task | None) -> tuple[Any, dict]:
    """One batch through the solver (or one denoiser call), updating the progress bar.

    Args:
        y: the measurements (B, C, h, w) on the device, float32 (one channel for a gray image
            with an RGB prior, whose ``operator`` is then a ``Grayscale``).
        frames: one list per image of the batch, receiving the (1, C, H, W) x0 estimates
            (on the CPU, clamped to [0, 1]) with ``--save-steps``.

    Returns:
        ``(x, info)``: info is :func:`pnp_restore.restore`'s record of what ran
        (``solver, seed, steps, sigma_y, options, nfe, time_s``).
    """
    import torch

    from ..operators.grayscale import Grayscale, rgb_observation

    if common.solver == DENOISER:
        start = time.perf_counter()
        gray = isinstance(operator, Grayscale)
        with torch.no_grad():
            # Gray: the MMSE denoiser needs i.i.d. noise per channel; rgb_observation gives an RGB
            # observation of the gray image with exactly that (std sqrt(3) sigma_y), seeded.
            z, level = rgb_observation(y, sigma_y, seed=seed, channels=operator.channels) if gray else (y, sigma_y)
            x = prior.denoise(z, level)
        bar.update(1)
        return x, {"solver": DENOISER, "seed": seed if gray else None, "steps": 1, "sigma_y": sigma_y, "nfe": 1,
                   "time_s": time.perf_counter() - start}

    seen = {"calls": 0, "steps": None}

    def callback(info: dict) -> None:
        steps = int(info.get("steps") or 0)
        if seen["steps"] is None:
            seen["steps"] = steps
            if bar.total is None and steps:
                bar.total = steps * n_batches
                bar.refresh()
        seen["calls"] += 1
        bar.update(1)
        if "nfe" in info:
            bar.set_postfix(nfe=int(info["nfe"]), refresh=False)
        every = max(1, math.ceil(steps / MAX_FRAMES)) if steps else 1
        if common.save_steps and info.get("x0") is not None and (seen["calls"] % every == 0 or seen["calls"] == steps):
            x0 = info["x0"].detach().to("cpu", torch.float32).clamp(0, 1)
            for b, f in enumerate(frames):
                f.append(x0[b : b + 1])

    kwargs = {"solver": common.solver, "sigma_y": sigma_y, "seed": seed, "callback": callback, "task": task,
              "defaults": common.defaults, **opts}
    if common.steps is not None:
        kwargs["steps"] = common.steps
    return restore(y, operator, prior, **kwargs)


def _latent_options(common: Common) -> dict[str, Any]:
    """The loading options that are set (a prior's own defaults apply to the others)."""
    given = {"prompt": common.prompt, "guidance": common.guidance, "offline": common.offline or None}
    return {k: v for k, v in given.items() if v is not None}


def _gray_operator(operator: Any) -> Any:
    """``operator`` of gray images, for an RGB prior: ``A(mean_c x)`` (:func:`pnp_restore.operators.grayscale.grayscale`)."""
    from ..operators.grayscale import grayscale

    return grayscale(operator)


def _as_input(x: Any, channels: int) -> Any:
    """An RGB result of a gray input as that input's colour model: the channel mean (what ``Grayscale`` measures)."""
    return x.mean(dim=1, keepdim=True) if channels == 1 and x.shape[1] == 3 else x


def _stage_output(staged: Any, item: Item, x: Any, meta: Any, frames: list, common: Common, record: dict) -> None:
    """Stage one result (already in the input's channels), its step frames and its sidecar in ``staged``."""
    from ..io import encode_image, sidecar_bytes

    staged.add(item.path, encode_image(item.path, x, meta))
    side = side_paths(item.path, common)
    if common.save_steps:
        frames = [_as_input(f, meta.channels) for f in frames]
        staged.add(side[-1], _steps_gif(frames or [x]))
    if common.sidecar:
        staged.add(side[0], sidecar_bytes(output=str(item.path), **record))


def _steps_gif(frames: list) -> bytes:
    """An animated GIF (Pillow) of (1, C, H, W) frames in [0, 1]."""
    import io as _io

    import numpy as np
    from PIL import Image

    arrays = [np.round(f[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for f in frames]
    pics = [Image.fromarray(a[..., 0] if a.shape[2] == 1 else a) for a in arrays]
    buf = _io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=120, loop=0)
    return buf.getvalue()
