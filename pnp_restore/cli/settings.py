"""The settings every restoration command shares, their defaults and limits, and their checks.

Click-free: :class:`Common` is what :mod:`.options` builds from the command line
and what :func:`pnp_restore.cli.pipeline.run` takes, so the pipeline can be
called (and tested) without click. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..tasks import Task

#: per-command default ``--sigma-y`` ([0, 1] scale; ``denoise`` has ``--sigma`` instead).
#: sr, deblur: 0.01 (= 2.55/255): sensor noise and compression mean no photo fits y = A(x)
#: exactly, and sigma_y = 0 makes the solvers copy that noise into the result.
#: inpaint: 0: the pixels the user did not mask are kept exactly (copied from the input
#: into the output, see :func:`pnp_restore.cli.pipeline.run`); ``--sigma-y 0.02`` says the
#: photo is noisy and lets the solver denoise them too.
#: jpeg: 0.005: the differentiable codec (smooth rounding, float DCT) reproduces a libjpeg file
#: to ~1-2/255 RMS (tests/test_nonlinear_operators.py), which the solver must not fit.
DEFAULT_SIGMA_Y = {"inpaint": 0.0, "sr": 0.01, "deblur": 0.01, "jpeg": 0.005}

#: per-command default solver (see docs/cli.md).
#: jpeg: ΠGDM, which the ΠGDM paper runs on JPEG restoration through the codec's pseudo-inverse
#: (a decoded JPEG is its own, pnp_restore.operators.jpeg); DDRM/DDNM/DiffPIR need a linear operator.
DEFAULT_SOLVER = {"inpaint": "ddrm", "sr": "ddrm", "deblur": "diffpir", "denoise": "denoiser", "jpeg": "pigdm"}

#: the paper task whose published solver settings each command uses by default
#: (:func:`pnp_restore.solvers.task_defaults`; ``deblur --kernel motion:...`` uses motion
#: deblurring's). None: no paper publishes denoising settings.
COMMAND_TASK = {"inpaint": Task.INPAINTING, "sr": Task.SUPER_RESOLUTION, "deblur": Task.GAUSSIAN_DEBLUR,
                "denoise": None, "jpeg": Task.JPEG}

#: ``denoise --solver denoiser``: one call of the prior's MMSE denoiser (no sampling).
DENOISER = "denoiser"

#: at most this many frames are kept per output for --save-steps.
MAX_FRAMES = 40

#: upper limits of the numeric options (a typo such as --steps 1e12 is refused at once).
MAX_STEPS = 100_000
MAX_SEED = 2**63 - 1
MAX_SAMPLES = 1000
MAX_BATCH = 1024
MAX_TILE = 16384
MAX_SCALE = 16


@dataclasses.dataclass(frozen=True)
class Common:
    """The options every restoration command shares; the field defaults are the CLI's defaults.

    Attributes:
        solver: a name of :data:`pnp_restore.solvers.SOLVERS`, or :data:`DENOISER` (``denoise`` only).
        prior: source for :func:`pnp_restore.priors.load`; ``arch`` its architecture (checkpoint files, presets).
        steps: solver steps (None: the solver's published value).
        seed: base seed; output k in processing order uses ``seed + k``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (:func:`pnp_restore.devices.resolve_device`).
        dtype: precision of the prior network (``float32``, ``float16``, ``bfloat16``).
        output: ``-o``: a file, a folder, or None (``IMAGE_restored.png`` beside each input).
        overwrite: replace existing outputs (never inputs).
        samples: posterior samples per image.
        save_steps: also write ``OUT_steps.gif`` with the x0 estimates.
        tile: tile size in pixels for the prior (None or 0: whole images).
        batch_size: images (x samples) restored together.
        sidecar: write ``OUT.json``.
        quiet: no progress bar or messages.
        opt: raw ``KEY=VALUE`` solver options (:func:`solver_options`).
        paper_defaults: use the papers' per-task settings instead of the prior's tuned ones
            (:mod:`pnp_restore.tuned`; the tuned ones apply where the prior has them).
        prompt, guidance: text prompt and classifier-free guidance scale of a latent (Stable
            Diffusion) prior (None: the prior's defaults, the empty prompt and no guidance).
        offline: never download a prior that is not installed (also ``HF_HUB_OFFLINE=1``).
    """

    solver: str
    prior: str = "builtin"
    arch: str | None = None
    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    output: str | None = None
    overwrite: bool = False
    samples: int = 1
    save_steps: bool = False
    tile: int | None = None
    batch_size: int = 4
    sidecar: bool = True
    quiet: bool = False
    opt: tuple[str, ...] = ()
    paper_defaults: bool = False
    prompt: str | None = None
    guidance: float | None = None
    offline: bool = False

    @property
    def defaults(self) -> str:
        """``restore``'s ``defaults=``: ``"paper"`` or ``"tuned"``."""
        return "paper" if self.paper_defaults else "tuned"


#: the defaults of :class:`Common`, by field name (what the options show).
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Common) if f.default is not dataclasses.MISSING}

#: solver arguments that have their own flag (or are set by the command), so not --opt.
_NOT_OPTS = {"seed": "--seed", "steps": "--steps", "solver": "--solver", "sigma_y": "--sigma-y", "task": None,
             "callback": None, "return_info": None, "x_init": None}


