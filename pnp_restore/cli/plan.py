"""Planning a run before any work: output paths and their checks, memory, batches.

Click-free and torch-free: everything here is checked before the images are read
(outputs) or before the prior is loaded (memory).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .settings import Common

#: rough peak memory per pixel of the restored image, measured with the built-in prior on
#: a CPU in float32 (256^2 and 512^2 pixels, DDRM): the network's activations take about
#: 2.5 kB per pixel it denoises at once (a whole image, or one --tile x --tile tile), the
#: solver's state about 0.25 kB per image pixel.
NET_BYTES_PER_PIXEL = 2600
SOLVER_BYTES_PER_PIXEL = 256


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


def check_memory(batches: dict[tuple[int, ...], int], common: Common, available: int | None) -> None:
    """Refuse, before allocating, a run whose largest batch does not fit in memory.

    Args:
        batches: the shape (B, C, H, W) of the restored images -> the largest batch of that shape.
        available: bytes available on the device (:func:`available_memory`; None: unknown, no check).
    """
    if available is None:
        return
    half = 2 if common.dtype in ("float16", "bfloat16") else 1
    for (_, _, h, w), batch in batches.items():
        pixels = h * w
        at_once = min(pixels, common.tile**2) if common.tile else pixels
        need = batch * (pixels * SOLVER_BYTES_PER_PIXEL + at_once * NET_BYTES_PER_PIXEL // half)
        if need > available:
            tiled = common.tile and common.tile <= 256 and batch == 1
            advice = ("the image is too large for this machine even tiled; downscale it or use a machine with more memory"
                      if tiled else "use --tile 256 and --batch-size 1")
            raise ConfigError(
                f"restoring {batch} image(s) of {w}x{h} at once needs about {need / 2**30:.1f} GiB of memory "
                f"but {available / 2**30:.1f} GiB are available; {advice}"
            )


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
