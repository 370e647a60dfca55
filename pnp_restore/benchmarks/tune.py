"""Tuning of solver defaults per (prior, solver, task) on training images, with optuna.

``pnp-restore bench tune`` searches the hyper-parameters of one solver (its noise schedule and
its own options, :data:`SPACES`) with optuna's TPE sampler (Bergstra et al., NeurIPS 2011;
Akiba et al., KDD 2019) to maximise the mean PSNR of its restorations of training crops
degraded by one or more benchmark protocols. The study lives in an SQLite file, so an
interrupted run resumes where it stopped (each finished trial is stored) and a later call
with more ``--trials`` continues the same search. ``--write TABLE`` stores the best trial in a
tuned-defaults table (:mod:`pnp_restore.tuned`) with the command, data and score behind it.

Only training images may be used: tuning on a test set would make the benchmark numbers
that follow meaningless. The data folder is refused when it lies under a ``test`` folder.

The schedule is a Karras ramp (Karras et al., NeurIPS 2022, Eq. 5) between ``sigma_max`` and
``sigma_min`` on the [0, 1] scale with exponent ``rho``: rho = 1 is uniform in sigma, large
rho concentrates the steps at low noise. A DDPM prior's own respaced timesteps (DDIM
"uniform", "quad") are points of this family only approximately; the tuned ramp replaces them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..tuned import schedule_sigmas
from . import datasets as _datasets
from . import protocols as _protocols

Tensor = torch.Tensor
Params = dict[str, float]

#: the schedule's search ranges ([0, 1]-scale sigmas): wide enough for the papers' choices
#: (DDPM's 1000-step linear schedule starts at sigma ~80 on this scale, EDM's at 40).
SCHEDULE_SPACE = {"sigma_max": (0.5, 80.0), "sigma_min": (0.002, 0.1), "rho": (1.0, 10.0)}


def _ddrm(trial) -> Params:
    return {"eta": trial.suggest_float("eta", 0.0, 1.0), "eta_b": trial.suggest_float("eta_b", 0.0, 1.0)}


def _ddnm(trial) -> Params:
    return {"eta": trial.suggest_float("eta", 0.0, 1.0)}


def _diffpir(trial) -> Params:
    return {"lam": trial.suggest_float("lam", 0.05, 50.0, log=True), "zeta": trial.suggest_float("zeta", 0.0, 1.0)}


def _dps(trial) -> Params:
    return {"zeta": trial.suggest_float("zeta", 0.02, 5.0, log=True)}


def _pnp_admm(trial) -> Params:
    return {
        "sigma_max": trial.suggest_float("sigma_max", 0.02, 1.0, log=True),
        "sigma_min": trial.suggest_float("sigma_min", 0.002, 0.1, log=True),
    }


#: solver -> its options' search space (an optuna trial -> options); solvers with a noise
#: schedule also search :data:`SCHEDULE_SPACE` (see :data:`SCHEDULED`).
SPACES: dict[str, Callable] = {"ddrm": _ddrm, "ddnm": _ddnm, "diffpir": _diffpir, "dps": _dps, "pnp_admm": _pnp_admm}
#: the solvers whose noise levels come from ``sigmas`` (PnP-ADMM's are its own options).
SCHEDULED = ("ddrm", "ddnm", "diffpir", "dps")


def suggest(trial, solver: str) -> tuple[Params, dict | None]:
    """``(options, schedule or None)`` of one trial for ``solver``."""
    options = SPACES[solver](trial)
    if solver not in SCHEDULED:
        return options, None
    schedule = {
        "kind": "karras",
        "sigma_max": trial.suggest_float("sigma_max", *SCHEDULE_SPACE["sigma_max"], log=True),
        "sigma_min": trial.suggest_float("sigma_min", *SCHEDULE_SPACE["sigma_min"], log=True),
        "rho": trial.suggest_float("rho", *SCHEDULE_SPACE["rho"]),
    }
    return options, schedule


#: folder names that hold evaluation images (the usual test sets, and ``test``/``testsets`` folders)
TEST_FOLDERS = {"test", "testsets", "cbsd68", "bsd68", "kodak24", "mcmaster", "set5", "set12", "set14", "urban100"}


def check_training_data(folder: str | Path) -> Path:
    """``folder`` as a Path, refused (:class:`ConfigError`) if a part of it names a test set (:data:`TEST_FOLDERS`)."""
    path = Path(folder).resolve()
    if any(part.lower() in TEST_FOLDERS for part in path.parts):
        raise ConfigError(f"{folder} is a test set; tune on training or validation images only (e.g. data/train/BSDS500)")
    return path


def evaluate(
    images: Sequence[_datasets.BenchImage],
    protos: Sequence[_protocols.Protocol],
    prior,
    solver: str,
    steps: int,
    options: Params,
    schedule: dict | None,
    seed: int = 0,
) -> dict[str, float]:
    """Mean PSNR (dB) and seconds per image of ``solver`` over ``images`` x ``protos``.

    The papers' per-task settings apply to what ``options`` does not set (``steps`` always wins).

    A solver error (divergence, NaN) scores ``-inf`` rather than stopping the study.
    """
    from ..errors import PnPRestoreError
    from ..restoration import restore
    from .metrics import psnr

    scores, start = [], time.perf_counter()
    sigmas = None if schedule is None else schedule_sigmas(schedule, steps)
    for proto in protos:
        for im in images:
            operator, y = proto.degrade(im.x, [im.key])
            try:
                x = restore(y, operator, prior, solver, sigma_y=proto.sigma_y, steps=steps, seed=seed + im.index,
                            task=proto.paper_task, **({"sigmas": sigmas} if sigmas is not None else {}), **options)
            except PnPRestoreError:
                return {"psnr": -math.inf, "time_s": math.inf}
            scores += psnr(x, im.x)
    n = len(scores)
    return {"psnr": sum(scores) / n, "time_s": (time.perf_counter() - start) / n}


def tune(
    solver: str,
    tasks: str | list[str],
    data: str | Path,
    *,
    prior: str | object = "builtin",
    storage: str | Path,
    trials: int = 40,
    steps: int = 20,
    images: int = 8,
    size: int = 64,
    manifest: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
):
    """Run (or continue) the study of ``solver`` on ``tasks`` until it holds ``trials`` finished trials.

    Args:
        solver: a solver of :data:`SPACES`.
        tasks: benchmark task ids (``random_inpaint_70@0``, ...): the score is the mean over all.
        data: a folder of TRAINING images (:func:`check_training_data`); the first ``images``
            are centre-cropped to ``size`` px.
        prior: prior source for :func:`pnp_restore.priors.load`, or a prior object (named by its class).
        storage: the SQLite file of the study (created, or resumed when it exists).
        trials: total finished trials wanted (those already stored count).
        steps: solver steps (fixed: the CPU budget decides it, the search does the rest).
        seed: seed of the TPE sampler and of the solvers (image i uses ``seed + i``).

    Returns:
        The optuna study; its ``user_attrs`` hold the settings, each trial's ``user_attrs``
        its options, schedule and time per image.
    """
    import optuna

    if solver not in SPACES:
        raise ConfigError(f"no search space for solver {solver!r}; tunable: {', '.join(SPACES)}")
    folder = check_training_data(data)
    protos = _protocols.expand(tasks, size=size)
    imgs = _datasets.load(folder, size, "center", images, manifest)
    from ..priors import load

    prior_obj, prior = (load(prior), prior) if isinstance(prior, str) else (prior, type(prior).__name__)
    name = study_name(prior, solver, protos, steps, size, images)
    sampler = optuna.samplers.TPESampler(seed=seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{Path(storage).resolve()}", sampler=sampler,
                                direction="maximize", load_if_exists=True)
    study.set_user_attr("settings", {"prior": prior, "solver": solver, "tasks": [p.id for p in protos], "steps": steps,
                                     "images": images, "size": size, "data": str(folder), "seed": seed})

    def objective(trial) -> float:
        options, schedule = suggest(trial, solver)
        got = evaluate(imgs, protos, prior_obj, solver, steps, options, schedule, seed)
        trial.set_user_attr("options", options)
        trial.set_user_attr("schedule", schedule)
        trial.set_user_attr("time_s", got["time_s"])
        return got["psnr"] if math.isfinite(got["psnr"]) else -1e9

    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if done < trials:
        study.optimize(objective, n_trials=trials - done, show_progress_bar=progress)
    return study


def study_name(prior: str, solver: str, protos: Sequence[_protocols.Protocol], steps: int, size: int, images: int) -> str:
    """One study per prior, solver, task set, steps and data size."""
    return f"{prior}|{solver}|{','.join(p.id for p in protos)}|steps={steps}|{images}x{size}px"


def best_entry(study, command: str) -> dict:
    """The tuned-defaults entry of the study's best trial (what :func:`write_entry` stores)."""
    best = study.best_trial
    settings = study.user_attrs["settings"]
    return {
        "steps": settings["steps"],
        "options": best.user_attrs["options"],
        "schedule": best.user_attrs["schedule"],
        "psnr": round(best.value, 3),
        "time_s_per_image": round(best.user_attrs["time_s"], 3),
        "trials": len(study.get_trials(deepcopy=False, states=(best.state,))),  # the finished ones
        "tasks": settings["tasks"],
        "data": f"{settings['data']} (first {settings['images']} images, {settings['size']} px centre crops)",
        "command": command,
    }


def write_entry(table: str | Path, task: str, solver: str, entry: dict) -> Path:
    """Store ``entry`` as the tuned defaults of ``solver`` for ``task`` in the JSON ``table`` (atomically)."""
    from ..tasks import parse_task

    task = parse_task(task).value
    path = Path(table)
    data = json.loads(path.read_text()) if path.is_file() else {"entries": {}}
    data.setdefault("entries", {}).setdefault(task, {})[solver] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


__all__ = ["SCHEDULE_SPACE", "SCHEDULED", "SPACES", "best_entry", "check_training_data", "evaluate", "schedule_sigmas",
           "study_name", "suggest", "tune", "write_entry"]
