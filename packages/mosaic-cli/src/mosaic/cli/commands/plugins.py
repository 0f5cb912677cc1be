"""``mosaic plugins``: what is installed, what it provides, and what failed."""

from __future__ import annotations

import json

import click

from mosaic.core.plugins import PluginRecord, get_host


def _summarise_components(record: PluginRecord) -> str:
    return ", ".join(f"{len(ids)} {kind}" for kind, ids in sorted(record.components.items())) or "-"


def render_table(records: list[PluginRecord]) -> str:
    header = ("NAME", "VERSION", "STATUS", "COMPONENTS")
    rows = [(r.name, r.version, r.status, _summarise_components(r)) for r in records]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    for record in records:
        if record.error:
            lines.append(f"\n{record.name}: {record.error}\n  disable it with MOSAIC_DISABLE_PLUGINS={record.name}")
    return "\n".join(lines)


@click.group()
def plugins() -> None:
    """Inspect installed MOSAIC plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="An array of {name, version, hooks, components, status, error}.")
@click.option("--all", "show_all", is_flag=True, help="Include the toolkit's built-in plugins.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "requirements"]),
    default=None,
    help="table (default), json, or requirements (name==version lines for reinstalling).",
)
def list_plugins(as_json: bool, show_all: bool, output_format: str | None) -> None:
    """List installed plugins (third-party only unless --all)."""
    fmt = output_format or ("json" if as_json else "table")
    records = [r for r in get_host().records if show_all or not r.builtin]
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in records], indent=2))
    elif fmt == "requirements":
        for name, version in sorted({(r.distribution, r.version) for r in records}):
            click.echo(f"{name}=={version}")
    elif records:
        click.echo(render_table(records))
    else:
        click.echo("no third-party plugins installed (mosaic plugins list --all shows the built-ins)")
