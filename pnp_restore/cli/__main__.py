"""``python -m pnp_restore.cli ...``: the ``pnp-restore`` program."""

from . import main

main(prog_name="pnp-restore")
