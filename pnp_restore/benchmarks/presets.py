"""Named benchmark presets (keyword arguments of :func:`pnp_restore.benchmarks.run`).

``quick``: a CPU smoke benchmark (minutes on 2 cores): 64 px centre crops, the
first 3 images of each dataset, four linear tasks at one noise level and the four
nonlinear ones (:data:`QUICK_NONLINEAR`), 20 steps for every diffusion solver and
PnP-ADMM (far below DPS's published 1000; DAPS: 20 annealing steps x 5 ODE steps;
PnP-DM: 20 iterations of at most 10 EDM levels, its coupling decaying by 0.83 per
iteration so that it reaches the published rho_min within them), the built-in prior,
the two cheap generic baselines (pinv, ADMM-TV) and the classical tools of each
task (:data:`QUICK_CLASSICAL`: OpenCV Telea / Navier-Stokes and biharmonic
inpainting, bicubic / Lanczos upsampling, Wiener and Richardson-Lucy
deconvolution). A single-task baseline only runs on its own task; see
:func:`pnp_restore.benchmarks.baselines.supports`.

``full``: the paper-scale protocol for GPUs: 256 px centre crops, every image
of each given folder, every task at every noise level, the published number of
steps of each solver (``steps=None``), three seeds (deterministic methods run
once), all solvers and the pinv / ADMM-TV baselines. PnP-BM3D is left out: BM3D
is CPU-bound (tens of seconds per call at 256 px); add ``--solvers ...,pnp_bm3d``
to a run on a subset.

Neither names a data folder: pass ``--data`` (see ``benchmarks/run_quick.sh``).
A preset can also be a JSON file: an object with some of the keys :data:`KEYS`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

#: the classical single-task baselines of ``quick`` (each applies to one or two of its tasks). Measured on
#: one 64 px image (Set5 baby) over the four quick tasks, 2 busy CPU cores: 1.05 s for all seven, of
#: which Richardson-Lucy (30 iterations) takes 0.94 s; ADMM-TV alone takes 5.7 s.
QUICK_CLASSICAL = ["opencv_telea", "opencv_ns", "biharmonic", "bicubic", "lanczos", "wiener", "richardson_lucy"]

#: the nonlinear tasks of ``quick`` (only the solvers that take a nonlinear operator run them).
QUICK_NONLINEAR = ["phase_retrieval@0.025", "jpeg10@0", "hdr@0.025", "quantization3@0"]

PRESETS: dict[str, dict] = {
    "quick": {
        "tasks": ["sr4_bicubic@0.025", "box_inpaint_center@0.025", "random_inpaint_70@0.025", "gaussian_deblur@0.025",
                  *QUICK_NONLINEAR],
        "solvers": ["ddrm", "ddnm", "diffpir", "dps", "pnp_admm", "daps", "pigdm", "reddiff", "pnpdm", "pinv", "admm_tv",
                    *QUICK_CLASSICAL],
        # PnP-DM runs an EDM sampler of up to 100 levels in each of its steps: 10 keep it at ~DAPS's cost; its
        # coupling decays by 0.9 per step from 5 and needs 33 steps to reach rho_min 0.15: 0.83 gets there in 20
        "solver_options": {"pnpdm": {"edm_steps": 10, "rho_decay": 0.83}},
        "priors": ["builtin"],
        "size": 64,
        "images": 3,
        "steps": 20,
        "seeds": [0],
    },
    "full": {
        "tasks": ["all"],
        "solvers": ["dps", "ddrm", "ddnm", "diffpir", "pnp_admm", "daps", "pigdm", "reddiff", "pnpdm", "pinv", "admm_tv"],
        "priors": ["builtin"],
        "size": 256,
        "images": None,
        "steps": None,
        "seeds": [0, 1, 2],
    },
}


def _str_list(v) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _int(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


#: keys a preset may set, each with a check of its value and the expected form.
KEYS: dict[str, tuple] = {
    "tasks": (_str_list, "a task id or a list of them"),
    "solvers": (_str_list, "a solver name or a list of them"),
    "priors": (_str_list, "a prior source or a list of them"),
    "size": (lambda v: _int(v, 8), "an integer >= 8"),
    "crop": (lambda v: v in ("center", "resize"), '"center" or "resize"'),
    "images": (lambda v: v is None or _int(v, 1), "an integer >= 1 or null"),
    "steps": (lambda v: v is None or _int(v, 1) or (isinstance(v, dict) and all(_int(x, 1) for x in v.values())),
              "an integer >= 1, null, or {solver: steps}"),  # fmt: skip
    "seeds": (lambda v: isinstance(v, list) and bool(v) and all(_int(x, 0) for x in v), "a non-empty list of integers >= 0"),
    "solver_options": (lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
                       "{solver: {option: value}}"),  # fmt: skip
}


def check(preset: dict, source: str = "preset") -> dict:
    """``preset`` itself if every key is known and every value has the right form; else :class:`ConfigError`."""
    if not isinstance(preset, dict):
        raise ConfigError(f"{source} must hold a JSON object {{key: value}}; got {type(preset).__name__}")
    for key, value in preset.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key {key!r} in {source}; use {', '.join(KEYS)}")
        ok, form = KEYS[key]
        if not ok(value):
            raise ConfigError(f"{key!r} in {source} must be {form}; got {json.dumps(value)[:60]}")
    return preset


def get(preset: str | Path) -> dict:
    """A preset by name, or read from a JSON file (checked with :func:`check`)."""
    if str(preset) in PRESETS:
        return dict(PRESETS[str(preset)])
    path = Path(preset)
    if path.suffix != ".json" or not path.is_file():
        raise ConfigError(f"unknown benchmark preset {str(preset)!r}; use {' or '.join(PRESETS)} or a .json file")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"preset {path} is not valid JSON ({str(e).splitlines()[0][:80]}); fix the file") from None
    except OSError as e:
        raise ConfigError(f"cannot read preset {path}: {e.strerror or e}") from None
    return check(data, f"preset {path}")


__all__ = ["PRESETS", "QUICK_CLASSICAL", "KEYS", "check", "get"]
