"""Planning a run before any work: output paths and their checks, memory, batches.

Click-free and torch-free: everything here is checked before the images are read
(outputs) or before the prior is loaded (memory).
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .settings import Common

@dataclasses.dataclass(frozen=True)
class Item:
    """One output: posterior sample ``sample`` of input ``image`` (an index into the inputs), written to ``path``."""

    image: int
    sample: int
    path: Path


def output_paths(images: Sequence[Path], output: str | None, samples: int) -> list[list[Path]]:
    """Output file(s) for each input: ``[[out_0, out_1, ...], ...]`` (one per sample)."""
    if output is not None and not output.strip():
        raise ConfigError("-o is empty (an unset shell variable?); give an output file or folder")
    out = Path(output) if output is not None else None
    as_folder = out is not None and (len(images) > 1 or out.is_dir() or output.endswith(("/", os.sep)))
    if as_folder and out.exists() and not out.is_dir():
        raise ConfigError(f"-o {output} is a file, but a folder is needed (several inputs, or a trailing /); "
                          "pass -o FOLDER/")
    outs = []
    for img in images:
        if out is None:
            base = img.with_name(f"{img.stem}_restored.png")
        elif as_folder:
            base = out / f"{img.stem}.png"
        else:
            base = out if out.suffix else out.with_suffix(".png")
        outs.append([base] if samples == 1 else [base.with_name(f"{base.stem}_{j}{base.suffix}") for j in range(samples)])
    return outs


def side_paths(out: Path, common: Common) -> list[Path]:
    """The files written beside output image ``out``: ``[OUT.json][, OUT_steps.gif]``."""
    paths = []
    if common.sidecar:
        paths.append(out.with_suffix(".json"))
    if common.save_steps:
        paths.append(out.with_name(f"{out.stem}_steps.gif"))
    return paths


def check_outputs(outs: list[list[Path]], common: Common, inputs: Sequence[Path]) -> None:
    """Every output (image, sidecar, steps file) is new (or --overwrite), writable, not an input, and unique."""
    from ..io import InputFiles, check_image_format, check_output

    seen: dict[Path, Path] = {}
    files = InputFiles(inputs)
    for p in (p for ps in outs for p in ps):
        check_image_format(p)
        for q in (p, *side_paths(p, common)):
            key = check_output(q, common.overwrite, inputs=files)
            if key in seen:
                raise ConfigError(f"two outputs would both be written to {key}; rename one input or give another -o")
            seen[key] = q


def available_memory(device: Any) -> int | None:
    """Bytes that can still be allocated on ``device`` (a ``torch.device``; None: unknown)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(batches: dict[tuple[int, ...], int], common: Common, available: int | None,
                 operators: dict[tuple[int, int], Any] | None = None) -> dict[tuple[int, ...], int | None]:
    """Refuse, before allocating, a run whose largest batch does not fit even in tiles; plan the tiles.

    Uses the built-in prior's measured model (:data:`pnp_restore.memory.DEFAULT_MODEL`; the network's
    share halved for 16-bit dtypes): the prior is not loaded yet. :func:`restore_planned` plans
    again with the loaded prior's own calibration.

    Args:
        batches: the shape (B, C, H, W) of the restored images -> the largest batch of that shape.
        available: bytes available on the device (:func:`available_memory`; None: unknown, no check).
        operators: (H, W) -> operator: an inpainting operator's holes make the solver work on regions
            only (:mod:`pnp_restore.regions`).

    Returns:
        shape -> the network's tile side (None: whole images); ``{}`` when ``available`` is None.

    Raises:
        ConfigError: even the smallest tiles do not fit; one line says what to do.
    """
    from ..memory import DEFAULT_MODEL, plan_tile

    if available is None:
        return {}
    half = 2 if common.dtype in ("float16", "bfloat16") else 1
    model = dataclasses.replace(DEFAULT_MODEL, net_bytes=DEFAULT_MODEL.net_bytes / half)
    plans = {}
    for shape, batch in batches.items():
        h, w = shape[-2:]
        operator = (operators or {}).get((h, w))
        regions = solve_regions(operator) if operator is not None else None
        solved = max((r.area for r in regions), default=0) if regions is not None else None
        plans[shape] = plan_tile(model, (h, w), available, batch=batch, solved=solved, tile=common.tile or None,
                                 device=common.device)
    return plans


_REGIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def solve_regions(operator: Any, margin: int | None = None) -> list | None:
    """The regions (:class:`pnp_restore.regions.Box`) the solver restores for an inpainting ``operator``
    (cached per operator); None for other operators (the whole image)."""
    from ..operators import Inpainting
    from ..regions import default_margin, hole_regions, missing_pixels

    if not isinstance(operator, Inpainting):
        return None
    margin = default_margin() if margin is None else margin
    cached = _REGIONS.get(operator)
    if cached is None or cached[0] != margin:
        cached = _REGIONS[operator] = (margin, hole_regions(missing_pixels(operator.mask), margin))
    return cached[1]


def restore_planned(y: Any, operator: Any, prior: Any, *, callback: Callable[[dict], None] | None = None,
                    seed: int | None = None, solver: str = "ddrm", available: int | None | bool = True,
                    restore: Callable[..., tuple[Any, dict]] | None = None, margin: int | None = None,
                    **kwargs: Any) -> tuple[Any, dict]:
    """:func:`pnp_restore.restore` (returning ``(x, info)``) sized to the machine.

    An inpainting problem with ``sigma_y = 0`` is solved region by region
    (:func:`pnp_restore.regions.restore_regions`: only the holes and their context; kept pixels
    outside stay exact); the network runs in tiles
    when the largest (sub-)problem does not fit in memory whole or is faster tiled
    (:func:`pnp_restore.memory.plan_tile`, with the prior's own calibration); a prior the user
    tiled (``--tile``) is used as it is. The callback sees one step per solver step of every
    region, with ``steps`` the total over the regions (a progress bar knows its length from the
    first call) and ``x0`` the whole image as restored so far. An allocator failure becomes one
    :class:`~pnp_restore.errors.ConfigError` line.

    Args:
        y: (B, C, H, W) measurement on [0, 1].
        available: bytes free on the device; True: :func:`available_memory` of ``y``'s device;
            None or False: unknown (tiles for speed only).
        restore: the solver call (default :func:`pnp_restore.restore` with ``return_info=True``).
        margin: context pixels around each hole (default :func:`pnp_restore.regions.default_margin` of the prior).
        kwargs: ``sigma_y``, ``steps``, ``task`` and solver options, passed on.

    Returns:
        ``(x, info)``: info as :func:`pnp_restore.restore` gives it (``nfe`` and ``time_s`` summed
        over the regions) plus ``regions`` (how many) and ``tile`` (the network's tile side or None).
    """
    import time

    from ..errors import PnPRestoreError
    from ..memory import calibrate, is_out_of_memory, out_of_memory_error, plan_tile
    from ..priors.wrappers import TiledPrior, default_overlap
    from ..regions import Box, default_margin

    if restore is None:
        from .pipeline import restore_with_info as restore
    if available is True:
        available = available_memory(y.device)
    batch, _, h, w = operator.x_shape(tuple(y.shape))  # the images', not the measurement's (super-resolution)
    # by regions only where the kept pixels are kept exactly (sigma_y = 0); a noisy photo is denoised whole
    regions = None if kwargs.get("sigma_y") else solve_regions(operator, default_margin(prior) if margin is None else margin)
    boxes = [Box(0, 0, h, w)] if regions is None else regions
    user_tile = prior.tile if isinstance(prior, TiledPrior) else None
    tile = None
    try:
        if boxes:
            try:
                model = calibrate(prior, solver, device=y.device)
            except PnPRestoreError:  # a prior of one fixed image size (an exact Gaussian): it runs whole
                model = None
            if model is not None:
                tile = plan_tile(model, (h, w), available or None, batch=batch, solved=max(b.area for b in boxes),
                                 tile=user_tile, device=y.device)
        net = prior if user_tile or tile is None else TiledPrior(prior, tile=tile, overlap=default_overlap(prior, tile))
        if not boxes:  # nothing to fill
            return y.clone(), {"solver": solver, "seed": seed, "steps": 0, "sigma_y": kwargs.get("sigma_y", 0.0),
                               "options": {}, "nfe": 0, "time_s": 0.0, "regions": 0, "tile": None}
        if boxes == [Box(0, 0, h, w)]:
            x, info = restore(y, operator, net, callback=callback, seed=seed, solver=solver, **kwargs)
            return x, {**info, "regions": 1, "tile": tile}
        return _by_regions(y, operator, net, boxes, callback, seed, solver, restore, kwargs, tile, time.perf_counter())
    except Exception as err:
        if is_out_of_memory(err):
            raise out_of_memory_error(err, image=(h, w), batch=batch, tile=tile or user_tile, device=y.device) from None
        raise


