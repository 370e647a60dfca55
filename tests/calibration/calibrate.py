"""Measure the statistical test metrics over many seeds and write their limits to tests/data/calibration.json.

Usage (single-threaded, ~30 min in all; a section alone keeps the other's entries)::

    python tests/calibration/calibrate.py [posterior|integration|integration=<solver>,...|posterior_<name> ...]

* ``posterior``: every sampler case of tests/test_posterior.py on problems 0..49 (its ``PROBLEMS``),
  n samples each, and PnP-ADMM's default schedule on the same 50 problems.
* ``posterior_<name>``: the ``SAMPLER_CASES`` of tests/test_posterior_<name>.py (a solver added
  later brings its own module and its own file, tests/data/calibration_posterior_<name>.json).
* ``nonlinear_operators``, ``pnpdm_extra``: metrics measured by a test module's own function
  (:data:`EXTRA`): DPS's misfit on the nonlinear operators; PnP-DM's likelihood step and nonlinear runs.
* ``latent_solvers``: the latent solvers on a Gaussian latent prior with a linear autoencoder.
* ``integration``: every (solver, operator) pair of tests/test_integration.py on images 0..99
  (50 seeds x the tests' 2 images).

Each metric's min / median / max over the seeds and its limit (max x 1.3, or min / 1.3 for lower
bounds) are written by :func:`calibrated.summarize`. The tests run the first problem / images with the
same seeds, so they sit inside the measured distribution.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import calibrated  # noqa: E402
import test_integration as integ  # noqa: E402
import test_posterior as post  # noqa: E402

LOWER = {"fit_min", "res_factor_min"}
#: metrics that converge to 0: limits no tighter than this (round-off is ~1e-10 and depends on the BLAS)
FLOORS = {"map": 1e-6}


def _entries(key: str, values: list[float], seeds: str) -> dict[str, dict]:
    metric = key.rsplit("/", 1)[-1]
    side = "lower" if metric in LOWER else "upper"
    return {key: calibrated.summarize(values, seeds, side, floor=FLOORS.get(metric, 0.0))}


def sampler_entries(cases: list, fns: dict | None = None, exact_at_zero: tuple[str, ...] = ()) -> dict[str, dict]:
    """The metrics of sampler ``cases`` (test_posterior.py's format) on problems 0..49 and their limits;
    ``exact_at_zero``: solvers whose noiseless residual has a fixed bound in the test instead."""
    out: dict[str, dict] = {}
    count = post.PROBLEMS
    for name, kw, n, op_name, sigma_y in cases:
        t = time.time()
        key = post.case_key(name, kw, op_name, sigma_y)
        seeds = f"problems 0-{count - 1} (truth seed 100+j, noise seed 7+j), solver seeds {n}j..{n}j+{n - 1}"
        got = post.sampler_metrics(name, kw, n, op_name, sigma_y, count, fns=fns)
        for metric, values in got.items():
            if metric == "res_factor":
                out.update(_entries(f"{key}/res_factor_min", values, seeds))
                out.update(_entries(f"{key}/res_factor_max", values, seeds))
            elif not (metric == "res" and name in exact_at_zero):
                out.update(_entries(f"{key}/{metric}", values, seeds))
        print(f"{key}: {time.time() - t:.0f} s, ratio max {max(got['ratio']):.3f}", flush=True)
    return out


def posterior() -> dict[str, dict]:
    out = sampler_entries(post.SAMPLER_CASES, exact_at_zero=("ddnm",))  # DDNM is exact at sigma_y = 0: fixed 1e-10
    count = post.PROBLEMS
    seeds = f"problems 0-{count - 1} (truth seed 100+j), deterministic solver"
    out.update(_entries("pnp_admm/inpaint/0.0/default_error", post.admm_error("inpaint", 0.0).tolist(), seeds))
    for op_name, sigma_y in post.ADMM_CASES:  # the values behind the convergence test's fixed bound
        err = post.admm_error(op_name, sigma_y, steps=300, sigma_min=0.05).tolist()
        key = f"pnp_admm/{op_name}/{sigma_y}/steps=300_error"
        out[key] = calibrated.summarize(err, seeds, "fixed", floor=post.ADMM_BOUND)
    return out


def integration(only: list[str] | None = None) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for solver in only or integ.SOLVERS:
        count = integ.CALIBRATION_IMAGES.get(solver, integ.IMAGES)
        seeds = f"images 0-{count - 1} (truth seed i, noise seed 10+i, solver seed i)"
        for op_name, make in integ.OPERATORS.items():
            if not integ.works(solver, make()):
                continue
            t = time.time()
            got = integ.restored_quality(solver, op_name, count)
            key = f"{solver}/{op_name}"
            out.update(_entries(f"{key}/fit_min", got["fit"].tolist(), seeds))
            out.update(_entries(f"{key}/fit_max", got["fit"].tolist(), seeds))
            for metric in ("err_post", "err_pinv", "map"):
                if metric in got:
                    out.update(_entries(f"{key}/{metric}", got[metric].tolist(), seeds))
            print(f"{key}: {time.time() - t:.0f} s, err_post max {got['err_post'].max():.2f}", flush=True)
    return out


def sampler_module(section: str) -> dict[str, dict]:
    """Section ``posterior_<name>``: the ``SAMPLER_CASES`` of tests/test_posterior_<name>.py (with its
    ``SOLVER_FNS``) on problems 0..49, as :func:`posterior` does for tests/test_posterior.py."""
    module = importlib.import_module(f"test_{section}")
    return sampler_entries(module.SAMPLER_CASES, module.SOLVER_FNS)


SECTIONS = {"posterior": posterior, "integration": integration}
#: sections measured by a test module's own function (module, function returning the section's entries)
EXTRA = {"nonlinear_operators": ("test_nonlinear_operators", "calibrate"),
         "pnpdm_extra": ("test_posterior_pnpdm", "calibrate_extra"),
         "latent_solvers": ("test_latent_solvers", "calibrate")}  # fmt: skip


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    for arg in argv or list(SECTIONS):
        section, _, only = arg.partition("=")
        path = calibrated.section_path(section)
        table = json.loads(path.read_text()) if path.is_file() else {}
        if only:  # integration=daps,pigdm: those solvers' entries only, the others kept
            solvers = only.split(",")
            kept = {k: v for k, v in table.get(section, {}).items() if k.split("/")[0] not in solvers}
            entries = {**kept, **integration(solvers)}
        elif section in EXTRA:
            module, function = EXTRA[section]
            entries = getattr(importlib.import_module(module), function)()
        else:
            entries = SECTIONS[section]() if section in SECTIONS else sampler_module(section)
        table["generated_by"] = "python tests/calibration/calibrate.py"
        table[section] = entries
        path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
