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

# Eager on purpose: a lazy attribute would be shadowed by the submodule
# ``pnp_restore.restore`` as soon as anything imported it.
from .restore import restore  # noqa: E402,F401


def __getattr__(name: str):
    if name in ("operators", "priors", "solvers", "benchmarks"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pnp_restore' has no attribute {name!r}")
