"""Checkpoint helpers shared by the format loaders: read a state dict, check it against a
network, build the network on the meta device and assign the weights.

Weights are read once, without a second copy: ``torch.load(mmap=True, weights_only=True)``
or safetensors, the model is built on the meta device and the tensors are assigned
(``load_state_dict(assign=True)``). Nothing here touches the network's numerics.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..devices import check_dtype, resolve_device
from ..errors import CheckpointError

Tensor = torch.Tensor

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_CONTAINER_KEYS = ("state_dict", "model", "ema", "net", "params_ema")


def first_line(e: BaseException) -> str:
    """``"ExceptionType: first line of its message"``, at most 200 characters (for one-line errors)."""
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
        raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({first_line(e)}); {advice}") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, OSError, ValueError... on a damaged file
        raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({first_line(e)}); {advice}") from None


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
            raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({first_line(e)}); {advice}") from None
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
    """The JSON object in ``path``; :class:`CheckpointError` (one line) if it cannot be read or parsed."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the JSON config {path} ({first_line(e)})") from None


def check_placement(device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """Raise :class:`ConfigError` unless ``device`` (None: default) exists here and ``dtype`` is a float dtype."""
    check_dtype(dtype)
    if device is not None:
        resolve_device(device)


__all__ = [
    "WEIGHT_SUFFIXES", "check_placement", "first_line", "load_module", "read_config", "read_state_dict",
    "state_dict_mismatch", "torch_load_plain",
]
