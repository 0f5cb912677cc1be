"""``mosaic plugins``: what is installed, what it provides, and what failed."""

from __future__ import annotations

import json

import click

from mosaic.core.plugins import PluginHost, PluginRecord, get_host
from mosaic.core.plugins.host import FAILED


def _summarise_components(record: PluginRecord) -> str:
    return ", ".join(f"{len(ids)} {kind}" for kind, ids in sorted(record.components.items())) or "-"


def render_table(records: list[PluginRecord]) -> str:
    header = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "COMPONENTS")
    rows = [(r.name, r.distribution, r.version, r.status, _summarise_components(r)) for r in records]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    for record in records:
        if record.error:
            lines.append(
                f"\n{record.name} ({record.distribution}): {record.error}\n"
                f"  disable it with MOSAIC_DISABLE_PLUGINS={record.name}, or uninstall {record.distribution}"
            )
    return "\n".join(lines)


def check_component_paths(host: PluginHost, records: list[PluginRecord]) -> None:
    """Import the factory and config of every component of ``records``; record failures."""
    for record in records:
        problems = []
        for ids in record.components.values():
            for component_id in ids:
                component = host.registry.get(component_id)
                for what, load in (("factory", component.load_factory), ("config", component.load_config_class)):
                    try:
                        load()
                    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's fault
                        problems.append(f"{component_id}: {what} cannot be imported: {type(exc).__name__}: {exc}")
        if problems:
            record.status = FAILED
            record.error = "; ".join(problems)


@click.group()
def plugins() -> None:
    """Inspect installed MOSAIC plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="An array of {name, distribution, entry_point, version, hooks, components, status, error}.")
@click.option("--all", "show_all", is_flag=True, help="Include the toolkit's built-in plugins.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "requirements"]),
    default=None,
    help="table (default), json, or requirements (name==version lines for reinstalling).",
)
@click.option("--check", is_flag=True,
              help="Import every listed plugin's factories and config classes; a path that fails marks its plugin failed.")
def list_plugins(as_json: bool, show_all: bool, output_format: str | None, check: bool) -> None:
    """List installed plugins (third-party only unless --all)."""
    fmt = output_format or ("json" if as_json else "table")
    host = get_host()
    records = [r for r in host.records if show_all or not r.builtin]
    if check:
        check_component_paths(host, records)
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in records], indent=2))
    elif fmt == "requirements":
        for name, version in sorted({(r.distribution, r.version) for r in records}):
            click.echo(f"{name}=={version}")
    elif records:
        click.echo(render_table(records))
    else:
        click.echo("no third-party plugins installed (mosaic plugins list --all shows the built-ins)")
    if check and any(r.status == FAILED for r in records):
        raise click.exceptions.Exit(1)
