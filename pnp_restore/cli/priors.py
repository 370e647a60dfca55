"""``pnp-restore priors``: the known priors, whether installed, and where to get them."""

from __future__ import annotations

from typing import Any

import click

from .group import CONTEXT, debug_option, main


@main.command("priors", context_settings=CONTEXT)
@debug_option
def priors_cmd() -> None:
    """List the known priors, whether their weights are installed, and where to get them.

    \b
    Example:
      pnp-restore priors
      pnp-restore inpaint photo.png mask.png --prior NAME
    """
    from ..priors import available

    rows = available()
    head = ("name", "resolution", "range", "parameterisation", "installed", "description")
    table = [head] + [
        (str(r.get("name")), _fmt_res(r.get("resolution")), str(r.get("data_range", r.get("range", ""))),
         str(r.get("parameterisation", "")), "yes" if r.get("installed") else "no", str(r.get("description", "")))
        for r in rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(head))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    missing = [r for r in rows if not r.get("installed")]
    if missing:
        click.echo("\nNot installed (downloaded on first use when online, unless HF_HUB_OFFLINE=1 or --offline):")
        for r in missing:
            click.echo(f"  {r.get('name')}: {_how_to_get(r)}")
    click.echo("\nUse one with --prior NAME, e.g. pnp-restore inpaint photo.png mask.png --prior builtin")


def _how_to_get(row: dict) -> str:
    from ..priors import registry

    entry = registry.ENTRIES.get(row.get("name"), {})
    if entry.get("hub_id"):
        return f"hub {entry['hub_id']}; by hand: hf download {entry['hub_id']}  (fills the local Hugging Face cache)"
    if entry.get("filename"):
        target = registry.weights_dir() / entry["filename"]
        if entry.get("download"):
            return f"{entry['download']} -> {target}"
        return f"not downloadable automatically: download {row.get('url')} and save it as {target}"
    return str(row.get("url") or "see docs/priors.md")


def _fmt_res(res: Any) -> str:
    if res is None:
        return "any"
    if isinstance(res, (tuple, list)):
        return "x".join(map(str, res))
    return f"{res}x{res}" if isinstance(res, int) else str(res)
