"""Dynamic-range degradations: HDR clipping and bit-depth quantisation (nonlinear), and the
differentiable rounding they and :mod:`.jpeg` share.

Both act pixel-wise on [0, 1] images and keep the image's shape.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from .base import NonlinearOperator, Tensor, _per_sample, cast

#: the rounding modes of :func:`smooth_round` (and of the operators that round).
ROUNDINGS = ("smooth", "exact", "straight_through")


def smooth_round(x: Tensor, mode: str = "smooth") -> Tensor:
    """Rounding to the nearest integer (ties upwards, ``floor(x + 1/2)``), in one of three forms.

    * ``"smooth"``: ``r + (x - r)^3`` with ``r = floor(x + 1/2)``, the differentiable approximation
      of Shin & Song, "JPEG-resistant adversarial images", NIPS 2017 MLSec workshop (also Reich et
      al. 2024 and kornia's ``jpeg_codec_differentiable``). Derivative ``3 (x - r)^2``; within 1/8 of the
      exact value; like rounding it jumps at half-integers (by 3/4 instead of 1).
    * ``"exact"``: ``floor(x + 1/2)``, derivative 0 almost everywhere (for synthesising measurements).
    * ``"straight_through"``: the exact value with the smooth form's derivative.
    """
    r = torch.floor(x + 0.5).detach()
    if mode == "exact":
        return r
    cube = (x - r) ** 3
    if mode == "smooth":
        return r + cube
    if mode == "straight_through":
        return r + (cube - cube.detach())
    raise ConfigError(f"unknown rounding {mode!r}; choose one of {', '.join(ROUNDINGS)}")


def check_rounding(mode: str) -> str:
    """``mode`` if it is one of :data:`ROUNDINGS`, else a :class:`ConfigError`."""
    if mode not in ROUNDINGS:
        raise ConfigError(f"unknown rounding {mode!r}; choose one of {', '.join(ROUNDINGS)}")
    return mode


def _positive(name: str, value: float | Sequence[float] | Tensor) -> Tensor:
    """A scalar or per-sample (B,) float64 CPU tensor of finite positive values, else a :class:`ConfigError`."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() > 1 or t.numel() == 0 or not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ConfigError(f"{name} must be a positive number or a (B,) sequence of them; got {value!r}")
    return t


def _check_batch(op: NonlinearOperator, per_sample: Tensor, x: Tensor, name: str) -> None:
    if per_sample.dim() == 1 and per_sample.numel() not in (1, x.shape[0]):
        raise ConfigError(
            f"{type(op).__name__} has {per_sample.numel()} per-sample {name} values but the batch has {x.shape[0]} "
            "images; give one value or one per image"
        )


class HDR(NonlinearOperator):
    """High-dynamic-range (dynamic-range clipping) degradation: ``y = clip(1/2 + s (x - 1/2), 0, 1)``.

    DAPS (Zhang et al., "Improving Diffusion Inverse Problem Solving with Decoupled Noise
    Annealing", CVPR 2025; zhangbingliang2019/DAPS ``forward_operator/__init__.py``,
    ``HighDynamicRange``) measures ``clip(s x, -1, 1)`` on [-1, 1] images with ``scale: 2``
    (``configs/task/hdr.yaml``; RED-diff/ΠGDM's ``HDR`` in NVlabs/RED-diff ``utils/degredations.py``
    is the same, ``clip(x / 0.5, -1, 1)``). With ``x_pm = 2 x - 1`` that is
    ``2 clip(1/2 + s (x - 1/2), 0, 1) - 1``: this operator on [0, 1] images, exactly (the test checks it).

    ``pinv(y) = 1/2 + (y - 1/2) / s`` (RED-diff's ``H_pinv``, ``x * 0.5`` on [-1, 1]), a right inverse.
    Gradients vanish where the pixel is clipped.

    Args:
        scale: ``s > 0`` (default 2, the DAPS config), a number or one per image (B,).
    """

    def __init__(self, scale: float | Sequence[float] | Tensor = 2.0) -> None:
        super().__init__()
        self.register_buffer("scale", _positive("HDR scale", scale))

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, self.scale, x, "scale")
        s = _per_sample(cast(self.scale, x), x)
        return (0.5 + s * (x - 0.5)).clamp(0.0, 1.0)

    def pinv(self, y: Tensor) -> Tensor:
        _check_batch(self, self.scale, y, "scale")
        return 0.5 + (y - 0.5) / _per_sample(cast(self.scale, y), y)

    def __repr__(self) -> str:
        return f"HDR(scale={self.scale.tolist()})"


class Quantization(NonlinearOperator):
    """Bit-depth reduction to ``bits`` bits: ``y = round(x (2^b - 1)) / (2^b - 1)``.

    RED-diff / ΠGDM (NVlabs/RED-diff ``utils/degredations.py``, ``Quantization``) compute
    ``floor(x (2^b - 1) + 1/2) / (2^b - 1)`` on the [0, 1] image (from their [-1, 1] one):
    the levels are ``k / (2^b - 1)``, ``k = 0 .. 2^b - 1``; ties round up, as here. Their bit depth
    comes from the experiment name (``quant<b>``); there is no published default, 3 is ours.
    Their rounding is hard (zero gradient); for gradient-based solvers the default here is the
    smooth rounding of :func:`smooth_round` (values within ``1 / (8 (2^b - 1))`` of the exact
    levels); use ``rounding="exact"`` to synthesise measurements, ``"straight_through"`` for exact
    values with the smooth gradient. Inputs are not clamped (a [0, 1] image stays in [0, 1]).

    ``pinv(y) = y`` (RED-diff's ``H_pinv``): a quantised image is a fixed point of the exact map.

    Args:
        bits: bit depth ``b >= 1`` (a number or one per image (B,)).
        rounding: ``"smooth"`` (default), ``"exact"`` or ``"straight_through"``.
    """

    def __init__(self, bits: int | Sequence[int] | Tensor = 3, rounding: str = "smooth") -> None:
        super().__init__()
        b = _positive("Quantization bits", bits)
        if bool((b != b.round()).any()) or bool((b > 24).any()):
            raise ConfigError(f"Quantization bits must be whole numbers from 1 to 24; got {bits!r}")
        self.register_buffer("bits", b)
        self.rounding = check_rounding(rounding)

    def levels(self, like: Tensor) -> Tensor:
        """``2^b - 1`` as a (B or 1, 1, 1, 1) tensor on ``like``'s device and dtype."""
        return _per_sample(2.0 ** cast(self.bits, like) - 1.0, like)

    def forward(self, x: Tensor) -> Tensor:
        _check_batch(self, self.bits, x, "bits")
        n = self.levels(x)
        return smooth_round(x * n, self.rounding) / n

    def pinv(self, y: Tensor) -> Tensor:
        return y

    def __repr__(self) -> str:
        bits = [int(b) for b in self.bits.reshape(-1).tolist()]
        return f"Quantization(bits={bits[0] if self.bits.dim() == 0 else bits}, rounding={self.rounding!r})"


__all__ = ["HDR", "Quantization", "ROUNDINGS", "smooth_round"]
