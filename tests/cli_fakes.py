"""Stand-ins and helpers for the command-line tests (tests/test_cli_*.py).

``Fake`` replaces the prior loader and ``restore`` through a
:class:`pnp_restore.cli.pipeline.Backend`: the "solver" returns the
pseudo-inverse ``A^+ y`` of the real operator (its adjoint when it has no SVD, so
no slow CG) plus seeded noise, so the tests can check what the pipeline feeds in
(measurement, operator, sigma_y, seeds, batches) and what it writes out. Pass
``fake.backend`` to :func:`pnp_restore.cli.pipeline.run`, or as ``obj`` to
click's CliRunner (:func:`invoke`).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import cv2
import numpy as np
import torch
from click.testing import CliRunner

from pnp_restore._rng import SampleRNG
from pnp_restore.cli import main
from pnp_restore.cli.pipeline import Backend
from pnp_restore.errors import ConfigError


class FakePrior(torch.nn.Module):
    channels = 3

    def __init__(self):
        super().__init__()
        self.sigmas = []
        self.inputs = []

    def denoise(self, x, sigma):
        self.sigmas.append(float(sigma))
        self.inputs.append(x.clone())
        return x.clamp(0, 1)


class Fake:
    """Stand-ins for the prior loader and ``restore``; records every call."""

    def __init__(self, noise: float = 0.0, steps: int = 4):
        self.noise, self.steps = noise, steps
        self.calls: list[dict] = []
        self.prior = FakePrior()
        self.prior_kwargs: dict = {}
        self.error: BaseException | None = None
        self.memory: int | None = None  # bytes reported available (None: the real probe)

    @property
    def backend(self) -> Backend:
        real = Backend()
        memory = real.available_memory if self.memory is None else (lambda device: self.memory)
        return dataclasses.replace(real, load_prior=self.load_prior, restore=self.restore, available_memory=memory)

    def load_prior(self, source, **kwargs):
        self.prior_kwargs = {"source": source, **kwargs}
        if source not in ("builtin", "other"):
            raise ConfigError(f"unknown prior {source!r}; choose one of: builtin, other")
        return self.prior

    def restore(self, y, operator, prior, *, solver, sigma_y, seed, callback, steps=None, defaults="paper", **opts):
        if self.error is not None:
            raise self.error
        steps = steps or self.steps
        x = operator.pinv(y) if operator.has_svd or not operator.linear else operator.adjoint(y)
        x = x + self.noise * SampleRNG(seed, y.shape[0]).randn_like(x)
        for i in range(steps):
            callback({"step": i, "steps": steps, "sigma": 1.0 / (i + 1), "x": x, "x0": x * (i + 1) / steps, "nfe": i + 1})
        self.calls.append({"y": y.clone(), "operator": operator, "solver": solver, "sigma_y": sigma_y, "seed": seed,
                           "steps": steps, "opts": opts, "defaults": defaults})
        # what restore() reports: the options that ran include the paper's per-task ones
        options = {"paper_default": 1.5, **{k: v for k, v in opts.items() if k != "task"}}
        return x, {"nfe": steps, "time_s": 0.01, "solver": solver, "steps": steps, "seed": seed, "sigma_y": sigma_y,
                   "options": options, "defaults": defaults}


def invoke(*args, fake: Fake | None = None, catch_exceptions: bool = False):
    """``pnp-restore ARGS`` through CliRunner, with ``fake``'s prior and solver when given."""
    return CliRunner().invoke(main, [str(a) for a in args], obj=None if fake is None else fake.backend,
                              catch_exceptions=catch_exceptions)


def image(path, h=32, w=32, channels=3, dtype=np.uint8, seed=0):
    hi = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    arr = np.random.default_rng(seed).integers(0, hi + 1, shape, dtype=np.int64).astype(dtype)
    cv2.imwrite(str(path), arr)
    return arr


def mask(path, h=32, w=32, box=(slice(8, 20), slice(10, 24))):
    m = np.zeros((h, w), np.uint8)
    m[box] = 255
    cv2.imwrite(str(path), m)
    return m


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def python_cli(*args, cwd=None):
    """``python -m pnp_restore.cli ARGS`` in a subprocess (offline, one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pnp_restore.cli", *map(str, args)], capture_output=True,
                          check=False, text=True, env=env, cwd=cwd, timeout=120)
