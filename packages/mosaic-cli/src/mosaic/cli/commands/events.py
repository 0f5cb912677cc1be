"""``mosaic events RUN_DIR``: the reactive event runtime, JSONL events in and out (a shell filter)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mosaic.cli.commands.run import registry_from_context, user_errors
from mosaic.cli.params import SEED, FiniteFloatRange
from mosaic.core.events.lines import DEFAULT_MAX_LINE_BYTES, read_event_lines
from mosaic.runtime.agent.config import DEFAULT_ADAPTER_TARGETS

#: training items rehearsed by online learning when no --online-rehearse file is given (bench_idle's 8)
REHEARSAL_ITEMS = 8


def agent_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``mosaic events`` and ``mosaic live`` (session, generation, online learning)."""
    options = [
        click.option("--session", "session_name", default="default", show_default=True,
                     help="Session name; its state lives in RUN_DIR/sessions/NAME and is resumed."),
        click.option("--fresh", is_flag=True, help="Start the session from an empty state (overwrites it on save)."),
        click.option("--max-new-bytes", type=click.IntRange(min=1), default=512, show_default=True,
                     help="Longest generated event; longer becomes an Error event."),
        click.option("--preview-bytes", type=click.IntRange(min=0), default=120, show_default=True,
                     help="Bytes of an invalid generation quoted in its Error event's preview."),
        click.option("--temperature", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
                     help="0: greedy decoding; above 0: sampled with --seed."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed."),
        click.option("--commitments", type=click.Choice(["head", "vm", "event"]), default="head", show_default=True,
                     help="Ledger deltas from the model's commitment head, from the head where the model "
                          "executed COMMIT (vm), or as written in the events."),
        click.option("--turn-taking", type=click.Choice(["always", "opcodes"]), default="always", show_default=True,
                     help="Answer every event, or follow the VM: silent under IDLE, emitting from RESPOND."),
        click.option("--online-every", type=click.IntRange(min=1),
                     help="Enable adapters (medium timescale): one update every N tokens."),
        click.option("--adapter-target", "adapter_targets", multiple=True, default=DEFAULT_ADAPTER_TARGETS,
                     show_default=True,
                     help="fnmatch pattern of Linear layers that get adapters (repeatable)."),
        click.option("--online-guard", "online_guard", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                     help="JSONL of held-out events of the training distribution: an adapter update that raises "
                          "their loss by more than 5% is rolled back (needs --online-every)."),
        click.option("--online-rehearse", "online_rehearse",
                     type=click.Path(path_type=Path, exists=True, dir_okay=False),
                     help="JSONL of events of the training distribution, rehearsed in every adapter update: "
                          "each update is pulled back towards the base model's predictions on them, so learning "
                          "a new pattern does not erase the old ones (needs --online-every; use other events "
                          "than --online-guard's). Default: the first 8 items of the run's training dataset."),
        click.option("--device", help="cpu, cuda, ... (default: cpu)."),
        click.option("--experiment", help="The experiment of a multi-experiment run (default: the one that ran)."),
        click.option("--tools", "tools_dir", type=click.Path(path_type=Path, file_okay=False),
                     help="Tool registry directory: the model's ToolDefinition/ToolCall events are executed there."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_agent_from_options(run_dir: Path, options: dict[str, Any], output: Any) -> Any:
    from mosaic.runtime.agent.config import GenerationConfig, OnlineConfig
    from mosaic.runtime.agent.service import open_agent

    generation = GenerationConfig(max_new_bytes=options["max_new_bytes"], preview_bytes=options["preview_bytes"],
                                  temperature=options["temperature"],
                                  seed=options["seed"], commitment_source=options["commitments"],
                                  turn_taking=options["turn_taking"])
    online = None
    if options["online_every"] is not None:
        online = OnlineConfig(targets=options["adapter_targets"], update_every=options["online_every"])
    elif options["online_guard"] is not None:
        raise click.UsageError("--online-guard guards the online learner: add --online-every N")
    elif options["online_rehearse"] is not None:
        raise click.UsageError("--online-rehearse is rehearsed by the online learner: add --online-every N")
    agent = open_agent(run_dir, registry=registry_from_context(), device=options["device"],
                       experiment=options["experiment"],
                       session_name=options["session_name"], fresh=options["fresh"], generation=generation,
                       online=online, output=output)
    if options["online_guard"] is not None and agent.online is not None:  # --online-every set (checked above)
        agent.online.guard_with(guard_sequences(options["online_guard"]))
    if agent.online is not None:
        if options["online_rehearse"] is not None:
            agent.online.rehearse_with(guard_sequences(options["online_rehearse"]))
        else:  # the run's own training data: what the model must not forget
            from mosaic.runtime.agent.rehearsal import training_sequences

            dataset, sequences = training_sequences(agent.loaded.run, registry_from_context(),
                                                    experiment=options["experiment"], count=REHEARSAL_ITEMS,
                                                    max_bytes=agent.online.config.max_guard_bytes)
            kept = agent.online.rehearse_with(sequences)
            click.echo(f"mosaic: online updates rehearse {kept} sequences of the run's training dataset "
                       f"({dataset}); --online-rehearse FILE gives others", err=True)
    return agent


def guard_sequences(path: Path) -> list[Any]:
    """Each event of a JSONL file as the token sequence the model is fed (its bytes and delimiter)."""
    import torch

    from mosaic.core.errors import ConfigError, ConfigProblem, EventError
    from mosaic.core.events.codec import EVENT_DELIMITER, decode_event_bytes
    from mosaic.core.events.lines import OversizedLine

    sequences = []
    with path.open("rb") as stream:
        for number, line in enumerate(read_event_lines(stream), start=1):
            if isinstance(line, OversizedLine):
                raise ConfigError([ConfigProblem(f"line {number}", line.message)], source=str(path))
            if not line.strip():
                continue
            try:
                event = decode_event_bytes(bytes(line).strip())
            except EventError as exc:
                raise ConfigError([ConfigProblem(f"line {number}", f"not an event: {exc}")], source=str(path)) from None
            sequences.append(torch.tensor(list(event.to_bytes()) + [EVENT_DELIMITER], dtype=torch.int64))
    return sequences


def tool_bridge_from_options(options: dict[str, Any]) -> Any:
    if options["tools_dir"] is None:
        return None
    from mosaic.runtime.agent.tool_flow import ToolBridge
    from mosaic.runtime.tools.registry import open_registry

    return ToolBridge(open_registry(options["tools_dir"]))


@click.command("events")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--input", "input_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Read events from this JSONL file instead of stdin.")
@click.option("--respond-to", multiple=True, help="Event types the model answers (repeatable; default: every type).")
@click.option("--trace-ledger", is_flag=True, help="After each event, emit a Ledger event with the running balance.")
@click.option("--no-summary", is_flag=True, help="Do not end with a LedgerSummary event.")
@click.option("--no-save", is_flag=True, help="Do not save the session state at the end.")
@click.option("--max-line-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_LINE_BYTES, show_default=True,
              help="Longest input line; a longer one is skipped unread and becomes an Error event.")
@agent_options
def events(run_dir: Path, input_path: Path | None, respond_to: tuple[str, ...], trace_ledger: bool,
           no_summary: bool, no_save: bool, max_line_bytes: int, **options: Any) -> None:
    """Feed JSONL events to RUN_DIR's model and write its response events as JSONL to stdout.

    Malformed lines and invalid generations become Error events; the stream goes on. Exit status 0
    when every input line was an event, 1 when some were not (after the whole stream, with the
    session saved).
    """
    from mosaic.runtime.agent.reactive import ReactiveRuntime

    with user_errors():
        tools = tool_bridge_from_options(options)
        agent = open_agent_from_options(run_dir, options, sys.stdout)
        try:
            runtime = ReactiveRuntime(agent.session, agent.emit, trace_ledger=trace_ledger, tools=tools,
                                      respond_to=frozenset(respond_to) if respond_to else None)
            stop_when = lambda: agent.output_closed  # noqa: E731 — downstream of the pipe went away
            if input_path is not None:
                with input_path.open("rb") as stream:
                    runtime.run(read_event_lines(stream, max_line_bytes=max_line_bytes), stop_when=stop_when)
            else:
                runtime.run(read_event_lines(sys.stdin.buffer, max_line_bytes=max_line_bytes), stop_when=stop_when)
            if not no_summary:
                agent.emit(runtime.summary_event())
            if not no_save:
                agent.save()
        finally:
            agent.close()
        if agent.output_closed:
            silence_closed_stdout()
        if runtime.input_errors:
            raise click.exceptions.Exit(1)


def silence_closed_stdout() -> None:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so that the
    interpreter's final flush does not report a broken pipe. The session was saved."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
