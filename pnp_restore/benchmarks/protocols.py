"""Benchmark tasks: named, versioned degradation protocols.

A task id is ``<name>@<sigma_y>``, e.g. ``sr4_bicubic@0.05``; ``sigma_y`` is the
std of the additive white Gaussian measurement noise on the [0, 1] image scale
(DPS's "0.05 on [-1, 1]" is ``@0.025``). Every field of :class:`Protocol` is
written into each result row, so a row says exactly what was measured; bump
``version`` whenever a change alters the degradation of an existing name.

| name | operator | padding / boundary | after |
|---|---|---|---|
| ``sr4_bicubic`` | x4 MATLAB-bicubic downsampling | symmetric (MATLAB imresize) | DDRM, DPS |
| ``sr4_avgpool`` | x4 average pooling | none needed | DDRM, DDNM |
| ``box_inpaint`` | 128x128 hole on 256 px at a random position, 16 px margin (DPS ``random_sq_bbox``) | n/a | DPS |
| ``box_inpaint_center`` | the same hole, centred | n/a | DDRM, DiffPIR |
| ``random_inpaint_70`` / ``_92`` | 70 % / 92 % of the pixels missing, shared by channels | n/a | DPS / DDRM |
| ``gaussian_deblur`` | 61x61 Gaussian, std 3.0 px | circular (FFT; exact SVD) | DPS kernel, DiffPIR boundary |
| ``motion_deblur`` | 61x61 random camera shake, intensity 0.5 | circular (FFT; exact SVD) | DPS kernel, DiffPIR boundary |
| ``denoise`` | identity | n/a | |
| ``phase_retrieval`` | Fourier magnitude, oversampling 2 (zero padding), one run per image (no best-of-4) | n/a | DPS, DAPS |
| ``jpeg10`` | JPEG quality 10, 4:2:0; y from the exact (hard-rounding) codec, solvers get the smooth one | replicate pad to 16 | RED-diff, ΠGDM |
| ``hdr`` | dynamic-range clipping, scale 2 | n/a | DAPS, RED-diff |
| ``quantization3`` | 3-bit quantisation; y exact, solvers get the smooth rounding | n/a | RED-diff |

Box size and margin are fractions of the image side (0.5 and 1/16), so they are
exactly DPS's 128 and 16 px at 256 px and scale with the benchmark size. Blur
kernels keep their pixel size (61 px, std 3 px) at every image size, so the blur
tasks need images of at least 61 px. DPS itself
reflect-pads its blurs; pass ``padding="reflect"`` (a new protocol) to get that
boundary, which has no SVD (DDRM/DDNM then cannot run).

Randomness (masks, motion kernels, noise) is seeded per image from a SHA-256
of ``<dataset>/<image>``, the protocol's name and version and the purpose, never
from the run order, so every solver, run, batch size and machine sees the same
degradation. The noise draw does not depend on ``sigma_y``: ``@0.025`` and
``@0.05`` add the same noise pattern at two strengths.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..tasks import Task

Tensor = torch.Tensor

SIGMA_LEVELS = (0.0, 0.025, 0.05)


@dataclass(frozen=True)
class Protocol:
    """One degradation protocol. Fields that do not apply to ``kind`` are None.

    Attributes:
        name: task name (see the module table).
        kind: ``"sr"``, ``"box_inpaint"``, ``"random_inpaint"``, ``"gaussian_blur"``,
            ``"motion_blur"`` or ``"denoise"`` (its :class:`~pnp_restore.tasks.Task`: :attr:`task`).
        sigma_y: measurement noise std on the [0, 1] scale.
        version: bumped when the degradation of ``name`` changes.
        size: benchmark images are ``size x size`` pixels.
        crop: how images are brought to ``size``: ``"center"`` (centre crop) or
            ``"resize"`` (short side resized to ``size``, then centre crop); see
            :func:`pnp_restore.benchmarks.datasets.fit`.
        scale, sr_kind: super-resolution factor and kernel (``"bicubic"``/``"avgpool"``).
        box, margin: box side and DPS margin as fractions of the image side.
        position: ``"random"`` or ``"center"``.
        missing: fraction of missing pixels.
        kernel_size, kernel_std, intensity: blur kernel size (px), Gaussian std
            (px), motion-blur intensity.
        padding: blur boundary, ``"circular"`` or ``"reflect"``.
        oversample, best_of: phase retrieval's oversampling and how many runs per image the
            best is picked from (1: none; DPS and DAPS report best-of-4).
        quality, subsampling: JPEG quality factor and chroma subsampling.
        clip_scale: HDR gain before clipping; bits: quantisation bit depth.
        rounding: rounding of the measurement's codec/quantiser (``"exact"``); the solvers'
            operator uses the smooth one (a differentiable forward model).

    The nonlinear fields (from ``oversample`` on) are left out of :meth:`fields` when unset,
    so rows of the linear tasks keep their identity across versions.
    """

    name: str
    kind: str
    sigma_y: float = 0.0
    version: int = 1
    size: int = 256
    crop: str = "center"
    scale: int | None = None
    sr_kind: str | None = None
    box: float | None = None
    position: str | None = None
    margin: float | None = None
    missing: float | None = None
    kernel_size: int | None = None
    kernel_std: float | None = None
    intensity: float | None = None
    padding: str | None = None
    oversample: float | None = None
    best_of: int | None = None
    quality: int | None = None
    subsampling: str | None = None
    clip_scale: float | None = None
    bits: int | None = None
    rounding: str | None = None

    @property
    def id(self) -> str:
        """Task id ``<name>@<sigma_y>``, e.g. ``sr4_bicubic@0.05``."""
        return f"{self.name}@{self.sigma_y:g}"

    @property
    def task(self) -> Task:
        """The :class:`~pnp_restore.tasks.Task` this protocol measures."""
        if self.kind not in _KIND_TASKS:
            raise ConfigError(f"unknown protocol kind {self.kind!r}; choose one of {', '.join(_KIND_TASKS)}")
        return _KIND_TASKS[self.kind]

    @property
    def paper_task(self) -> Task | None:
        """The task whose published per-task solver settings apply (:func:`pnp_restore.solvers.task_defaults`);
        None for denoising, which the papers do not tune."""
        return None if self.task is Task.DENOISING else self.task

    def fields(self) -> dict:
        """All fields (for result rows); unset nonlinear fields left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k in _NONLINEAR_FIELDS and v is None)}

    def seed(self, key: str, purpose: str) -> int:
        """Stable 56-bit seed for image ``key`` (``<dataset>/<image>``) and a purpose (``"operator"``, ``"noise"``)."""
        digest = hashlib.sha256(f"{key}|{self.name}|v{self.version}|{purpose}".encode()).digest()
        return int.from_bytes(digest[:7], "big")

    def operator(self, keys: list[str], shape: tuple[int, ...]):
        """The operator for a batch of images ``keys`` of shape (B, C, H, W); per-image masks/kernels are stacked."""
        from .. import operators as ops

        h, w = shape[-2:]
        seeds = [self.seed(k, "operator") for k in keys]
        if self.kind == "sr":
            return ops.get(self.task, scale=self.scale, kind=self.sr_kind)
        if self.kind == "box_inpaint":
            box, margin = (round(self.box * h), round(self.box * w)), (round(self.margin * h), round(self.margin * w))
            masks = [ops.box_mask((h, w), box, self.position, margin, seed=s) for s in seeds]
            return ops.get(self.task, mask=torch.cat(masks))
        if self.kind == "random_inpaint":
            return ops.get(self.task, mask=torch.cat([ops.random_mask((h, w), self.missing, seed=s) for s in seeds]))
        if self.kind == "gaussian_blur":
            return ops.get(self.task, size=self.kernel_size, std=self.kernel_std, padding=self.padding)
        if self.kind == "motion_blur":
            kernels = [ops.motion_kernel(self.kernel_size, self.intensity, seed=s) for s in seeds]
            return ops.get(self.task, kernel=torch.stack(kernels), padding=self.padding)
        return self._nonlinear(ops, "smooth") if self.kind in _NONLINEAR_KINDS else ops.get(self.task)

    def _nonlinear(self, ops, rounding: str):
        """The nonlinear operator of this protocol, with ``rounding`` for JPEG / quantisation."""
        if self.kind == "phase_retrieval":
            return ops.get(self.task, oversample=self.oversample)
        if self.kind == "jpeg":
            return ops.get(self.task, quality=self.quality, subsampling=self.subsampling, rounding=rounding)
        if self.kind == "hdr":
            return ops.get(self.task, scale=self.clip_scale)
        return ops.get(self.task, bits=self.bits, rounding=rounding)

    def measurement_operator(self, keys: list[str], shape: tuple[int, ...]):
        """The operator that makes ``y``: :meth:`operator`, except that JPEG and quantisation round exactly."""
        from .. import operators as ops

        if self.rounding is not None:
            return self._nonlinear(ops, self.rounding)
        return self.operator(keys, shape)

    def degrade(self, x: Tensor, keys: list[str]) -> tuple[object, Tensor]:
        """``(operator, y)`` with ``y = A x + sigma_y n`` for images x (B, C, H, W) named ``keys``.

        Sample i draws its mask/kernel and noise from seeds of ``keys[i]`` only.
        """
        from ..operators import GaussianNoise

        if len(keys) != x.shape[0]:
            raise ConfigError(f"{len(keys)} image keys for a batch of {x.shape[0]}; pass one key per image")
        op = self.operator(keys, tuple(x.shape))
        y = self.measurement_operator(keys, tuple(x.shape))(x) if self.rounding is not None else op(x)
        if self.sigma_y > 0:
            noise = GaussianNoise(self.sigma_y)
            y = torch.cat([noise(y[i : i + 1], seed=self.seed(k, "noise")) for i, k in enumerate(keys)])
        return op, y


