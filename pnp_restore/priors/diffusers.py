"""diffusers ``UNet2DModel`` checkpoints (hub ids from the local cache, or folders) as priors.

Accepted layouts: a pipeline folder written by ``DDPMPipeline.save_pretrained`` (``model_index.json``,
``unet/``, ``scheduler/``), a bare UNet folder (``config.json`` + ``diffusion_pytorch_model.*``, with
``scheduler_config.json`` beside it, in ``../scheduler/``, or none: then Ho et al.'s linear
1e-4..0.02, T = 1000, epsilon schedule is assumed), and hub snapshots such as
``google/ddpm-cifar10-32``. Hub ids are resolved with ``local_files_only=True``: nothing is
downloaded and a missing model fails at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from .checkpoints import load_module, read_config, read_state_dict
from .ddpm import DDPMPrior
from .registry import hub_folder
from .schedules import DiscreteVPSchedule, betas

# diffusers' beta_schedule names -> ours (see :func:`pnp_restore.priors.schedules.betas`).
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid"}
PREDICTION_TYPES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "sample"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def schedule_from_config(cfg: dict[str, Any]) -> tuple[DiscreteVPSchedule, str, bool]:
    """(schedule, prediction, learned_sigma) of a diffusers scheduler config dict.

    Betas are recomputed in float64 from the config (diffusers uses float32; the
    difference is below 1e-7 relative).
    """
    if cfg.get("rescale_betas_zero_snr"):
        raise ConfigError("zero-terminal-SNR schedules (rescale_betas_zero_snr) have infinite sigma_max; not supported")
    T = int(cfg.get("num_train_timesteps", cfg.get("timesteps", 1000)))
    if cfg.get("trained_betas") is not None:
        b = cfg["trained_betas"]
    else:
        name = cfg.get("beta_schedule", "linear")
        if name not in BETA_SCHEDULES:
            raise ConfigError(f"unsupported diffusers beta_schedule {name!r}; supported: {', '.join(BETA_SCHEDULES)}")
        b = betas(BETA_SCHEDULES[name], T, cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02))
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ConfigError(f"unsupported prediction_type {prediction!r}; supported: {', '.join(PREDICTION_TYPES)}")
    learned = cfg.get("variance_type") in ("learned", "learned_range")
    return DiscreteVPSchedule(b), PREDICTION_TYPES[prediction], learned


def _hub_snapshot(hub_id: str) -> Path:
    folder = hub_folder(hub_id)
    if folder is None:
        raise CheckpointError(
            f"{hub_id} is not in the local Hugging Face cache and nothing is downloaded: on a connected machine run "
            f"`huggingface-cli download {hub_id}` and copy its cache (~/.cache/huggingface/hub/models--"
            f"{hub_id.replace('/', '--')}) to this machine's HF_HOME, or pass the downloaded folder to load()"
        )
    return folder


def _find(folder: Path) -> tuple[Path, Path | None]:
    """(UNet folder, scheduler config file or None) of a pipeline or bare-UNet folder."""
    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a diffusers folder: no config.json or unet/config.json in it")
    for cand in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json",
                 unet.parent / "scheduler" / "scheduler_config.json"):
        if cand.is_file():
            return unet, cand
    return unet, None


def load_diffusers(source: str | os.PathLike, **options: Any) -> DDPMPrior:
    """A :class:`DDPMPrior` from a diffusers folder or a locally cached hub id.

    ``options`` go to :class:`DDPMPrior` (``clip``, ``respacing``, ``quantize``) and may override
    ``prediction`` / ``learned_sigma`` / ``schedule`` for folders without a scheduler config.
    """
    from diffusers import UNet2DModel

    folder = Path(source)
    if not folder.is_dir():
        folder = _hub_snapshot(str(source))
    unet_dir, sched_file = _find(folder)
    config = read_config(unet_dir / "config.json")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(
            f"{unet_dir} holds a {config['_class_name']}; only pixel-space UNet2DModel networks are supported"
        )
    weights = next((unet_dir / f for f in WEIGHT_FILES if (unet_dir / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"no {' or '.join(WEIGHT_FILES)} in {unet_dir}; the download is incomplete")
    state = read_state_dict(weights)
    try:
        model = load_module(lambda: UNet2DModel.from_config(config), state, f"{weights} with its config.json")
    except CheckpointError as mismatch:
        # Older checkpoints use deprecated key names that diffusers renames while loading; any
        # key still missing or left over after that would be random or ignored weights.
        try:
            model, info = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, output_loading_info=True)
        except Exception as e:
            raise CheckpointError(str(mismatch)) from e
        if any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")):
            raise CheckpointError(str(mismatch)) from None
        model.eval().requires_grad_(False)
    schedule, prediction, learned = schedule_from_config(read_config(sched_file) if sched_file else {})
    c_in, c_out = model.config.in_channels, model.config.out_channels
    if c_out not in (c_in, 2 * c_in):
        raise CheckpointError(f"{unet_dir}: the UNet maps {c_in} to {c_out} channels; a prior needs {c_in} or {2 * c_in}")
    size = model.config.sample_size
    options = {"schedule": schedule, "prediction": prediction, "learned_sigma": learned or c_out == 2 * c_in, **options}
    return DDPMPrior(
        model,
        channels=c_in,
        native_size=tuple(size) if isinstance(size, (list, tuple)) else (size, size),
        multiple=2 ** (len(model.config.down_block_types) - 1),
        **options,
    )


__all__ = ["load_diffusers", "schedule_from_config", "BETA_SCHEDULES", "PREDICTION_TYPES"]
