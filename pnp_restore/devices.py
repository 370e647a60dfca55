"""Which torch device and dtype a run uses: one check for the CLI, the API, training and benchmarks."""

from __future__ import annotations

import torch

from .errors import ConfigError

_NAMES = "cpu, cuda, cuda:N or mps"


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', 'mps'; None or 'auto': CUDA, else MPS, else CPU) as a usable device.

    Raises:
        ConfigError: not a device name, or a device PyTorch cannot use on this machine.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(name)!r} is not a device name; use {_NAMES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r} was requested but CUDA is not available to PyTorch "
                              f"({torch.__version__}); use cpu")  # fmt: skip
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(name)!r} was requested but only {torch.cuda.device_count()} CUDA "
                              f"device(s) exist; use cuda:0 ... cuda:{torch.cuda.device_count() - 1}")  # fmt: skip
    elif dev.type == "mps":
        if not _has_mps():
            raise ConfigError(f"device {str(name)!r} was requested but Apple MPS is not available; use cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {str(name)!r}; use {_NAMES}")
    return dev


def check_dtype(dtype: torch.dtype | None) -> None:
    """Raise :class:`ConfigError` unless ``dtype`` is None or a floating torch dtype."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating torch dtype (e.g. torch.float32, torch.float16); got {dtype!r}")


__all__ = ["resolve_device", "check_dtype"]