#: The task of each protocol kind.
_KIND_TASKS = {
    "sr": Task.SUPER_RESOLUTION,
    "box_inpaint": Task.INPAINTING,
    "random_inpaint": Task.INPAINTING,
    "gaussian_blur": Task.GAUSSIAN_DEBLUR,
    "motion_blur": Task.MOTION_DEBLUR,
    "denoise": Task.DENOISING,
    "phase_retrieval": Task.PHASE_RETRIEVAL,
    "jpeg": Task.JPEG,
    "hdr": Task.HDR,
    "quantization": Task.QUANTIZATION,
}
_NONLINEAR_KINDS = ("phase_retrieval", "jpeg", "hdr", "quantization")
_NONLINEAR_FIELDS = ("oversample", "best_of", "quality", "subsampling", "clip_scale", "bits", "rounding")

_BOX = dict(kind="box_inpaint", box=0.5, margin=1 / 16)
_BLUR = dict(kernel_size=61, padding="circular")

#: The named tasks at sigma_y = 0 (use :func:`get` / :func:`expand` for other levels).
TASKS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("sr4_bicubic", "sr", scale=4, sr_kind="bicubic"),
        Protocol("sr4_avgpool", "sr", scale=4, sr_kind="avgpool"),
        Protocol("box_inpaint", position="random", **_BOX),
        Protocol("box_inpaint_center", position="center", **_BOX),
        Protocol("random_inpaint_70", "random_inpaint", missing=0.70),
        Protocol("random_inpaint_92", "random_inpaint", missing=0.92),
        Protocol("gaussian_deblur", "gaussian_blur", kernel_std=3.0, **_BLUR),
        Protocol("motion_deblur", "motion_blur", intensity=0.5, **_BLUR),
        Protocol("denoise", "denoise"),
        Protocol("phase_retrieval", "phase_retrieval", oversample=2.0, best_of=1),
        Protocol("jpeg10", "jpeg", quality=10, subsampling="4:2:0", rounding="exact"),
        Protocol("hdr", "hdr", clip_scale=2.0),
        Protocol("quantization3", "quantization", bits=3, rounding="exact"),
    )
}


def get(task: str, **overrides) -> Protocol:
    """The protocol of a task id ``name@sigma_y`` (or bare ``name``: sigma_y 0); ``overrides`` replace fields."""
    name, _, level = task.partition("@")
    if name not in TASKS:
        raise ConfigError(f"unknown benchmark task {name!r}; choose from {', '.join(TASKS)}")
    if level:
        try:
            overrides.setdefault("sigma_y", float(level))
        except ValueError:
            raise ConfigError(f"bad noise level in task {task!r}; write e.g. {name}@0.05") from None
    return dataclasses.replace(TASKS[name], **overrides)


def expand(tasks: str | list[str], **overrides) -> list[Protocol]:
    """Protocols of a comma-separated list of task ids; a bare name means all of
    :data:`SIGMA_LEVELS`, ``all`` means every task at every level."""
    items = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if items == ["all"]:
        items = list(TASKS)
    out = []
    for t in items:
        ids = [t] if "@" in t else [f"{t}@{s:g}" for s in SIGMA_LEVELS]
        out += [get(i, **overrides) for i in ids]
    return out


__all__ = ["Protocol", "TASKS", "SIGMA_LEVELS", "get", "expand"]