def parse_opts(pairs: tuple[str, ...], command: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to a dict (values parsed as JSON, else kept as strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--opt {pair!r} is not KEY=VALUE; write e.g. --opt eta=0.85")
        if key in _NOT_OPTS:
            flag = "--sigma" if key == "sigma_y" and command == "denoise" else _NOT_OPTS[key]
            raise ConfigError(f"--opt {pair}: {key} is not a solver option; "
                              + (f"use {flag} instead" if flag else "it cannot be set from the command line"))
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def solver_options(common: Common, command: str) -> dict[str, Any]:
    """The ``--opt`` options checked by :func:`pnp_restore.solvers.validate_options`.

    Also refuses an unknown solver and options that would be ignored (``--steps``
    or ``--opt`` with the one-call ``denoiser``).
    """
    opts = parse_opts(common.opt, command)
    from ..solvers import LATENT_SPECS, SOLVERS, validate_options

    names = ", ".join([*sorted(SOLVERS), *LATENT_SPECS])
    if common.solver == DENOISER:
        if command != "denoise":
            raise ConfigError(f"--solver {DENOISER} only exists for `denoise`; choose one of: {names}")
        if opts or common.steps is not None:
            raise ConfigError(f"--solver {DENOISER} is one denoiser call and takes no --steps or --opt; "
                              "drop them or choose a sampling --solver")
        return {}
    if common.solver not in SOLVERS and common.solver not in LATENT_SPECS:
        raise ConfigError(f"unknown solver {common.solver!r}; choose one of: {names}")
    return dict(validate_options(common.solver, opts))


def check_arch(common: Common) -> None:
    """--arch only means something for checkpoint files and presets; refuse it elsewhere."""
    if common.arch is None:
        return
    from ..priors.checkpoints import WEIGHT_SUFFIXES
    from ..priors.registry import ENTRIES

    is_file = Path(common.prior).suffix.lower() in WEIGHT_SUFFIXES
    if common.prior == "builtin" or not (is_file or common.prior in ENTRIES):
        raise ConfigError(f"--arch only applies to a checkpoint file or a preset from `pnp-restore priors`; "
                          f"--prior {common.prior} brings its own architecture, so drop --arch")


def check_seeds(common: Common, outputs: int) -> None:
    """The seeds ``seed .. seed + outputs - 1`` must stay valid."""
    if common.seed + outputs - 1 > MAX_SEED:
        raise ConfigError(f"--seed {common.seed} + one per output passes {MAX_SEED}; use a smaller --seed")


def default_steps(solver: str, command: str) -> int:
    """The steps ``solver`` runs for ``command`` without ``--steps``: its task's published value
    (:data:`COMMAND_TASK`), else the solver's own default; 1 for the one-call ``denoiser``."""
    if solver == DENOISER:
        return 1
    from ..solvers import spec, task_defaults

    return int(task_defaults(solver, COMMAND_TASK[command]).get("steps", spec(solver).default_steps))


def defaults_table() -> str:
    """The markdown table of the per-command defaults in docs/cli.md (checked by the tests).

    One column per command: its default solver, its ``--sigma-y`` and the steps every solver of
    :data:`pnp_restore.solvers.REGISTRY` runs there without ``--steps`` (:func:`default_steps`).
    """
    from ..solvers import REGISTRY

    commands = list(DEFAULT_SOLVER)
    head = [""] + [f"`{c}`" + (f" ({COMMAND_TASK[c].value})" if COMMAND_TASK[c] else "") for c in commands]
    rows = [head, ["---"] * len(head)]
    rows.append(["default `--solver`"] + [f"`{DEFAULT_SOLVER[c]}`" for c in commands])
    rows.append(["default `--sigma-y`"]
                + [f"{DEFAULT_SIGMA_Y[c]:g}" if c in DEFAULT_SIGMA_Y else "(`--sigma`, default auto)" for c in commands])
    rows.append([f"`{DENOISER}` steps"] + [str(default_steps(DENOISER, c)) if c == "denoise" else "-" for c in commands])
    for spec in REGISTRY:
        rows.append([f"`{spec.name}` steps"] + [str(default_steps(spec.name, c)) for c in commands])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def tuned_table() -> str:
    """The markdown table of the built-in prior's tuned defaults in docs/cli.md (checked by the tests):
    one row per (task, solver) of its ``tuned.json`` (:mod:`pnp_restore.tuned`)."""
    from ..priors.builtin import WEIGHTS_DIR
    from ..tuned import read_table

    rows = ["| task | solver | steps | schedule (Karras, [0, 1] scale) | options | trials | PSNR on the tuning crops |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, by_solver in sorted(read_table(WEIGHTS_DIR).get("entries", {}).items()):
        for solver, e in sorted(by_solver.items()):
            sch = e.get("schedule") or {}
            schedule = f"{sch['sigma_max']:.3g} -> {sch['sigma_min']:.3g}, rho {sch['rho']:.3g}" if sch else "-"
            options = ", ".join(f"{k} {v:.3g}" for k, v in sorted(e.get("options", {}).items())) or "-"
            rows.append(f"| {task} | `{solver}` | {e['steps']} | {schedule} | {options} | {e.get('trials')} | {e.get('psnr')} dB |")
    return "\n".join(rows)

