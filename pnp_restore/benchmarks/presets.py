"""Named benchmark presets (keyword arguments of :func:`pnp_restore.benchmarks.run`).

``quick``: a CPU smoke benchmark (minutes on 2 cores): 64 px centre crops, the
first 3 images of each dataset, four tasks at one noise level, 20 steps for
every diffusion solver (far below DPS's published 1000), the built-in prior and
the two cheap baselines.

``full``: the paper-scale protocol for GPUs: 256 px centre crops, every image
of each given folder, every task at every noise level, the published number of
steps of each solver (``steps=None``), three seeds (deterministic methods run
once), all solvers and the pinv / ADMM-TV baselines. PnP-BM3D is left out: BM3D
is CPU-bound (tens of seconds per call at 256 px); add ``--solvers ...,pnp_bm3d``
to a run on a subset.

Neither names a data folder: pass ``--data`` (see ``benchmarks/run_quick.sh``).
A preset can also be a JSON file with the same keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

PRESETS: dict[str, dict] = {
    "quick": {
        "tasks": ["sr4_bicubic@0.025", "box_inpaint_center@0.025", "random_inpaint_70@0.025", "gaussian_deblur@0.025"],
        "solvers": ["ddrm", "ddnm", "diffpir", "dps", "pinv", "admm_tv"],
        "priors": ["builtin"],
        "size": 64,
        "images": 3,
        "steps": 20,
        "seeds": [0],
    },
    "full": {
        "tasks": ["all"],
        "solvers": ["dps", "ddrm", "ddnm", "diffpir", "pnp_admm", "pinv", "admm_tv"],
        "priors": ["builtin"],
        "size": 256,
        "images": None,
        "steps": None,
        "seeds": [0, 1, 2],
    },
}


def get(preset: str | Path) -> dict:
    """A preset by name, or read from a JSON file."""
    if str(preset) in PRESETS:
        return dict(PRESETS[str(preset)])
    path = Path(preset)
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    raise ConfigError(f"unknown benchmark preset {str(preset)!r}; use {' or '.join(PRESETS)} or a .json file")


__all__ = ["PRESETS", "get"]
