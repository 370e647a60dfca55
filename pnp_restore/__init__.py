"""pnp-restore: training-free image restoration with diffusion priors.

Images are float tensors (B, C, H, W) in [0, 1]; noise levels (``sigma_y``,
prior ``sigma``) are on that same [0, 1] scale.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: F401
    CheckpointError,
    ConfigError,
    DivergenceError,
    OperatorError,
    PnPRestoreError,
    ShapeError,
)


def __getattr__(name: str):
    # lazy, so that `import pnp_restore` (and `pnp-restore --help`) does not import torch
    import importlib

    if name == "restore":
        return importlib.import_module(".restoration", __name__).restore
    if name in ("operators", "priors", "solvers", "benchmarks"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pnp_restore' has no attribute {name!r}")
