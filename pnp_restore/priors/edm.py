"""Networks already preconditioned as EDM denoisers D(x; sigma) (Karras et al. 2022) as priors.

``D(x; sigma) ~= E[x0 | x]`` for ``x = x0 + sigma n`` on the network's data range (EDM: [-1, 1]),
so the prior only rescales: ``x_net = lo + (hi - lo) x`` and ``sigma_net = (hi - lo) sigma``.

NVlabs' EDM/EDM2 ``.pkl`` files pickle their Python classes (``training.networks``...) and
cannot be read without that code. Load the pickle with the NVlabs repository on the path,
then either wrap the network directly (``EDMPrior(data["ema"])``) or save
``net.state_dict()`` with safetensors plus a JSON config for :func:`load_edm`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from .base import Prior, sigma_tensor
from .ddpm import module_dtype
from .load import load_module, read_state_dict

Tensor = torch.Tensor


class EDMPrior(Prior):
    """Wrap a denoiser ``net(x, sigma) -> D`` (EDM preconditioning included) as a [0, 1]-scale prior.

    Args:
        net: module called as ``net(x_net, sigma_net)`` with x_net (B, C, H, W) on ``data_range``
            and sigma_net (B,) on that scale; returns the denoised image on ``data_range``.
        sigma_data: the data standard deviation the network's preconditioning uses (EDM: 0.5 on
            [-1, 1]); recorded for solvers, the network applies it itself.
        data_range: (lo, hi) of the network's images.
        sigma_min, sigma_max: training range on the network's scale (EDM: 0.002, 80);
            stored on the [0, 1] scale (divided by hi - lo).
        channels, native_size, multiple: see :class:`Prior`.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        sigma_data: float = 0.5,
        data_range: tuple[float, float] = (-1.0, 1.0),
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        channels: int | None = None,
        native_size: tuple[int, int] | None = None,
        multiple: int = 1,
    ) -> None:
        super().__init__()
        lo, hi = (float(v) for v in data_range)
        if not hi > lo:
            raise ConfigError(f"data_range must be (lo, hi) with hi > lo; got {data_range}")
        self.net, self.sigma_data, self.data_range = net, sigma_data, (lo, hi)
        self.sigma_min, self.sigma_max = sigma_min / (hi - lo), sigma_max / (hi - lo)
        self.channels = channels or getattr(net, "img_channels", None) or getattr(net, "in_channels", None)
        self.native_size = native_size
        self.multiple = multiple

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """E[x0 | x] on [0, 1]; x: (B, C, H, W), sigma: float or (B,) on the [0, 1] scale."""
        self.check_input(x)
        lo, hi = self.data_range
        s = sigma_tensor(sigma, x) * (hi - lo)
        dtype = module_dtype(self.net, x.dtype)
        d = self.net((lo + (hi - lo) * x).to(dtype), s.to(dtype))
        return (d.to(x.dtype) - lo) / (hi - lo)


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"cannot import {path!r} named in the EDM config ({e}); use 'package.module:ClassName'") from None


def load_edm(weights: str | os.PathLike, config: dict[str, Any], **options: Any) -> EDMPrior:
    """An :class:`EDMPrior` from a state dict file (``.safetensors``/``.pt``) and a config dict.

    Config keys: ``class`` ("package.module:ClassName" of the network, which must accept
    ``(x, sigma)``), ``kwargs`` (its constructor arguments), and optionally ``sigma_data``,
    ``data_range``, ``sigma_min``, ``sigma_max``, ``channels``, ``native_size``, ``multiple``.
    The network is built on the meta device and the weights are assigned without a copy.
    """
    if "class" not in config:
        raise ConfigError("an EDM config needs 'class': 'package.module:ClassName' (and 'kwargs')")
    cls = _import(config["class"])
    kwargs = dict(config.get("kwargs", {}))
    state = read_state_dict(weights)
    try:
        net = load_module(lambda: cls(**kwargs), state, f"{weights} with {config['class']}")
    except TypeError as e:
        raise CheckpointError(f"cannot build {config['class']} from the config kwargs ({e})") from None
    keys = ("sigma_data", "data_range", "sigma_min", "sigma_max", "channels", "native_size", "multiple")
    settings = {k: config[k] for k in keys if k in config}
    if "native_size" in settings:
        settings["native_size"] = tuple(settings["native_size"])
    return EDMPrior(net, **{**settings, **options})


__all__ = ["EDMPrior", "load_edm"]
