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


def _hub(hub_id: str, options: dict[str, Any], offline: bool | None, half: bool) -> Prior:
    """A hub id (a registry entry's, an alias, or any other): cached, else downloaded; latent or pixel by its files."""
    from .download import hub_snapshot, snapshot_complete

    name = registry.entry_of_hub_id(hub_id)
    if name is not None:  # a known model: any of its ids complete in the local cache, else its current id
        entry = registry.ENTRIES[name]
        for candidate in registry.hub_ids(entry):
            folder = registry.hub_folder(candidate)
            if folder is not None and snapshot_complete(folder):
                return _folder(folder, options)
        hub_id = entry["hub_id"]
    return _folder(hub_snapshot(hub_id, offline=offline, half=half), options)


def _folder(path: Path, options: dict[str, Any]) -> Prior:
    """A diffusers folder: a latent pipeline (with a VAE) or a pixel UNet2DModel one."""
    from .latent import is_latent_pipeline

    if is_latent_pipeline(path):
        from .latent import load_latent

        return load_latent(path, **options)
    from .diffusers import load_diffusers

    return load_diffusers(path, **options)


def _build(source: str | os.PathLike, arch: str | dict[str, Any] | None, options: dict[str, Any],
           offline: bool | None = None, half: bool = False) -> Prior:
    if isinstance(source, str) and source in registry.ENTRIES:
        entry = registry.ENTRIES[source]
        if "hub_id" in entry:
            return _hub(entry["hub_id"], options, offline, half)
        path = registry.weights_dir() / entry["filename"]
        if not path.is_file():
            manual = (f"download {entry['url']} and save it as {path} "
                      f"(or set {registry.HOME_ENV} to the folder that holds {entry['filename']})")
            if not entry.get("download"):
                raise CheckpointError(f"prior {source!r} is not installed: {manual}")
            from .download import fetch_file

            fetch_file(entry["download"], path, entry.get("sha256"), offline=offline, manual=manual)
        return _load_file(path, arch or entry.get("arch", source), options)
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder(path, options)
    if path.is_file():
        return _load_file(path, arch, options)
    text = str(source)
    if path.suffix in WEIGHT_SUFFIXES or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint {text} does not exist; check the path")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return _hub(text, options, offline, half)
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
    offline: bool | None = None,
    **options: Any,
) -> Prior:
    """Load a pretrained prior.

    Args:
        source: ``"builtin"``, a preset name (see :func:`available`), a Hugging Face hub id,
            a diffusers folder (pixel ``UNet2DModel`` pipelines, or Stable Diffusion-type latent
            pipelines, told apart by the VAE in ``model_index.json``: those give a
            :class:`~pnp_restore.priors.latent.LatentPrior`), or a ``.pt/.pth/.bin/.safetensors``
            file (guided-diffusion ADM state dicts, or an EDM network with a JSON config).
            A preset or hub id that is not installed is downloaded (with a progress bar) unless
            offline: see :mod:`pnp_restore.priors.download`.
        arch: for files: an ADM preset name, a dict of guided-diffusion flags, a dict / JSON
            path ``{"format": "edm", "class": "module:Class", "kwargs": {...}}`` whose class is in
            :data:`pnp_restore.priors.edm.ARCHITECTURES` (a config never imports code). Defaults
            to the JSON next to the file, else the ADM preset whose key layout the file has.
        device, dtype: where and in which precision the network runs (default CPU float32;
            float16/bfloat16 are meant for GPUs). Inputs of any float dtype are accepted.
        channels_last: store the network's weights in channels-last memory format.
        pad: padding mode (``F.pad``) used to reach the network's size multiple; ``None`` disables.
        tile, tile_overlap: denoise in overlapping tiles of ``tile`` pixels (see :class:`TiledPrior`;
            pixel priors only: latent priors tile in their VAE, ``vae_tiling``).
        offline: never download (also when ``HF_HUB_OFFLINE=1``): a prior that is not installed
            fails at once with one line saying what to fetch.
        **options: passed to the prior (e.g. ``clip``, ``respacing``, ``quantize`` for DDPM priors;
            ``prompt``, ``guidance``, ``negative_prompt``, ``vae_tiling`` for latent priors);
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
            prior = _build(source, arch, options, offline, dtype in (torch.float16, torch.bfloat16))
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
        if hasattr(prior, "latent_channels"):  # the wrappers' generic vp() assumes the [0, 1] pixel scale
            raise ConfigError("tile= is for pixel priors; a latent prior's VAE tiles large images itself (vae_tiling) "
                              "and its UNet takes any latent size: drop tile")
        prior = TiledPrior(prior, tile=tile, overlap=tile_overlap)
    return prior


__all__ = ["load"]
