"""The restoration tasks: one vocabulary for the CLI, the solvers' per-task settings,
the operators and the benchmark protocols."""

from __future__ import annotations

from enum import Enum

from .errors import ConfigError


class Task(str, Enum):
    """A kind of degradation. Members compare and hash equal to their string values
    (``Task.INPAINTING == "inpainting"``), so they key the papers' per-task tables directly."""

    INPAINTING = "inpainting"
    SUPER_RESOLUTION = "super_resolution"
    GAUSSIAN_DEBLUR = "gaussian_deblur"
    MOTION_DEBLUR = "motion_deblur"
    DENOISING = "denoising"
    COLORIZATION = "colorization"
    # nonlinear degradations (pnp_restore.operators: phase, jpeg, dynamic_range, nonlinear_blur)
    PHASE_RETRIEVAL = "phase_retrieval"
    JPEG = "jpeg"
    HDR = "hdr"
    QUANTIZATION = "quantization"
    NONLINEAR_DEBLUR = "nonlinear_deblur"

    def __str__(self) -> str:
        return self.value


def parse_task(value: str | Task | None) -> Task | None:
    """``value`` as a :class:`Task` (None stays None); raises :class:`ConfigError` naming the choices."""
    if value is None or isinstance(value, Task):
        return value
    try:
        return Task(value)
    except ValueError:
        raise ConfigError(f"unknown task {value!r}; choose one of: {', '.join(t.value for t in Task)} (or None)") from None


__all__ = ["Task", "parse_task"]
