"""The ``pnp-restore`` command line (click).

Commands: ``inpaint``, ``sr``, ``deblur``, ``denoise``, ``jpeg`` restore image files;
``priors`` lists the known priors; ``train-prior`` and ``bench`` are loaded
lazily from :mod:`pnp_restore.train` and :mod:`pnp_restore.benchmarks.cli`.
Everything heavy (torch, OpenCV, the solvers) is imported inside the commands, so
``pnp-restore --help`` is fast and one missing piece does not break the others.
See ``docs/cli.md`` for the defaults and their reasons.

Modules: :mod:`.group` (the click group, its lazy commands and the one error
boundary), :mod:`.settings` (the shared settings, defaults and checks, click-free),
:mod:`.options` (the shared click options), :mod:`.plan` (outputs, memory, batches),
:mod:`.pipeline` (read, restore, write; click-free), one module per command.
"""

from __future__ import annotations

from . import deblur, denoise, inpaint, jpeg, priors, sr  # noqa: F401  (registers the commands on main)
from .group import main

__all__ = ["main"]
