"""``load(source)``: one entry point for every kind of pretrained prior, and the
state-dict helpers the format modules share.

Weights are read once, without a second copy: ``torch.load(mmap=True, weights_only=True)``
or safetensors, the model is built on the meta device and the tensors are assigned
(``load_state_dict(assign=True)``). Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from ..devices import check_dtype, resolve_device
from ..errors import CheckpointError, ConfigError
from . import registry
from .base import Prior

Tensor = torch.Tensor

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_CONTAINER_KEYS = ("state_dict", "model", "ema", "net", "params_ema")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def torch_load_plain(path: Path, advice: str, pickled: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never code.

    Raises:
        CheckpointError: one line; a file that pickles classes or functions is refused (``pickled``
            says what to do instead), a damaged one gets ``advice``.
    """
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():  # the weights-only unpickler met a class or function
            raise CheckpointError(f"{path} holds pickled Python objects, refused for safety; {pickled or advice}") from None
        raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({_first_line(e)}); {advice}") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, OSError, ValueError... on a damaged file
        raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({_first_line(e)}); {advice}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or torch-saved checkpoint, memory-mapped where possible.

    Common containers ({"state_dict": ...}, {"model": ...}, {"ema": ...}) are unwrapped and a
    DataParallel ``module.`` prefix is stripped. Pickled Python objects are refused
    (``weights_only=True``): convert such files to a plain state dict first.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist; check the path or download it first")
    advice = "download it again"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError, OSError...
            raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({_first_line(e)}); {advice}") from None
    else:
        sd = torch_load_plain(
            path, advice, pickled="load it with its own code and save model.state_dict() with torch.save or safetensors"
        )
    for key in _CONTAINER_KEYS:
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and not any(isinstance(v, Tensor) for v in sd.values()):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors; save model.state_dict() instead")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def state_dict_mismatch(expected: dict[str, Any], found: dict[str, Tensor], show: int = 3) -> str:
    """'' when ``found`` has exactly the keys and shapes of ``expected``; else a short description."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} expected {tuple(v.shape)} found {tuple(found[k].shape)}"
        for k, v in expected.items()
        if k in found and tuple(v.shape) != tuple(found[k].shape)
    ]
    parts = [
        f"{len(items)} {what} ({', '.join(items[:show])}{', ...' if len(items) > show else ''})"
        for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes))
        if items
    ]
    return "; ".join(parts)


def load_module(factory: Callable[[], torch.nn.Module], state: dict[str, Tensor], what: str, hint: str = "") -> torch.nn.Module:
    """Build ``factory()`` on the meta device and assign ``state`` to it (no second copy).

    Raises CheckpointError naming the first missing, unexpected and wrong-shape keys when
    ``state`` does not fit. The module is returned in eval mode without gradients.
    """
    with torch.device("meta"):
        model = factory()
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{what} does not fit: {mismatch}{'; ' + hint if hint else ''}")
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in model.buffers()):  # non-persistent buffers built in __init__
        model = factory()
        model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the JSON config {path} ({_first_line(e)})") from None


def check_placement(device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """Raise :class:`ConfigError` unless ``device`` (None: default) exists here and ``dtype`` is a float dtype."""
    check_dtype(dtype)
    if device is not None:
        resolve_device(device)


def _load_adm_file(path: Path, arch: str | dict[str, Any] | None, options: dict[str, Any]) -> Prior:
    from .adm import PRESETS, adm_config, build_adm
    from .ddpm import DDPMPrior
    from .schedules import DiscreteVPSchedule

    state = read_state_dict(path)
    if arch is None:
        arch = _guess_adm_preset(state)
        if arch is None:
            raise CheckpointError(
                f"cannot tell the architecture of {path}: pass arch= an ADM preset ({', '.join(PRESETS)}), "
                f"a dict of guided-diffusion flags, or an EDM config; or write a JSON config to {path.with_suffix('.json')}"
            )
    cfg = adm_config(arch)
    if cfg["class_cond"]:
        raise ConfigError("class-conditional ADM models need labels and cannot serve as an unconditional prior")
    name = arch if isinstance(arch, str) else "the given ADM config"
    try:
        model = load_module(lambda: build_adm(cfg), state, f"{path} with ADM arch {name}")
    except CheckpointError as e:
        fits = _guess_adm_preset(state)
        hint = f"it looks like the {fits!r} preset" if fits else "pass the arch= it was trained with"
        raise CheckpointError(f"{e}; {hint}") from None
    return DDPMPrior(
        model,
        DiscreteVPSchedule(cfg["noise_schedule"], cfg["diffusion_steps"]),
        prediction="sample" if cfg["predict_xstart"] else "epsilon",
        learned_sigma=cfg["learn_sigma"],
        channels=cfg["in_channels"],
        native_size=(cfg["image_size"], cfg["image_size"]),
        multiple=model.multiple,
        **options,
    )


def _guess_adm_preset(state: dict[str, Tensor]) -> str | None:
    """Name of the ADM preset whose key/shape layout ``state`` has, if any."""
    from .adm import PRESETS, build_adm

    for name in PRESETS:
        with torch.device("meta"):
            expected = build_adm(name).state_dict()
        if len(expected) == len(state) and not state_dict_mismatch(expected, state):
            return name
    return None


def _load_file(path: Path, arch: str | dict[str, Any] | None, options: dict[str, Any]) -> Prior:
    if isinstance(arch, (str, os.PathLike)) and str(arch).endswith(".json"):
        arch = read_config(arch)
    if arch is None and path.with_suffix(".json").is_file():
        arch = read_config(path.with_suffix(".json"))
    if isinstance(arch, dict) and arch.get("format", "adm") == "edm":
        from .edm import load_edm

        return load_edm(path, arch, **options)
    if isinstance(arch, dict) and arch.get("format", "adm") != "adm":
        raise ConfigError(f"unknown config format {arch['format']!r}; use 'adm' or 'edm'")
    return _load_adm_file(path, arch, options)


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
    from .wrappers import PaddedPrior, TiledPrior

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
            raise ConfigError(f"{_first_line(e)}; see the prior class for the options it accepts") from None
        prior = prior.to(device=device, dtype=dtype or torch.float32)
    if channels_last:
        prior = prior.to(memory_format=torch.channels_last)
    prior.eval().requires_grad_(False)
    if pad is not None and prior.multiple > 1:
        prior = PaddedPrior(prior, prior.multiple, mode=pad)
    if tile is not None:
        prior = TiledPrior(prior, tile=tile, overlap=tile_overlap)
    return prior


__all__ = [
    "load", "check_placement", "read_state_dict", "torch_load_plain", "load_module", "state_dict_mismatch", "read_config", "WEIGHT_SUFFIXES",
]
