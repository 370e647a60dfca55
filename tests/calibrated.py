"""Limits of the statistical solver tests, measured over many seeds.

``tests/data/calibration.json`` is written by ``python tests/calibration/calibrate.py``. Each entry
is one metric of one test case, measured on every problem/seed of the calibration (the tests run
the first of them), with its distribution and the limit derived from it:

``{"seeds": "...", "count": N, "min": ..., "median": ..., "max": ..., "margin": 1.3, "side": "upper",
"limit": max * margin}`` (``"side": "lower"``: ``limit = min / margin``; a metric that converges to 0 has
a floor above round-off, ``limit = max(max * margin, floor)``; ``"side": "fixed"`` records the measured
values behind a bound fixed in the test).

A test whose problem and noise are fixed thus fails only if its metric leaves the range that 50+
independent seeds span by more than the margin: not by the luck of one draw, nor by which SVD
basis (which solver noise) a machine's LAPACK picks; a solver bug that moves the metric past it fails.
"""

from __future__ import annotations

import json
import statistics
from functools import cache
from pathlib import Path

PATH = Path(__file__).resolve().parent / "data" / "calibration.json"
#: sections kept in :data:`PATH`; any other section ``s`` lives in ``data/calibration_<s>.json``
#: (one file per test module, so that modules are calibrated independently)
MAIN_SECTIONS = ("posterior", "integration")


def section_path(section: str) -> Path:
    """The file holding calibration ``section``."""
    return PATH if section in MAIN_SECTIONS else PATH.with_name(f"calibration_{section}.json")
#: the factor between the measured extreme over all seeds and the limit
MARGIN = 1.3


@cache
def _table(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def limit(section: str, key: str) -> float:
    """The calibrated limit of metric ``key`` (e.g. ``"ddrm/inpaint/0.01/ratio"``) in ``section``."""
    path = section_path(section)
    entries = _table(path).get(section, {})
    if key not in entries:
        raise KeyError(f"{key!r} is not in {path.name}[{section!r}]; rerun python tests/calibration/calibrate.py {section}")
    return entries[key]["limit"]


def summarize(
    values: list[float], seeds: str, side: str = "upper", margin: float = MARGIN, floor: float = 0.0
) -> dict:
    """Distribution of ``values`` over the calibration seeds and the limit with ``margin`` on ``side``
    (``"upper"``, ``"lower"``, or ``"fixed"`` with the fixed bound as ``floor``)."""
    lo, hi = min(values), max(values)
    bound = {"upper": max(hi * margin, floor), "lower": lo / margin, "fixed": floor}[side]
    return {
        "seeds": seeds,
        "count": len(values),
        "min": lo,
        "median": statistics.median(values),
        "max": hi,
        "margin": None if side == "fixed" else margin,
        "floor": floor,
        "side": side,
        "limit": bound,
    }
