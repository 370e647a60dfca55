"""Reference methods that need no diffusion model.

Each has the solver signature ``fn(y, operator, prior=None, *, sigma_y=0.0,
steps=..., seed=None, **hyper) -> x`` (``prior`` and ``seed`` are ignored: all
three are deterministic) and returns (B, C, H, W) images, not clipped.

* ``pinv``: the pseudo-inverse ``A^+ y`` (``operator.pinv``).
* ``admm_tv``: ADMM (Boyd et al., 2011, sec. 6.4.1 form) for
  ``min_x ||A x - y||^2 / 2 + lam TV(x)`` with the isotropic colour TV;
  the TV prox is scikit-image's ``denoise_tv_chambolle`` (Chambolle, 2004),
  the data prox is ``operator.prox``.
* ``pnp_bm3d``: Plug-and-Play ADMM (Venkatakrishnan et al., 2013) with BM3D
  (Dabov et al., 2007; the ``bm3d`` package, optional) as the denoiser and a
  geometric denoiser-strength schedule (the continuation of Chan et al., 2017).

The hyper-parameters are hand-set defaults for images on [0, 1], not tuned per
task (no paper publishes settings for this exact protocol); they are keyword
arguments so a sweep can override them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import ConfigError

Tensor = torch.Tensor


def _per_image(fn: Callable[[np.ndarray], np.ndarray], x: Tensor) -> Tensor:
    """Apply a numpy (H, W, C) -> (H, W, C) function to each sample of x (B, C, H, W)."""
    arr = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    out = np.stack([fn(a) for a in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)


def _admm(y: Tensor, operator, denoise: Callable[[Tensor, float], Tensor], rhos: list[float], sigma_y: float) -> Tensor:
    """Scaled ADMM: x = prox_data(z - u; rho), z = denoise(x + u, rho), u += x - z; returns z.

    The data term is ``||A x - y||^2 / (2 sigma_y^2)`` (``operator.prox``; at sigma_y = 0
    the x-step is the projection onto ``A x = y``).
    """
    # Start from the data prox of mid-grey (the pseudo-inverse amplifies noise
    # and leaves holes at 0, both far from any image).
    grey = torch.full(operator.x_shape(tuple(y.shape)), 0.5, device=y.device, dtype=y.dtype)
    z = operator.prox(grey, y, rhos[0], sigma_y)
    u = torch.zeros_like(z)
    for rho in rhos:
        x = operator.prox(z - u, y, rho, sigma_y)
        z = denoise(x + u, rho)
        u = u + x - z
    return z


def pinv(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None, **hyper) -> Tensor:
    """Pseudo-inverse ``A^+ y``: (B, C, H, W), no prior, no noise handling."""
    return operator.pinv(y)


def admm_tv(
    y: Tensor,
    operator,
    prior=None,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    seed=None,
    lam: float | None = None,
    rho: float | None = None,
    **hyper,
) -> Tensor:
    """ADMM-TV: ``min_x ||A x - y||^2 / 2 + lam TV(x)``, ``steps`` iterations.

    Defaults: ``lam = max(sigma_y, 0.005)`` (TV weight of the order of the noise
    std, small for noiseless data), ``rho = 10 lam`` (TV prox weight ``lam / rho``
    = 0.1 per iteration).
    """
    from skimage.restoration import denoise_tv_chambolle

    lam = max(float(sigma_y), 0.005) if lam is None else float(lam)
    rho = 10 * lam if rho is None else float(rho)
    if lam <= 0 or rho <= 0:
        raise ConfigError(f"admm_tv needs lam > 0 and rho > 0; got lam={lam}, rho={rho}")

    def tv(v: Tensor, r: float) -> Tensor:
        return _per_image(lambda a: denoise_tv_chambolle(a, weight=lam / r, channel_axis=-1), v)

    # ||Ax-y||^2/2 is operator.prox's data term with sigma_y = 1.
    return _admm(y, operator, tv, [rho] * int(steps), 1.0)


def pnp_bm3d(
    y: Tensor,
    operator,
    prior=None,
    *,
    sigma_y: float = 0.0,
    steps: int = 8,
    seed=None,
    sigma_start: float = 0.1,
    sigma_end: float | None = None,
    **hyper,
) -> Tensor:
    """PnP-ADMM with BM3D: ``steps`` iterations, denoiser std decreasing geometrically
    from ``sigma_start`` to ``sigma_end`` (default ``max(sigma_y, 0.01)``); the ADMM
    penalty of a step is ``rho = 1 / sigma^2``, i.e. the data weight follows the denoiser.
    Raises :class:`ConfigError` if the ``bm3d`` package is not installed (``pip install bm3d``).
    """
    try:
        import bm3d
    except ImportError:
        raise ConfigError("pnp_bm3d needs the bm3d package; pip install bm3d (or pnp-restore[bench])") from None
    sigma_end = max(float(sigma_y), 0.01) if sigma_end is None else float(sigma_end)
    n = int(steps)
    sigmas = [sigma_start * (sigma_end / sigma_start) ** (i / max(n - 1, 1)) for i in range(n)]

    def denoise(v: Tensor, rho: float) -> Tensor:
        s = 1 / math.sqrt(rho)
        return _per_image(lambda a: bm3d.bm3d_rgb(a, s) if a.shape[-1] == 3 else bm3d.bm3d(a, s), v)

    return _admm(y, operator, denoise, [1 / s**2 for s in sigmas], float(sigma_y))


def available() -> dict[str, str]:
    """{baseline: why it cannot run} for the optional baselines that are missing."""
    try:
        import bm3d  # noqa: F401

        return {}
    except ImportError:
        return {"pnp_bm3d": "the bm3d package is not installed (pip install bm3d)"}


#: baselines by name (solver-like functions).
BASELINES: dict[str, Callable[..., Tensor]] = {"pinv": pinv, "admm_tv": admm_tv, "pnp_bm3d": pnp_bm3d}

__all__ = ["pinv", "admm_tv", "pnp_bm3d", "BASELINES", "available"]
