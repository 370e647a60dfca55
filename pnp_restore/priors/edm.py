"""Networks already preconditioned as EDM denoisers D(x; sigma) (Karras et al. 2022) as priors.

``D(x; sigma) ~= E[x0 | x]`` for ``x = x0 + sigma n`` on the network's data range (EDM: [-1, 1]),
so the prior only rescales: ``x_net = lo + (hi - lo) x`` and ``sigma_net = (hi - lo) sigma``.

NVlabs' EDM/EDM2 ``.pkl`` files pickle their Python classes (``training.networks``...) and
cannot be read without that code. Load the pickle with the NVlabs repository on the path,
then either wrap the network directly (``EDMPrior(data["ema"])``) or save
``net.state_dict()`` with safetensors plus a JSON config for :func:`load_edm`, after
registering the class (:func:`register_architecture`): a config only names allowed classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from .base import Prior, sigma_tensor
from .builtin_net import EDMDenoiser, UNetConfig
from .checkpoints import load_module, read_state_dict
from .ddpm import module_dtype

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


def _builtin_denoiser(**kwargs: Any) -> torch.nn.Module:
    return EDMDenoiser(UNetConfig.from_dict(kwargs))


#: The networks an EDM config may name: ``"module:Class"`` -> factory called with the config's
#: ``kwargs``. A JSON config is data from wherever the checkpoint came from, so it never makes
#: the loader import or call anything else; register networks of your own in Python
#: (:func:`register_architecture`) or wrap them directly with :class:`EDMPrior`.
ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {
    "pnp_restore.priors.builtin:EDMDenoiser": _builtin_denoiser,  # the name saved configs use; defined in builtin_net
}


def register_architecture(name: str, factory: Callable[..., torch.nn.Module]) -> None:
    """Allow EDM configs to name ``name`` (``"package.module:ClassName"``), built as ``factory(**kwargs)``."""
    ARCHITECTURES[name] = factory


def _architecture(name: Any) -> Callable[..., torch.nn.Module]:
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise CheckpointError(
            f"the EDM config names class {name!r}, which is not an allowed architecture "
            f"({', '.join(ARCHITECTURES)}); configs cannot import code: register yours with "
            "pnp_restore.priors.edm.register_architecture or wrap the network with EDMPrior(net)"
        )
    return ARCHITECTURES[name]


def load_edm(weights: str | os.PathLike, config: dict[str, Any], **options: Any) -> EDMPrior:
    """An :class:`EDMPrior` from a state dict file (``.safetensors``/``.pt``) and a config dict.

    Config keys: ``class`` (a name in :data:`ARCHITECTURES`, e.g.
    ``"pnp_restore.priors.builtin:EDMDenoiser"``; the network must accept ``(x, sigma)``),
    ``kwargs`` (its constructor arguments), and optionally ``sigma_data``, ``data_range``,
    ``sigma_min``, ``sigma_max``, ``channels``, ``native_size``, ``multiple``.
    The network is built on the meta device and the weights are assigned without a copy.

    Raises:
        CheckpointError: ``class`` is not an allowed architecture (nothing is imported or called),
            or the weights do not fit it.
    """
    if "class" not in config:
        raise CheckpointError(f"an EDM config needs 'class': one of {', '.join(ARCHITECTURES)} (and 'kwargs')")
    cls = _architecture(config["class"])
    kwargs = config.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"the EDM config's 'kwargs' must be a JSON object; got {type(kwargs).__name__}")
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


__all__ = ["ARCHITECTURES", "EDMPrior", "load_edm", "register_architecture"]
