"""User-facing errors.

Every error the library raises on bad input derives from :class:`PnPRestoreError`
and carries a one-line message that says what is wrong and what to do. The CLI
prints that line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class PnPRestoreError(Exception):
    """Base class of the errors meant for the user (one clear line)."""


class ShapeError(PnPRestoreError, ValueError):
    """A tensor has the wrong shape, size or number of channels."""


class ConfigError(PnPRestoreError, ValueError):
    """An unknown name or an invalid parameter value."""


class CheckpointError(PnPRestoreError):
    """A checkpoint is missing, truncated, or does not fit the architecture."""


class DivergenceError(PnPRestoreError, RuntimeError):
    """Sampling produced NaN or Inf values."""


class OperatorError(PnPRestoreError, TypeError):
    """An operator lacks something a solver needs (e.g. an SVD for DDRM)."""
