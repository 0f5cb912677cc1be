"""Adding plugin-provided subcommands to the ``mosaic`` group.

A plugin whose ``register_commands`` hook raises, or that failed to load altogether, still gets a
placeholder command named after it that explains the failure instead of breaking ``mosaic``.
"""

from __future__ import annotations

import click

from mosaic.core.plugins import PluginRecord, get_host


def _broken_command(name: str, record: PluginRecord, message: str) -> click.Command:
    text = f"plugin {record.name!r} ({record.distribution} {record.version}) {message}"

    def explain() -> None:
        raise click.ClickException(f"{text}\nDisable it with MOSAIC_DISABLE_PLUGINS={record.name}")

    return click.Command(
        name,
        callback=explain,
        help=f"[broken] {text}",
        short_help=f"[broken plugin {record.name}] see mosaic {name} --help",
    )


def add_plugin_commands(group: click.Group) -> None:
    host = get_host()
    before = set(group.commands)

    def on_failure(record: PluginRecord, message: str) -> None:
        added = set(group.commands) - before
        name = record.name if record.name not in group.commands else f"{record.name}-broken"
        if not added:
            group.add_command(_broken_command(name, record, message))

    host.call_commands(group, on_failure)
