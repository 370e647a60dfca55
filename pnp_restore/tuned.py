"""Tuned defaults: per (prior, task, solver) settings found by ``pnp-restore bench tune``.

A prior may carry a table (``prior.tuned``, read from ``tuned.json`` next to its weights; the
built-in prior ships one) of the form::

    {"entries": {"<task>": {"<solver>": {"steps": 20, "options": {...},
                                          "schedule": {"kind": "karras", "sigma_max": ..., "sigma_min": ..., "rho": ...},
                                          "psnr": ..., "tasks": [...], "data": "...", "command": "..."}}}}

:func:`settings` turns an entry into ``restore`` arguments (``steps``, options and the
``sigmas`` of its schedule). ``restore(..., task=t, defaults="tuned")`` uses them where the prior
has an entry and falls back to the papers' per-task values (``defaults="paper"``) otherwise;
explicit arguments win over both. The command line uses the tuned values unless
``--paper-defaults`` is given; the benchmark's paper protocols use the papers' values.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError
from .tasks import Task, parse_task

#: file name of a prior's table, next to its weights
TABLE_NAME = "tuned.json"
#: the two sources of defaults
DEFAULTS = ("paper", "tuned")


def read_table(folder: str | Path) -> dict:
    """The table in ``folder/tuned.json`` ({} when there is none)."""
    path = Path(folder) / TABLE_NAME
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); delete it or re-run pnp-restore bench tune --write") from None
    if not isinstance(table.get("entries"), dict):
        raise CheckpointError(f"{path} has no 'entries' object; delete it or re-run pnp-restore bench tune --write")
    return table


def entry(prior, solver: str, task: str | Task | None) -> dict | None:
    """The tuned entry of ``solver`` for ``task`` in ``prior``'s table, or None."""
    task = parse_task(task)
    if task is None:
        return None
    table = getattr(prior, "tuned", None) or {}
    return table.get("entries", {}).get(task.value, {}).get(solver)


def schedule_sigmas(schedule: dict, steps: int) -> list[float]:
    """The Karras ramp (Karras et al., NeurIPS 2022, Eq. 5) of ``schedule`` (``sigma_max``,
    ``sigma_min``, ``rho`` on the [0, 1] scale) with ``steps`` levels."""
    from .priors.base import karras_sigmas

    lo, hi = float(schedule["sigma_min"]), float(schedule["sigma_max"])
    return karras_sigmas(steps, min(lo, hi), hi, float(schedule["rho"])).tolist()


def settings(found: dict, steps: int | None = None) -> dict:
    """``restore`` keyword arguments of a tuned entry: ``steps`` (``steps`` if given, else the
    entry's), its options and the ``sigmas`` of its schedule for that many steps."""
    n = int(found["steps"]) if steps is None else int(steps)
    out = {"steps": n, **found.get("options", {})}
    if found.get("schedule"):
        out["sigmas"] = schedule_sigmas(found["schedule"], n)
    return out


__all__ = ["DEFAULTS", "TABLE_NAME", "entry", "read_table", "schedule_sigmas", "settings"]
