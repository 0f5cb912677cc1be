"""Adding plugin-provided subcommands to the ``mosaic`` group.

A plugin whose ``register_commands`` hook raises is marked failed (``mosaic plugins list`` shows
it), whatever it added before raising is removed, and a placeholder command named after it explains
the failure instead of breaking ``mosaic``.
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
        # Roll back a half-registered plugin: its commands may depend on what failed.
        for name in set(group.commands) - before:
            del group.commands[name]
        name = record.name if record.name not in group.commands else f"{record.name}-broken"
        group.add_command(_broken_command(name, record, message))
        before.add(name)

    host.call_commands(group, on_failure)


def failed_plugins_line() -> str | None:
    """One line naming the plugins that failed to load, or None when all loaded."""
    failures = get_host().failures
    if not failures:
        return None
    names = ", ".join(f"{r.name} ({r.distribution})" for r in failures)
    return f"warning: {len(failures)} plugin(s) failed to load and were skipped: {names} (see `mosaic plugins list`)"
