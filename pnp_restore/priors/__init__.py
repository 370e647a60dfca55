"""Priors: denoisers ``denoise(x, sigma) -> E[x0 | x]`` on the [0, 1] image scale.

``load(source)`` gives a pretrained prior (see ``docs/priors.md``); ``available()`` lists
the known ones. ``DDPMPrior`` and ``EDMPrior`` wrap networks of your own; ``LatentPrior``
(Stable Diffusion-type pipelines) denoises VAE latents. One module per format (``adm``,
``builtin``, ``diffusers``, ``edm``, ``latent``) reads its checkpoints with the helpers of
``checkpoints``; ``load`` only dispatches to them, and ``download`` fetches what is missing.
"""

from .base import Denoiser, Prior, karras_sigmas, range_sigmas, sigma_from_alpha_bar, sigma_tensor, vp_alpha_bar
from .ddpm import DDPMPrior
from .edm import EDMPrior
from .load import load
from .registry import available
from .schedules import DiscreteVPSchedule, betas
from .wrappers import PaddedPrior, TiledPrior

_LAZY = {"GaussianPrior": ".gaussian", "GaussianMixturePrior": ".gaussian", "ADMUNet": ".adm", "load_builtin": ".builtin",
         "LatentPrior": ".latent"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Denoiser", "Prior", "karras_sigmas", "range_sigmas", "sigma_tensor", "vp_alpha_bar", "sigma_from_alpha_bar",
    "load", "available", "DDPMPrior", "EDMPrior", "DiscreteVPSchedule", "betas",
    "PaddedPrior", "TiledPrior", "GaussianPrior", "GaussianMixturePrior", "ADMUNet", "LatentPrior",
]