def _by_regions(y: Any, operator: Any, prior: Any, boxes: list, callback: Callable[[dict], None] | None,
                seed: int | None, solver: str, restore: Callable[..., tuple[Any, dict]], kwargs: dict,
                tile: int | None, start: float) -> tuple[Any, dict]:
    """:func:`restore_planned` of an inpainting problem over ``boxes`` (see there)."""
    import time

    from ..operators import Inpainting
    from ..regions import region_seed, restore_regions

    done: dict[str, Any] = {"nfe": 0, "info": None}
    canvas = y.clone()  # the result: y outside the regions; regions pasted in, in-progress x0 too

    def solve(y_crop: Any, box: Any, k: int) -> Any:
        rows, cols = box.slices

        def relay(info: dict) -> None:
            x0 = info.get("x0")
            if x0 is not None:
                canvas[..., rows, cols] = x0
            callback({**info, "steps": int(info.get("steps") or 0) * len(boxes),
                      "nfe": done["nfe"] + int(info.get("nfe") or 0), "x": None,
                      "x0": None if x0 is None else canvas, "region": k})

        sub = Inpainting(operator.mask[..., rows, cols])
        x, info = restore(y_crop, sub, prior, callback=relay if callback else None, seed=region_seed(seed, k),
                          solver=solver, **kwargs)
        done["nfe"] += int(info.get("nfe") or 0)
        done["info"] = info
        return x

    x = restore_regions(y, None, solve, margin=0, regions=boxes, out=canvas)
    info = {**(done["info"] or {}), "nfe": done["nfe"], "time_s": time.perf_counter() - start, "seed": seed,
            "regions": len(boxes), "tile": tile}
    return x, info


def plan_batches(keys: Sequence[Hashable], outs: list[list[Path]], batch_size: int) -> tuple[list[Item], list[list[int]]]:
    """The outputs in processing order and their batches.

    Inputs with equal ``keys`` (image size and sigma_y: what a batch must share) are
    grouped in order of first appearance, then in input order, then by sample; output
    k (in this order) uses seed ``seed + k`` whatever the batch size.

    Returns:
        ``(items, batches)``: batches are lists of indices into ``items``, each of at
        most ``batch_size`` items with one key.
    """
    groups = list(dict.fromkeys(keys))
    order = sorted(range(len(keys)), key=lambda i: groups.index(keys[i]))
    items = [Item(i, j, path) for i in order for j, path in enumerate(outs[i])]
    batches: list[list[int]] = []
    for k, item in enumerate(items):
        if batches and len(batches[-1]) < batch_size and keys[items[batches[-1][0]].image] == keys[item.image]:
            batches[-1].append(k)
        else:
            batches.append([k])
    return items, batches
