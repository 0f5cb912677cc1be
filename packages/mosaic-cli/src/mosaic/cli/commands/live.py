"""``mosaic live RUN_DIR``: the autonomous runtime (homeostatic impulses, idle consolidation)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from mosaic.cli.commands.events import (
    agent_options,
    open_agent_from_options,
    silence_closed_stdout,
    tool_bridge_from_options,
)
from mosaic.cli.commands.run import registry_from_context, user_errors
from mosaic.cli.params import FiniteFloatRange

DEFAULT_DRIVES = ("drive.memory_pressure", "drive.routing_entropy", "drive.commitment_balance",
                  "drive.output_confidence")


def load_drive_spec(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {drive: {} for drive in DEFAULT_DRIVES}
    from mosaic.core.errors import ConfigError, ConfigProblem
    from mosaic.runtime.training.yaml_source import MAX_PRESET_BYTES, decode_preset, load_yaml

    with path.open("rb") as file:  # read as a preset is: bounded, strict UTF-8, errors with their line
        data = load_yaml(decode_preset(file.read(MAX_PRESET_BYTES + 1), source=str(path)), source=str(path)).data
    if not isinstance(data, dict) or not data:
        raise ConfigError([ConfigProblem("$", "expected a mapping of drive IDs to their config")], source=str(path))
    return data


@click.command("live")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False), help="Also accept JSONL events on this Unix socket.")
@click.option("--no-stdin", is_flag=True, help="Do not read events from stdin.")
@click.option("--max-ticks", type=click.IntRange(min=1), help="Stop after this many ticks (bounded runs).")
@click.option("--poll-ms", type=click.IntRange(min=0), default=100, show_default=True,
              help="How long a tick waits for an external event.")
@click.option("--consolidate-every", type=click.IntRange(min=1), default=50, show_default=True,
              help="Consolidate the live memory every N idle ticks.")
@click.option("--prune-below", type=FiniteFloatRange(0, 1), default=0.2, show_default=True,
              help="Consolidation clears memory cells whose utility (what the model's write_utility head said "
                   "when it wrote them) is at most this.")
@click.option("--refresh-above", type=FiniteFloatRange(0, 1), default=0.5, show_default=True,
              help="Consolidation re-writes memory cells whose utility is at least this as the newest writes, "
                   "so the ring overwrites them last.")
@click.option("--replay-samples", type=click.IntRange(min=0), default=2, show_default=True,
              help="Memory cells replayed (read back through the head) per consolidation.")
@click.option("--idle-online-step", is_flag=True,
              help="With --online-every: each consolidation also takes one adapter step on the replayed tokens, "
                   "labelled IDLE.")
@click.option("--save-every", type=click.IntRange(min=1), help="Also save the session every N ticks.")
@click.option("--drives", "drives_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="YAML mapping of drive IDs to configs (default: the four built-in drives).")
@agent_options
def live(run_dir: Path, socket_path: str | None, no_stdin: bool, max_ticks: int | None, poll_ms: int,
         consolidate_every: int, prune_below: float, refresh_above: float, replay_samples: int,
         idle_online_step: bool, save_every: int | None, drives_path: Path | None, **options: Any) -> None:
    """Run RUN_DIR's model as an autonomous agent: external events first, otherwise homeostatic
    impulses, otherwise idle consolidation. Emitted events go to stdout as JSONL and to the session's
    events.jsonl; SIGINT/SIGTERM save the session and exit."""
    from mosaic.core.drives import build_drives
    from mosaic.core.homeostasis import HomeostaticLoop
    from mosaic.runtime.agent.autonomous import live as run_live
    from mosaic.runtime.agent.config import ConsolidationConfig, LiveConfig

    if idle_online_step and not options.get("online_every"):
        raise click.UsageError("--idle-online-step needs an online learner: add --online-every N")
    with user_errors():
        homeostasis = HomeostaticLoop(build_drives(load_drive_spec(drives_path), registry_from_context()))
        config = LiveConfig(poll_ms=poll_ms, max_ticks=max_ticks, consolidate_every_ticks=consolidate_every,
                            save_every_ticks=save_every)
        consolidation = ConsolidationConfig(prune_below=prune_below, refresh_above=refresh_above,
                                            replay_samples=replay_samples, online_step=idle_online_step)
        tools = tool_bridge_from_options(options)
        agent = open_agent_from_options(run_dir, options, sys.stdout)
        try:
            asyncio.run(run_live(agent, homeostasis, config=config, consolidation=consolidation, tools=tools,
                                 stdin=None if no_stdin else sys.stdin.buffer, socket_path=socket_path))
        finally:
            agent.close()
        if agent.output_closed:
            silence_closed_stdout()
