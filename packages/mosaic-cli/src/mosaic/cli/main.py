"""The ``mosaic`` command: built-in subcommands (imported lazily) plus those plugins add."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

#: Built-in subcommands: name -> "module:attribute" of a click command, imported on first use so
#: that ``mosaic --help`` and ``mosaic plugins list`` stay fast and never import torch.
BUILTIN_COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("mosaic.cli.commands.plugins:plugins", "List installed plugins and their status."),
    "components": ("mosaic.cli.commands.components:components", "List and describe registered components."),
    "run": ("mosaic.cli.commands.run:run", "Train a preset (or resume a run) into a run directory."),
    "presets": ("mosaic.cli.commands.presets:presets", "List, show, validate and size training presets."),
    "eval": ("mosaic.cli.commands.eval:eval_command", "Evaluate a run's newest checkpoint on held-out data."),
    "plot": ("mosaic.cli.commands.plot:plot", "Plot a run's loss and auxiliary metric curves to PNG."),
    "export": ("mosaic.cli.commands.export:export", "Export a run's model weights (safetensors)."),
    "generate": ("mosaic.cli.commands.generate:generate", "Continue a text prompt or JSONL events with a run's model."),
    "events": ("mosaic.cli.commands.events:events", "Reactive runtime: JSONL events in, the model's events out."),
    "trace": ("mosaic.cli.commands.trace:trace", "Per byte: the VM's opcode, memory reads/writes, commitment class."),
    "live": ("mosaic.cli.commands.live:live", "Autonomous runtime: impulses, idle consolidation, online adapters."),
    "audit": ("mosaic.cli.commands.audit:audit", "Verify tamper-evident audit logs."),
    "tools": ("mosaic.cli.commands.tools:tools", "List, show, approve, revoke, run sandboxed tools."),
    "chrono": ("mosaic.cli.commands.chrono:chrono", "ChronoMoE run report: clocks, beta, psi and lifecycle decisions."),
    "sweep": ("mosaic.cli.commands.sweep:sweep", "Grid or random search over preset overrides and seeds (Optuna)."),
    "runs": ("mosaic.cli.commands.runs:runs", "List run directories and compare them (metrics, eval, config diff)."),
}

#: Built-in commands that never log: they skip the structlog set-up (and its import, a third of
#: ``mosaic plugins list``'s start-up).
QUIET_COMMANDS = frozenset({"plugins"})


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed version, read from metadata only when asked for."""
    if not value or ctx.resilient_parsing:
        return
    from mosaic.core import __version__

    click.echo(f"mosaic {__version__}")
    ctx.exit()


class MosaicGroup(click.Group):
    """A group whose built-in commands load lazily and whose plugin commands load once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from mosaic.cli.plugin_commands import add_plugin_commands

        add_plugin_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS:
            target, _ = BUILTIN_COMMANDS[name]
            module_name, _, attribute = target.partition(":")
            return getattr(importlib.import_module(module_name), attribute)
        self._load_plugin_commands()
        return self.commands.get(name)

    def invoke(self, ctx: click.Context) -> None:
        # A command's return value is not an exit status: dropping it leaves ``main`` only the codes
        # of ``ctx.exit(code)`` / ``Exit(code)`` to return.
        super().invoke(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Built-in help comes from the table above, so --help imports no command module.
        rows = []
        for name in self.list_commands(ctx):
            if name in BUILTIN_COMMANDS:
                rows.append((name, BUILTIN_COMMANDS[name][1]))
            else:
                command = self.commands[name]
                rows.append((name, command.get_short_help_str(limit=formatter.width - 30)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=MosaicGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and exit.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    envvar="MOSAIC_LOG_FORMAT",
    help="Log rendering on stderr: console on a terminal and JSON otherwise, unless forced.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(log_format: str, verbose: int) -> None:
    """MOSAIC: event-driven, attention-free neural models.

    Shell completion: eval "$(_MOSAIC_COMPLETE=bash_source mosaic)" (zsh_source, fish_source).
    """
    if click.get_current_context().invoked_subcommand in QUIET_COMMANDS:
        return
    from mosaic.cli.logging import configure_logging

    configure_logging(log_format, verbose)


def main(args: Sequence[str] | None = None) -> int:
    """The console entry point: run ``mosaic`` and return its exit status (the installed script
    passes it to ``sys.exit``). 0 on success; a command's ``ctx.exit(code)``; 2 for usage errors;
    1 for toolkit errors (one line, never a traceback); 130 when interrupted."""
    from mosaic.core.errors import MosaicError

    try:
        # Not standalone: click would turn a MosaicError into a traceback; here it is one message.
        result = cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except MosaicError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    # Without standalone mode click returns the code of ``ctx.exit(code)`` / ``Exit(code)``, the way
    # commands report a failure they printed themselves (the group's invoke returns nothing else).
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
