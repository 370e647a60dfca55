"""Training of the built-in prior with the EDM objective (Karras et al., NeurIPS 2022, Sec. 5).

Loss per image (network scale: images on [-1, 1]):

    ln(sigma) ~ N(P_mean, P_std^2),  P_mean = -1.2,  P_std = 1.2
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2
    L = lambda(sigma) * mean ||D(y + sigma n; sigma) - y||^2

with Adam, an exponential moving average (EMA) of the weights, linear warm-up
then cosine decay of the learning rate and gradient-norm clipping at 1 (the last
two are deviations from EDM, which trains far longer at a constant rate: they
make short CPU runs converge). Every random draw of step ``k`` (patches,
sigmas, noise) is a function of ``(seed, k)``, so a run resumed from a checkpoint
gives exactly the numbers of an uninterrupted one on the same hardware.

Outputs in ``--out``: ``log.jsonl`` (one JSON line per logged step),
``checkpoint.pt`` (written atomically every few minutes and at the end; it
holds only tensors, dicts, lists, numbers and strings, and is read back with
``torch.load(weights_only=True)``, so a planted pickle cannot run code) and
``weights/`` (EMA weights as ``builtin.safetensors`` + ``builtin.json``, loadable
with :func:`pnp_restore.priors.builtin.load_builtin`).

Command line: ``pnp-restore train-prior`` or ``python -m pnp_restore.train``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from .data import RandomPatches, load_folder
from .devices import resolve_device
from .errors import CheckpointError, ConfigError, DivergenceError
from .priors.builtin import EDMDenoiser, UNetConfig, load_builtin, save_weights
from .priors.checkpoints import torch_load_plain

P_MEAN, P_STD = -1.2, 1.2
CHECKPOINT = "checkpoint.pt"
#: entries of a training checkpoint (all of them weights_only-loadable types).
CHECKPOINT_KEYS = ("model", "ema", "optimizer", "scaler", "torch_rng", "step", "elapsed_s", "seed", "batch_size",
                   "crop", "config")  # fmt: skip


def step_generator(seed: int, step: int) -> torch.Generator:
    """CPU generator for the random draws of training step ``step``."""
    state = np.random.SeedSequence((seed, step)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def edm_loss(net: EDMDenoiser, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """EDM loss (scalar) of clean images ``y`` (B, C, H, W) on [-1, 1]; sigmas and noise drawn from ``gen``."""
    b = y.shape[0]
    sigma = (torch.randn(b, generator=gen) * P_STD + P_MEAN).exp().to(y.device, y.dtype)
    noise = torch.randn(y.shape, generator=gen).to(y.device, y.dtype)
    sd = net.cfg.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    d = net(y + sigma.view(-1, 1, 1, 1) * noise, sigma)
    return (weight * (d.float() - y.float()).pow(2).mean(dim=(1, 2, 3))).mean()


def learning_rate(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``lr / 10`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def autocast_for(device: torch.device, precision: str):
    """Autocast context for ``precision`` in {'auto', 'fp32', 'bf16', 'fp16'} on ``device``."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return nullcontext, precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return (lambda: torch.autocast(device.type, dtype=dtype)), precision


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to ``path`` via a temporary file and an atomic rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint written by :func:`train`, read with ``weights_only=True`` (no code runs).

    Raises:
        CheckpointError: missing, unreadable, holding pickled Python objects, or lacking an entry.
    """
    advice = "delete it (or pass another --out) and start again without --resume"
    if not path.is_file():
        raise CheckpointError(f"--resume given but {path} does not exist; drop --resume to start a new run")
    ck = torch_load_plain(path, advice, pickled=f"not a pnp-restore training checkpoint: {advice}")
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise CheckpointError(f"{path} is not a pnp-restore training checkpoint (no {', '.join(missing)}); {advice}")
    return ck


def _restore_state(ck: dict, path: Path, net, ema, opt, scaler) -> None:
    """Load the networks, optimiser, scaler and RNG state of checkpoint ``ck`` (read from ``path``)."""
    try:
        net.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["torch_rng"])
    except Exception as e:  # noqa: BLE001 - load_state_dict raises RuntimeError/KeyError/ValueError/TypeError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"{path} does not fit this run ({first}); delete it or start again without --resume") from None


def check_args(*, steps: int, batch_size: int | None, crop: int, lr: float, ema_decay: float, warmup: int,
               log_every: int, checkpoint_minutes: float, max_minutes: float | None) -> None:  # fmt: skip
    """Raise :class:`ConfigError` (one line) for a training argument out of range."""
    rules = [
        (steps >= 1, f"steps must be >= 1; got {steps}"),
        (batch_size is None or batch_size >= 1, f"batch size must be >= 1; got {batch_size}"),
        (crop >= 8, f"crop must be >= 8 pixels; got {crop}"),
        (math.isfinite(lr) and lr > 0, f"learning rate must be a finite number > 0; got {lr}"),
        (0 <= ema_decay < 1, f"ema_decay must be in [0, 1); got {ema_decay}"),
        (warmup >= 0, f"warmup must be >= 0 steps; got {warmup}"),
        (log_every >= 1, f"log_every must be >= 1; got {log_every}"),
        (checkpoint_minutes > 0, f"checkpoint_minutes must be > 0; got {checkpoint_minutes}"),
        (max_minutes is None or max_minutes >= 0, f"max_minutes must be >= 0; got {max_minutes}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def train(
    data: str | Path | list[np.ndarray],
    out: str | Path,
    *,
    steps: int = 10000,
    batch_size: int | None = None,
    crop: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
    resume: bool = False,
    device: str | None = None,
    max_minutes: float | None = None,
    config: UNetConfig | None = None,
    manifest: str | Path | None = None,
    ema_decay: float = 0.999,
    warmup: int = 250,
    precision: str = "auto",
    log_every: int = 25,
    checkpoint_minutes: float = 5.0,
    progress: bool = True,
    init_from: str | Path | None = None,
) -> dict:
    """Train an :class:`EDMDenoiser` on random patches of an image folder (or in-memory images).

    Args:
        data: folder of training images, or a list of RGB ``uint8`` arrays (H, W, 3).
        out: output folder (log, checkpoint, exported weights).
        steps: total optimiser steps; batch_size: images per step (default 16 on CPU, 256 on CUDA).
        crop: patch side in pixels; lr: peak Adam learning rate; seed: seed of every random draw.
        resume: continue from ``out/checkpoint.pt`` (architecture, seed, batch and crop come from it).
        device: 'cpu', 'cuda', ... (default CUDA when available).
        max_minutes: stop (after checkpointing) once this much wall time has passed in this call.
        config: network architecture (default :class:`UNetConfig`).
        manifest: ``MANIFEST.tsv`` to verify the data files against (sha256).
        ema_decay: EMA decay per step (ramped up as min(decay, (1 + k) / (10 + k))).
        init_from: start from these weights (a folder written by this command, or ``"builtin"`` for
            the shipped prior) instead of a random initialisation; the architecture comes from them.
            Ignored when resuming (the checkpoint already holds the weights).

    Returns:
        dict with ``step``, ``losses`` (per step, this call), ``weights`` (exported folder) and ``summary``.
    """
    check_args(steps=steps, batch_size=batch_size, crop=crop, lr=lr, ema_decay=ema_decay, warmup=warmup,
               log_every=log_every, checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes)  # fmt: skip
    out = Path(out)
    dev = resolve_device(device)
    ck_path = out / CHECKPOINT
    ck = None
    if resume:
        ck = load_checkpoint(ck_path)
        try:
            config = UNetConfig.from_dict(ck["config"])
            seed, batch_size, crop = int(ck["seed"]), int(ck["batch_size"]), int(ck["crop"])
        except (TypeError, ValueError, AttributeError):
            raise CheckpointError(f"{ck_path} has a damaged configuration; delete it and start again without --resume") from None
    start = None
    if ck is None and init_from is not None:
        start = load_builtin(None if str(init_from) == "builtin" else init_from).net
        config = start.cfg
    config = config or UNetConfig()
    if batch_size is None:
        batch_size = 256 if dev.type == "cuda" else 16

    images = data if isinstance(data, list) else load_folder(data, manifest)
    patches = RandomPatches(images, crop, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = EDMDenoiser(config)
    if start is not None:
        net.load_state_dict(start.state_dict())
    net = net.to(dev).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    autocast, precision = autocast_for(dev, precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    step, elapsed = 0, 0.0
    if ck is not None:
        _restore_state(ck, ck_path, net, ema, opt, scaler)
        step, elapsed = int(ck["step"]), float(ck["elapsed_s"])

    init_from_name = ck.get("summary", {}).get("init_from") if ck is not None else (
        None if init_from is None else str(init_from))

    def summary() -> dict:
        return {
            "data": str(data) if not isinstance(data, list) else f"{len(images)} in-memory images",
            "images": len(images), "steps": step, "batch_size": batch_size, "crop": crop, "lr": lr, "warmup": warmup,
            "seed": seed, "ema_decay": ema_decay, "precision": precision, "device": str(dev),
            "torch_threads": torch.get_num_threads(), "wall_time_s": round(elapsed, 1),
            "p_mean": P_MEAN, "p_std": P_STD, "init_from": init_from_name,
        }

    def checkpoint() -> None:
        save_checkpoint(ck_path, {
            "model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "step": step, "elapsed_s": elapsed, "seed": seed, "batch_size": batch_size,
            "crop": crop, "config": config.to_dict(), "summary": summary(),
        })

    losses: list[float] = []
    t_start = t_last = time.monotonic()
    last_ck = t_start
    with open(out / "log.jsonl", "a") as log, tqdm(
        total=steps, initial=step, desc="train-prior", dynamic_ncols=True, disable=not progress
    ) as bar:
        while step < steps:
            for g in opt.param_groups:
                g["lr"] = learning_rate(step, steps, lr, warmup)
            gen = step_generator(seed, step)
            y = patches.batch(step, batch_size).to(dev) * 2 - 1
            with autocast():
                loss = edm_loss(net, y, gen)
            value = loss.item()  # the one host sync of the step
            if not math.isfinite(value):
                raise DivergenceError(f"loss is {value} at step {step}; lower --lr or resume from the checkpoint")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            beta = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.lerp_(pn, 1 - beta)
            step += 1
            losses.append(value)
            now = time.monotonic()
            elapsed += now - t_last
            t_last = now
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if step % log_every == 0 or step == steps:
                window = losses[-log_every:]
                row = {"step": step, "loss": sum(window) / len(window), "lr": opt.param_groups[0]["lr"],
                       "elapsed_s": round(elapsed, 1)}
                log.write(json.dumps(row) + "\n")
                log.flush()
            if now - last_ck > 60 * checkpoint_minutes:
                checkpoint()
                last_ck = now
            if max_minutes is not None and now - t_start > 60 * max_minutes:
                break
    checkpoint()
    weights = save_weights(ema, out / "weights", {"training": summary()})
    return {"step": step, "losses": losses, "weights": weights, "summary": summary()}


def _parse_channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1 or any(c % min(UNetConfig.groups, c) for c in channels):
        raise ConfigError(f"--channels must be positive integers separated by commas, each a multiple of 16 (or below 16), e.g. 32,64,128; got {text!r}")
    return channels


@click.command("train-prior")
@click.option("--data", type=click.Path(exists=True, file_okay=False), required=True, help="Folder of training images.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder (log, checkpoint, weights).")
@click.option("--steps", type=click.IntRange(min=1), default=10000, show_default=True, help="Total optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Patches per step [default: 16 on CPU, 256 on CUDA].")
@click.option("--crop", type=click.IntRange(min=8), default=64, show_default=True,
              help="Patch side in pixels (at most the smallest image side).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-4, show_default=True, help="Peak Adam learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... [default: cuda if available].")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=None, help="Stop (and save) after this many minutes.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), default=None,
              help="MANIFEST.tsv to verify the images' sha256 against.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast precision (auto: bf16/fp16 on CUDA, bf16 on CPUs that support it).")
@click.option("--channels", default=None, metavar="C1,C2,...",
              help="Width of each UNet level, e.g. 32,64,128,256 (one level per entry) [default: 32,64,128].")
@click.option("--blocks", type=click.IntRange(min=1), default=None, help="Residual blocks per encoder level [default: 1].")
@click.option("--init-from", default=None, metavar="FOLDER|builtin",
              help="Start from these weights (a run's weights/ folder, or 'builtin') instead of a random network.")
def train_prior(data, out, steps, batch_size, crop, lr, seed, resume, device, max_minutes, manifest, precision,
                channels, blocks, init_from):
    """Train the built-in diffusion prior (EDM objective) on a folder of images."""
    config = None
    if channels is not None or blocks is not None:
        if init_from is not None:
            raise ConfigError("--channels/--blocks set a new architecture; --init-from takes the one of its weights: give one or the other")
        config = UNetConfig(channels=_parse_channels(channels) if channels else UNetConfig.channels,
                            blocks=blocks or UNetConfig.blocks)
    res = train(data, out, steps=steps, batch_size=batch_size, crop=crop, lr=lr, seed=seed, resume=resume,
                device=device, max_minutes=max_minutes, manifest=manifest, precision=precision, config=config,
                init_from=init_from)
    click.echo(f"step {res['step']}: weights in {res['weights']}")


if __name__ == "__main__":  # through the pnp-restore group, whose error boundary prints errors as one line
    import sys

    from .cli import main

    main(["train-prior", *sys.argv[1:]], prog_name="pnp-restore")
