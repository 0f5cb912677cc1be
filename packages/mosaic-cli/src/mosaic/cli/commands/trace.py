"""``mosaic trace RUN_DIR``: per byte, the opcode a trained model chose, its memory reads and writes
(bucket, slot, gate) and its commitment head's class, for JSONL events on stdin or in a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mosaic.cli.commands.run import registry_from_context, user_errors

#: Longest input read (bytes): a trace is one forward pass over every byte.
MAX_INPUT_BYTES = 1 << 20


@click.command("trace")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--input", "input_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Read events (JSONL) from this file instead of stdin.")
@click.option("--layer", type=int, default=-1, show_default=True, help="Which block to show (-1: the last).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per byte instead of a table.")
@click.option("--device", help="cpu, cuda, ... (default: cpu).")
def trace(run_dir: Path, input_path: Path | None, layer: int, as_json: bool, device: str | None) -> None:
    """Show what RUN_DIR's VM does on each byte of the given events."""
    from mosaic.core.errors import ConfigError, ConfigProblem, EventError
    from mosaic.core.events.codec import decode_event_bytes
    from mosaic.runtime.agent.loading import check_byte_model, check_streaming_model
    from mosaic.runtime.agent.trace import format_table, trace_events
    from mosaic.runtime.loading import load_run

    with user_errors():
        if input_path is None:
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:  # read no more than the bound (a pipe may stand in for the file)
            with input_path.open("rb") as file:
                data = file.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            source = str(input_path) if input_path is not None else "stdin"
            raise ConfigError([ConfigProblem("input", f"{source}: more than {MAX_INPUT_BYTES} bytes of events")])
        events = []
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                try:
                    events.append(decode_event_bytes(line.strip()))
                except EventError as exc:
                    raise EventError(f"events line {number}: {exc}") from None
        if not events:
            raise ConfigError([ConfigProblem("input", "no events to trace (one JSON event per line)")])
        loaded = load_run(run_dir, session=None, registry=registry_from_context(), device=device)
        check_streaming_model(loaded.model, loaded.model_id)
        check_byte_model(loaded.model, loaded.model_id, purpose="trace needs")
        blocks = len(loaded.model.blocks)
        if not -blocks <= layer < blocks:
            raise ConfigError([ConfigProblem("--layer", f"the model has {blocks} blocks, got {layer}")])
        rows = trace_events(loaded, events, layer=layer)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
    else:
        click.echo(format_table(rows))
