"""``load(source)``: one entry point for every kind of pretrained prior.

It only decides which format loader reads ``source`` (the built-in prior, a registry preset,
an ADM or EDM file, a diffusers folder or hub id) and wraps the result for placement, padding
and tiling. The loaders share the helpers of :mod:`pnp_restore.priors.checkpoints`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from . import registry
from .base import Prior
from .checkpoints import WEIGHT_SUFFIXES, check_placement, first_line, read_config
from .edm import load_edm
from .wrappers import PaddedPrior, TiledPrior

# The ADM, diffusers and built-in loaders are imported when a source needs them, so that importing
# the package does not load every format's code.


def _load_file(path: Path, arch: str | dict[str, Any] | None, options: dict[str, Any]) -> Prior:
    """An ADM or EDM state dict file; ``arch`` (or the JSON next to the file) says which."""
    if isinstance(arch, (str, os.PathLike)) and str(arch).endswith(".json"):
        arch = read_config(arch)
    if arch is None and path.with_suffix(".json").is_file():
        arch = read_config(path.with_suffix(".json"))
    if isinstance(arch, dict) and arch.get("format", "adm") == "edm":
        return load_edm(path, arch, **options)
    if isinstance(arch, dict) and arch.get("format", "adm") != "adm":
        raise ConfigError(f"unknown config format {arch['format']!r}; use 'adm' or 'edm'")
    from .adm import load_adm

    return load_adm(path, arch, **options)


def _build(source: str | os.PathLike, arch: str | dict[str, Any] | None, options: dict[str, Any]) -> Prior:
    if isinstance(source, str) and source in registry.ENTRIES:
        entry = registry.ENTRIES[source]
        if entry["format"] == "diffusers":
            from .diffusers import load_diffusers

            return load_diffusers(entry["hub_id"], **options)
        path = registry.weights_dir() / entry["filename"]
        if not path.is_file():
            raise CheckpointError(
                f"prior {source!r} is not installed: download {entry['url']} and save it as {path} "
                f"(or set {registry.HOME_ENV} to the folder that holds {entry['filename']})"
            )
        return _load_file(path, arch or entry.get("arch", source), options)
    path = Path(source).expanduser()
    if path.is_dir():
        from .diffusers import load_diffusers

        return load_diffusers(path, **options)
    if path.is_file():
        return _load_file(path, arch, options)
    text = str(source)
    if path.suffix in WEIGHT_SUFFIXES or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint {text} does not exist; check the path")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        from .diffusers import load_diffusers

        return load_diffusers(text, **options)
    raise ConfigError(
        f"unknown prior {text!r}; use one of {', '.join(registry.names())}, a .pt/.safetensors file, "
        "a diffusers folder or a Hugging Face hub id"
    )


def load(
    source: str | os.PathLike,
    *,
    arch: str | dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    pad: str | None = "reflect",
    tile: int | None = None,
    tile_overlap: int = 32,
    **options: Any,
) -> Prior:
    """Load a pretrained prior.

    Args:
        source: ``"builtin"``, a preset name (see :func:`available`), a Hugging Face hub id
            (from the local cache only), a diffusers folder, or a ``.pt/.pth/.bin/.safetensors``
            file (guided-diffusion ADM state dicts, or an EDM network with a JSON config).
        arch: for files: an ADM preset name, a dict of guided-diffusion flags, a dict / JSON
            path ``{"format": "edm", "class": "module:Class", "kwargs": {...}}`` whose class is in
            :data:`pnp_restore.priors.edm.ARCHITECTURES` (a config never imports code). Defaults
            to the JSON next to the file, else the ADM preset whose key layout the file has.
        device, dtype: where and in which precision the network runs (default CPU float32;
            float16/bfloat16 are meant for GPUs). Inputs of any float dtype are accepted.
        channels_last: store the network's weights in channels-last memory format.
        pad: padding mode (``F.pad``) used to reach the network's size multiple; ``None`` disables.
        tile, tile_overlap: denoise in overlapping tiles of ``tile`` pixels (see :class:`TiledPrior`).
        **options: passed to the prior (e.g. ``clip``, ``respacing``, ``quantize`` for DDPM priors);
            one it does not take is a :class:`ConfigError` (the built-in prior takes none).

    Raises:
        ConfigError: unknown source or option, ``device`` not available, ``dtype`` not a float type.
        CheckpointError: missing, truncated or mismatching weights; a config naming a class
            outside the allowed architectures.
    """
    check_placement(device, dtype)
    if source == "builtin":
        from .builtin import load_builtin

        extra = sorted(options) + (["arch"] if arch is not None else [])
        if extra:
            raise ConfigError(
                f"the built-in prior takes no option(s) {', '.join(extra)}; it accepts device, dtype, "
                "channels_last, pad, tile and tile_overlap"
            )
        prior = load_builtin(device=device, dtype=dtype)
    else:
        try:
            prior = _build(source, arch, options)
        except TypeError as e:  # an option the prior class does not take
            if "keyword argument" not in str(e):
                raise
            raise ConfigError(f"{first_line(e)}; see the prior class for the options it accepts") from None
        prior = prior.to(device=device, dtype=dtype or torch.float32)
    if channels_last:
        prior = prior.to(memory_format=torch.channels_last)
    prior.eval().requires_grad_(False)
    if pad is not None and prior.multiple > 1:
        prior = PaddedPrior(prior, prior.multiple, mode=pad)
    if tile is not None:
        prior = TiledPrior(prior, tile=tile, overlap=tile_overlap)
    return prior


__all__ = ["load"]
