"""Command line interface (placeholder group; the commands are built in the CLI issue)."""

import click


@click.group()
def main() -> None:
    """pnp-restore: training-free image restoration with diffusion priors."""
