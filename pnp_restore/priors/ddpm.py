"""Adapter from a discrete-time DDPM network (eps / v / x0 prediction) to :class:`Prior`.

The network was trained on [-1, 1] images in the VP form x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps
(Ho et al. 2020). A [0, 1]-scale VE input x = x_0 + sigma n maps to it exactly:
x_net = 2 x - 1 has noise level sigma_net = 2 sigma, ab = 1 / (1 + sigma_net^2) and
x_t = sqrt(ab) x_net. ``denoise`` does that mapping; ``vp`` takes x_t itself (the solvers' path).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, ShapeError
from .base import Prior, sigma_tensor
from .schedules import DiscreteVPSchedule

Tensor = torch.Tensor

PREDICTIONS = ("epsilon", "v", "sample")


def call_model(model: torch.nn.Module, x: Tensor, t: Tensor) -> Tensor:
    """``model(x, t)`` for plain modules, diffusers models (``.sample``) and tuple outputs."""
    out = model(x, t)
    if hasattr(out, "sample"):
        return out.sample
    return out[0] if isinstance(out, (tuple, list)) else out


def module_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """dtype of the module's first floating parameter (``default`` if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), default)


class DDPMPrior(Prior):
    """A DDPM / ADM / diffusers network as a [0, 1]-scale denoiser.

    Args:
        model: ``model(x_t, t) -> output`` with x_t (B, C, H, W) on [-1, 1] (VP scaled) and
            t (B,) float timesteps in [0, T - 1] (fractional between discrete steps).
            diffusers ``UNet2DModel`` outputs (``.sample``) are unwrapped.
        schedule: a :class:`DiscreteVPSchedule`, a (T,) tensor of betas, or a schedule name.
        prediction: what the network predicts: ``"epsilon"`` (Ho et al. 2020),
            ``"v"`` (Salimans & Ho 2022, v = sqrt(ab) eps - sqrt(1 - ab) x_0) or
            ``"sample"`` (x_0 directly).
        learned_sigma: the network outputs 2C channels (the prediction, then the
            variance interpolation of Nichol & Dhariwal 2021); only the first C are used.
        clip: clamp the x_0 estimate to [-1, 1] (guided-diffusion's ``clip_denoised``).
        respacing: how :meth:`sigmas` picks timesteps (see :meth:`DiscreteVPSchedule.respaced`).
        quantize: round the timestep of a sigma to the nearest discrete one instead of
            interpolating (see :meth:`DiscreteVPSchedule.t_from_sigma`).
        channels, native_size, multiple: see :class:`Prior`; ``channels`` defaults to
            the model's ``in_channels`` when it has one.

    Noise levels between the discrete ones are served by feeding the network a fractional
    timestep (its sinusoidal embedding is defined for any real t) while the scalings use the
    exact ab of the requested sigma, as k-diffusion does; at the schedule's own sigmas the
    timestep is the exact integer, so published samplers are reproduced.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        schedule: DiscreteVPSchedule | Tensor | str,
        prediction: str = "epsilon",
        learned_sigma: bool = False,
        clip: bool = False,
        respacing: str = "uniform",
        quantize: bool = False,
        channels: int | None = None,
        native_size: tuple[int, int] | None = None,
        multiple: int = 1,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ConfigError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
        self.model = model
        self.schedule = schedule if isinstance(schedule, DiscreteVPSchedule) else DiscreteVPSchedule(schedule)
        self.prediction, self.learned_sigma, self.clip = prediction, learned_sigma, clip
        self.respacing, self.quantize = respacing, quantize
        self.schedule.respaced(1, respacing)  # validates the name now rather than at sampling time
        self.sigma_min, self.sigma_max = self.schedule.sigma_min, self.schedule.sigma_max
        config = getattr(model, "config", None)
        self.channels = channels or getattr(model, "in_channels", None) or getattr(config, "in_channels", None)
        self.native_size = native_size
        self.multiple = multiple

    def timesteps(self, steps: int) -> Tensor:
        """The ``steps`` respaced integer timesteps behind :meth:`sigmas` (decreasing)."""
        return self.schedule.respaced(steps, self.respacing)

    def sigmas(self, steps: int) -> Tensor:
        """The schedule's own sigmas at the respaced timesteps: float64, decreasing."""
        return self.schedule.sigmas[self.timesteps(steps)]

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """E[x0 | x] on [0, 1]; x: (B, C, H, W), sigma: float or (B,) on the [0, 1] scale."""
        self.check_input(x)
        s = sigma_tensor(sigma, x)
        sqrt_ab = (1 + (2 * s.view(-1, 1, 1, 1)) ** 2).rsqrt()
        x0, _ = self._predict(sqrt_ab * (2 * x - 1), s)
        return (x0 + 1) / 2

    def vp(self, x_t: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` on [-1, 1] straight from the network for the VP iterate ``x_t`` on [-1, 1].

        ``sigma`` (float or (B,), [0, 1] scale) gives ``ab = 1 / (1 + (2 sigma)^2)``; no [0, 1]
        round trip. ``eps`` is the network's own for epsilon prediction without ``clip``,
        else the one consistent with the returned ``x0``.
        """
        self.check_input(x_t)
        return self._predict(x_t, sigma_tensor(sigma, x_t))

    def _predict(self, x_t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(x0, eps) on [-1, 1] for the VP input ``x_t`` at (B,) [0, 1]-scale noise levels ``s``."""
        t = self.schedule.t_from_sigma(s, self.quantize)
        s_net = 2 * s.view(-1, 1, 1, 1)
        sqrt_ab = (1 + s_net**2).rsqrt()
        sqrt_1m_ab = s_net * sqrt_ab
        net_dtype = module_dtype(self.model, x_t.dtype)
        t_dtype = torch.float32 if net_dtype in (torch.float16, torch.bfloat16) else net_dtype
        out = call_model(self.model, x_t.to(net_dtype), t.to(t_dtype)).to(x_t.dtype)
        c = x_t.shape[1]
        if out.shape[1] != c * (2 if self.learned_sigma else 1):
            hint = "set learned_sigma=False" if out.shape[1] == c else "check learned_sigma and channels"
            raise ShapeError(
                f"the network returned {out.shape[1]} channels for {c}-channel input "
                f"(learned_sigma={self.learned_sigma}); {hint}"
            )
        out = out[:, :c]
        if self.prediction == "epsilon":
            x0 = (x_t - sqrt_1m_ab * out) / sqrt_ab
        elif self.prediction == "v":
            x0 = sqrt_ab * x_t - sqrt_1m_ab * out
        else:
            x0 = out
        if self.clip:
            x0 = x0.clamp(-1, 1)
        if self.prediction == "epsilon" and not self.clip:
            return x0, out
        return x0, (x_t - sqrt_ab * x0) / sqrt_1m_ab

    def extra_repr(self) -> str:
        return f"prediction={self.prediction}, learned_sigma={self.learned_sigma}"


__all__ = ["DDPMPrior", "call_model", "PREDICTIONS"]
