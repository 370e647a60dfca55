"""The built-in natural-image prior: the compact EDM-preconditioned UNet of
:mod:`pnp_restore.priors.builtin_net` as a [0, 1]-scale prior, with its shipped weights.

Prior
    :class:`BuiltinPrior` exposes it through the :class:`~pnp_restore.priors.base.Prior`
    interface on the [0, 1] scale: ``x01 = (x_net + 1) / 2`` so ``sigma_net = 2 sigma``.
    Any image size works (reflect padding to a multiple of 4 happens inside).

Weights
    ``weights/builtin.safetensors`` + ``weights/builtin.json`` (architecture, training
    summary and the file's sha256), read by :func:`load_builtin`. The model card is
    ``docs/builtin-prior.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import file_sha256
from ..errors import CheckpointError
from ..tuned import read_table
from .builtin_net import EDMDenoiser, UNet, UNetConfig
from .checkpoints import check_placement, load_module, read_state_dict
from .edm import EDMPrior

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "builtin.safetensors"
CONFIG_NAME = "builtin.json"


class BuiltinPrior(EDMPrior):
    """The built-in prior on the [0, 1] scale: ``denoise(x, sigma)`` = (D(2x - 1; 2 sigma) + 1) / 2.

    An :class:`~pnp_restore.priors.edm.EDMPrior` around an :class:`EDMDenoiser` (any image
    size, ``multiple = 1``), with save/load of the shipped format.

    Args:
        net: an :class:`EDMDenoiser` (trained weights, usually from :func:`load_builtin`).
        info: the JSON metadata it was loaded with (training summary, sha256), kept for reference.

    Attributes:
        tuned: the tuned-defaults table of :mod:`pnp_restore.tuned` (``tuned.json`` beside the weights; {} if none).
    """

    tuned: dict = {}

    def __init__(self, net: EDMDenoiser, info: dict | None = None) -> None:
        cfg = net.cfg
        super().__init__(
            net.eval().requires_grad_(False),
            sigma_data=cfg.sigma_data,
            data_range=(-1.0, 1.0),
            sigma_min=cfg.sigma_min,
            sigma_max=cfg.sigma_max,
            channels=cfg.in_channels,
        )
        self.info = info or {}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``builtin.safetensors`` + ``builtin.json`` (with the file's sha256) into ``folder``."""
        return save_weights(self.net, folder, self.info)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, dtype=None) -> BuiltinPrior:
        """Load from a folder holding ``builtin.safetensors`` + ``builtin.json``."""
        return load_builtin(folder, device=device, dtype=dtype)


def save_weights(net: EDMDenoiser, folder: str | Path, info: dict | None = None) -> Path:
    """Save ``net`` as ``folder/builtin.safetensors`` (float32) and ``folder/builtin.json``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / WEIGHTS_NAME).chmod(0o644)
    meta = dict(info or {})
    meta.update(
        config=net.cfg.to_dict(),
        parameters=sum(p.numel() for p in net.parameters()),
        weights=WEIGHTS_NAME,
        sha256=file_sha256(folder / WEIGHTS_NAME),
    )
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_builtin(path: str | Path | None = None, device=None, dtype=None) -> BuiltinPrior:
    """Load the built-in prior.

    Args:
        path: folder with ``builtin.safetensors`` + ``builtin.json``, or the ``.safetensors`` file
            itself (its JSON next to it); ``None`` = the weights shipped with the package.
        device, dtype: where to put it (default CPU, float32).

    Raises:
        CheckpointError: files missing, sha256 mismatch, or weights that do not fit the architecture.
        ConfigError: ``device`` not available here or ``dtype`` not a float dtype.
    """
    check_placement(device, dtype)
    path = Path(path) if path is not None else WEIGHTS_DIR
    folder, weights = (path.parent, path) if path.suffix == ".safetensors" else (path, path / WEIGHTS_NAME)
    cfg_path = folder / CONFIG_NAME
    for p in (weights, cfg_path):
        if not p.is_file():
            raise CheckpointError(f"built-in prior file {p} is missing; reinstall pnp-restore or pass path= to a folder from save_pretrained")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}); reinstall pnp-restore") from None
    digest = file_sha256(weights)
    if meta.get("sha256") and digest != meta["sha256"]:
        raise CheckpointError(
            f"{weights} has sha256 {digest[:12]}..., expected {meta['sha256'][:12]}... from {cfg_path.name}; "
            "the file is corrupt or was replaced: reinstall pnp-restore"
        )
    cfg = UNetConfig.from_dict(meta.get("config", {}))
    net = load_module(lambda: EDMDenoiser(cfg), read_state_dict(weights), f"{weights} (architecture of {cfg_path.name})",
                      hint="re-export it with save_pretrained")
    prior = BuiltinPrior(net, meta).to(device=device, dtype=dtype)
    prior.tuned = read_table(folder)  # tuned defaults per (task, solver), pnp_restore.tuned
    return prior


__all__ = ["BuiltinPrior", "EDMDenoiser", "UNet", "UNetConfig", "file_sha256", "load_builtin", "save_weights"]
