"""``python -m pnp_restore.benchmarks run ...`` (also under ``torchrun``); see :mod:`.cli`."""

from .cli import main

main()
