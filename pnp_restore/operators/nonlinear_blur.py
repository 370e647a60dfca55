"""Nonlinear (learned) blur: a pretrained blur network applied with a fixed kernel latent."""

from __future__ import annotations

import torch

from ..errors import OperatorError, ShapeError
from .base import NonlinearOperator, Tensor, cast

#: the kernel latent of the blur network: (1, 512, 2, 2) (bkse ``kernel_dim: 512``), scale 1.2.
LATENT_SHAPE = (1, 512, 2, 2)
LATENT_SCALE = 1.2

_HOW_TO_GET = (
    "NonlinearBlur needs the pretrained blur network of Tran et al. (CVPR 2021, 'Explore image deblurring via "
    "encoded blur kernel space'): build KernelWizard from VinAIResearch/blur-kernel-space-exploring (bkse), load "
    "its GOPRO_wVAE.pth weights and pass it as network=...; no weights ship with pnp-restore"
)


class NonlinearBlur(NonlinearOperator):
    """``y = clip(N(x, z), 0, 1)``: a blur network ``N`` with a fixed kernel latent ``z``.

    The nonlinear deblurring task of DPS (Chung et al., ICLR 2023; DPS2022/diffusion-posterior-sampling
    ``guided_diffusion/measurements.py``, ``NonlinearBlurOperator``) and DAPS
    (zhangbingliang2019/DAPS ``forward_operator/__init__.py``, ``NonlinearBlur``): bkse's
    ``KernelWizard`` (Tran et al., CVPR 2021) with the ``GOPRO_wVAE.pth`` weights
    (``bkse/options/generate_blur/default.yml``), called as ``adaptKernel(x01, kernel=z)`` on the
    [0, 1] image, its output mapped to [-1, 1] and clipped there: on [0, 1] that is ``clip(N(x, z), 0, 1)``,
    this operator. The latent is ``1.2 * N(0, I)`` of shape (1, 512, 2, 2), shared by the batch.
    DAPS draws it once (numpy seed 0); DPS draws a new one at every forward call (so its y and its
    guidance use different blurs). Deviation: ours is drawn once from a torch generator with
    ``seed`` (numpy's seed-0 draw is not reproduced); pass ``latent=`` to use any other.
    Noise in the configs: Gaussian ``sigma: 0.05`` on [-1, 1] (0.025 here); DPS ``scale: 0.3``.

    The weights cannot be downloaded from here, so constructing this without ``network`` raises an
    :class:`~pnp_restore.errors.OperatorError` that says how to get them.

    Args:
        network: the blur network (a ``torch.nn.Module``). Called as ``network.adaptKernel(x, kernel=z)``
            if it has that method (bkse's ``KernelWizard``), else ``network(x, z)``; ``x`` is (B, C, H, W)
            in [0, 1], ``z`` the latent expanded to the batch. Put in eval mode, its parameters frozen;
            it runs in its own parameters' dtype (the result is cast back to the input's).
        latent: the kernel latent (1 or B, ...) (default: ``1.2 * randn(1, 512, 2, 2)`` with ``seed``).
        seed: seed of the default latent.
    """

    def __init__(self, network: torch.nn.Module | None = None, latent: Tensor | None = None, seed: int = 0) -> None:
        super().__init__()
        if network is None:
            raise OperatorError(_HOW_TO_GET)
        if not isinstance(network, torch.nn.Module):
            raise OperatorError(f"NonlinearBlur network must be a torch.nn.Module; got {type(network).__name__}")
        self.network = network.eval().requires_grad_(False)
        if latent is None:
            g = torch.Generator().manual_seed(int(seed))
            latent = LATENT_SCALE * torch.randn(LATENT_SHAPE, generator=g, dtype=torch.float64)
        z = torch.as_tensor(latent).detach().to(device="cpu", dtype=torch.float64)
        if z.dim() < 1 or z.numel() == 0 or not bool(torch.isfinite(z).all()):
            raise ShapeError(f"NonlinearBlur latent must be a finite (1 or B, ...) tensor; got shape {tuple(z.shape)}")
        self.register_buffer("latent", z)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if self.latent.shape[0] not in (1, b):
            raise ShapeError(f"NonlinearBlur has {self.latent.shape[0]} per-image latents but the batch has {b} images")
        param = next(self.network.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        z = cast(self.latent, x).to(dtype).expand(b, *self.latent.shape[1:])
        xin = x.to(dtype)
        adapt = getattr(self.network, "adaptKernel", None)
        out = adapt(xin, kernel=z) if callable(adapt) else self.network(xin, z)
        return out.to(x.dtype).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"NonlinearBlur(network={type(self.network).__name__}, latent={tuple(self.latent.shape)})"


__all__ = ["LATENT_SCALE", "LATENT_SHAPE", "NonlinearBlur"]
