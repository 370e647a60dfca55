"""Benchmarks: degradation protocols, datasets, metrics (PSNR, SSIM, LPIPS),
baselines, a resumable runner and reports. See ``docs/benchmarks.md``.

    >>> from pnp_restore import benchmarks
    >>> rows = benchmarks.run("sr4_bicubic@0.025", ["ddnm", "pinv"], "builtin", ["images/"], size=64)
    >>> benchmarks.report("results.jsonl", "report/")
"""

from __future__ import annotations

from .protocols import SIGMA_LEVELS, TASKS, Protocol
from .report import report
from .runner import run

__all__ = ["run", "report", "Protocol", "TASKS", "SIGMA_LEVELS"]
