"""Discrete-time beta schedules and their variance-exploding view.

A DDPM with betas beta_0..beta_{T-1} has alpha_bar_t = prod_{s<=t} (1 - beta_s) and
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps on the network's [-1, 1] scale.
Dividing by sqrt(alpha_bar_t) gives the VE form x_0 + sigma_net eps with
sigma_net = sqrt((1 - alpha_bar_t) / alpha_bar_t); on the library's [0, 1] image scale
sigma = sigma_net / 2 (see :func:`pnp_restore.priors.base.sigma_from_alpha_bar`).
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from .base import sigma_from_alpha_bar

Tensor = torch.Tensor

SCHEDULES = ("linear", "cosine", "sigmoid", "quadratic")
RESPACINGS = ("uniform", "linspace", "quad")


def betas(name: str, T: int = 1000, beta_start: float | None = None, beta_end: float | None = None) -> Tensor:
    """Beta schedule ``name`` with ``T`` steps, float64 tensor of shape (T,).

    * ``linear``: Ho et al. (2020), linspace(1e-4, 0.02) scaled by 1000 / T so that
      the schedule keeps its shape for any T (Nichol & Dhariwal 2021, guided-diffusion).
      Explicit ``beta_start``/``beta_end`` are used unscaled (diffusers' behaviour).
    * ``cosine``: Nichol & Dhariwal (2021): alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2),
      s = 0.008, betas clipped at 0.999 (diffusers ``squaredcos_cap_v2``).
    * ``sigmoid``: GeoDiff (Xu et al. 2022): sigmoid(linspace(-6, 6, T)) rescaled to
      [beta_start, beta_end], default [1e-4, 0.02] (diffusers ``sigmoid``).
    * ``quadratic``: linear in sqrt(beta), linspace(sqrt(beta_start), sqrt(beta_end))^2,
      default [1e-4, 0.02] as DDIM's ``quad``; Stable Diffusion's ``scaled_linear`` is
      ``beta_start=0.00085, beta_end=0.012``.
    """
    if T < 1:
        raise ConfigError(f"the number of diffusion steps T must be >= 1; got {T}")
    if name == "cosine":

        def f(t: int) -> float:
            return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)], dtype=torch.float64)
    if name not in SCHEDULES:
        raise ConfigError(f"unknown beta schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    scale = 1000 / T if name == "linear" and beta_start is None and beta_end is None else 1.0
    lo = scale * (1e-4 if beta_start is None else beta_start)
    hi = scale * (0.02 if beta_end is None else beta_end)
    if name == "linear":
        return torch.linspace(lo, hi, T, dtype=torch.float64)
    if name == "quadratic":
        return torch.linspace(lo**0.5, hi**0.5, T, dtype=torch.float64) ** 2
    return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (hi - lo) + lo


def _table_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


class DiscreteVPSchedule(torch.nn.Module):
    """A discrete VP (DDPM) schedule seen as noise levels on the [0, 1] image scale.

    A module so that the prior holding it moves its lookup table with ``prior.to(device)``
    (a non-persistent buffer: not in state dicts). The table keeps float64 (float32 on MPS)
    whatever dtype the prior is cast to, since timesteps must stay exact.

    Args:
        betas: (T,) betas in (0, 1), or the name of a schedule from :func:`betas`.
        T: number of steps when ``betas`` is a name.

    Attributes:
        betas, alphas_cumprod: (T,) float64, on the CPU.
        sigmas: (T,) float64 on the CPU, increasing in t: sigma_t = sqrt((1 - ab_t) / ab_t) / 2.
        log_sigmas: (T,) buffer, log of ``sigmas`` on the module's device.
        sigma_min, sigma_max: sigmas[0], sigmas[-1] as floats.
    """

    def __init__(self, betas_: Tensor | str, T: int = 1000) -> None:
        super().__init__()
        b = betas(betas_, T) if isinstance(betas_, str) else torch.as_tensor(betas_, dtype=torch.float64).flatten()
        if b.numel() < 1 or bool((b <= 0).any()) or bool((b >= 1).any()):
            raise ConfigError("betas must all lie strictly between 0 and 1 (alpha_bar must stay > 0)")
        self.betas = b
        self.alphas_cumprod = torch.cumprod(1 - b, 0)
        self.sigmas = sigma_from_alpha_bar(self.alphas_cumprod)
        self.register_buffer("log_sigmas", self.sigmas.log(), persistent=False)
        if not bool((self.log_sigmas.diff() > 0).all()):
            raise ConfigError("the schedule's noise levels must increase strictly with t")

    def _apply(self, fn, recurse: bool = True):
        # Follow the module's device but not its dtype (.half() would round the timesteps).
        device = fn(torch.zeros(())).device
        self.log_sigmas = self.sigmas.log().to(device, _table_dtype(device))
        return self

    @property
    def T(self) -> int:
        return self.betas.numel()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_from_sigma(self, sigma: Tensor, quantize: bool = False) -> Tensor:
        """Timesteps (float, same shape as ``sigma``) whose noise level is ``sigma``.

        Continuous (default): piecewise-linear interpolation in log-sigma between the
        two neighbouring discrete timesteps (as k-diffusion's ``DiscreteSchedule``);
        values within 1e-3 of an integer are snapped to it, so the schedule's own sigmas
        map exactly to their integer timesteps even after a float32 round trip.
        ``quantize=True`` returns the nearest timestep in log-sigma instead.
        Sigmas outside [sigma_min, sigma_max] are clamped to t = 0 or T - 1.
        """
        dtype = _table_dtype(sigma.device)
        table = self.log_sigmas.to(sigma.device, dtype)  # a no-op once the prior is on sigma's device
        ls = sigma.to(dtype).clamp_min(torch.finfo(dtype).tiny).log().clamp(table[0], table[-1])
        if quantize:
            return (ls[..., None] - table).abs().argmin(-1).to(dtype)
        if self.T == 1:
            return torch.zeros_like(ls)
        hi = torch.searchsorted(table, ls.contiguous()).clamp(1, self.T - 1)
        lo = hi - 1
        w = (ls - table[lo]) / (table[hi] - table[lo])
        t = lo.to(dtype) + w
        r = t.round()
        return torch.where((t - r).abs() < 1e-3, r, t)

    def respaced(self, steps: int, kind: str = "uniform") -> Tensor:
        """``steps`` timesteps (int64, decreasing: the sampling order) of the original T.

        * ``uniform``: DDIM's (Song et al. 2021) ``skip = T // steps``, t_i = i * skip
          (also DDRM, DDNM). When ``steps`` does not divide T, DDIM's
          ``range(0, T, skip)`` has a few more entries; we keep the first ``steps``.
        * ``linspace``: guided-diffusion's ``space_timesteps(T, [steps])``:
          round(i (T - 1) / (steps - 1)), which includes t = T - 1.
        * ``quad``: DDIM's quadratic skip, int(linspace(0, sqrt(0.8 T), steps)^2).
        """
        T = self.T
        if not 1 <= steps <= T:
            raise ConfigError(f"steps must be between 1 and the schedule's T = {T}; got {steps}")
        if kind == "uniform":
            t = torch.arange(steps) * (T // steps)
        elif kind == "linspace":
            stride = (T - 1) / (steps - 1) if steps > 1 else 1
            t = torch.tensor([round(i * stride) for i in range(steps)])
        elif kind == "quad":
            t = (torch.linspace(0, math.sqrt(T * 0.8), steps, dtype=torch.float64) ** 2).long()
            if len(set(t.tolist())) < steps:
                raise ConfigError(f"'quad' respacing repeats timesteps for steps={steps}; use 'uniform'")
        else:
            raise ConfigError(f"unknown respacing {kind!r}; choose one of {', '.join(RESPACINGS)}")
        return t.flip(0).to(torch.int64)

    def extra_repr(self) -> str:
        return f"T={self.T}, sigma_min={self.sigma_min:.4g}, sigma_max={self.sigma_max:.4g}"


__all__ = ["betas", "DiscreteVPSchedule", "SCHEDULES", "RESPACINGS"]
