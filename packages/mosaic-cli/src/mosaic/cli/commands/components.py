"""``mosaic components``: the registry by semantic ID."""

from __future__ import annotations

import click

from mosaic.core.config import config_fields
from mosaic.core.plugins import COMPONENT_KINDS, get_registry


@click.group()
def components() -> None:
    """List and describe registered components."""


@components.command("list")
@click.option("--kind", type=click.Choice(COMPONENT_KINDS), help="Only components of this kind.")
def list_components(kind: str | None) -> None:
    """List component IDs with their provider and summary."""
    registry = get_registry()
    rows = [(c.id, c.provider, c.summary) for c in registry if kind is None or c.kind == kind]
    if not rows:
        click.echo(f"no {kind or ''} components registered".replace("  ", " "))
        return
    width_id = max(len(r[0]) for r in rows)
    width_provider = max(len(r[1]) for r in rows)
    for component_id, provider, summary in rows:
        click.echo(f"{component_id.ljust(width_id)}  {provider.ljust(width_provider)}  {summary}")


@components.command("show")
@click.argument("component_id")
def show_component(component_id: str) -> None:
    """Show one component: summary, provider and config fields (types, defaults)."""
    component = get_registry().get(component_id)
    click.echo(f"{component.id}\n  {component.summary}")
    click.echo(f"  provided by: {component.provider} {component.provider_version} (plugin {component.plugin})")
    factory = component.factory if isinstance(component.factory, str) else _qualname(component.factory)
    click.echo(f"  factory: {factory}")
    config_cls = component.load_config_class()
    if config_cls is None:
        click.echo("  config: none")
        return
    click.echo(f"  config: {config_cls.__module__}:{config_cls.__qualname__}")
    for name, type_name, default in config_fields(config_cls):
        click.echo(f"    {name}: {type_name} = {default!r}")


def _qualname(obj: object) -> str:
    inner = getattr(obj, "func", obj)  # functools.partial
    return f"{getattr(inner, '__module__', '?')}:{getattr(inner, '__qualname__', repr(inner))}"
