"""``mosaic runs list|show``: find, inspect and compare run directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mosaic.cli.commands.run import fmt, user_errors


@click.group("runs")
def runs() -> None:
    """List run directories and compare them (final metrics, evaluation, config)."""


@runs.command("list")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of run directories.")
@click.option("--preset", help="Only this preset's runs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run instead of a table.")
def list_command(out: Path, preset: str | None, as_json: bool) -> None:
    """Every run under OUT: status, steps, final loss, held-out accuracy; * marks each preset's latest."""
    from mosaic.runtime.training.runs_index import list_runs

    with user_errors():
        found = list_runs(out, preset)
    if as_json:
        for info in found:
            click.echo(json.dumps(info.as_json(), sort_keys=True))
        return
    if not found:
        click.echo(f"no runs under {out}")
        return
    click.echo(f"  {'run':<44} {'experiment':<18} {'status':<11} {'steps':>6} {'loss':>8} {'eval acc':>8}")
    for info in found:
        name = f"{info.preset}/{info.path.name}"
        click.echo(f"{'*' if info.latest else ' '} {name:<44} {info.experiment or '-':<18} {info.status:<11} "
                   f"{fmt(info.steps):>6} {fmt(info.final_loss):>8} {fmt(info.eval_token_accuracy):>8}")
        if info.problem:
            click.echo(f"    {info.problem}")


def _metric_rows(runs_described: list[dict[str, Any]], section: str) -> list[str]:
    from mosaic.runtime.training.loggers import flatten

    flat = [flatten(described[section]) for described in runs_described]
    keys = sorted({k for values in flat for k, v in values.items() if isinstance(v, (int, float))})
    return [f"  {key:<40} " + "  ".join(f"{fmt(values.get(key)):>12}" for values in flat) for key in keys]


@runs.command("show")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(path_type=Path, exists=True, file_okay=False))
def show(run_dirs: tuple[Path, ...]) -> None:
    """One run's final metrics, evaluation and provenance; with two runs, side by side plus the
    differences between their resolved configs."""
    from mosaic.runtime.training.runs_index import config_diff, describe

    if len(run_dirs) > 2:
        raise click.UsageError("give one run directory, or two to compare")
    with user_errors():
        described = [describe(path) for path in run_dirs]
        diff = config_diff(*run_dirs) if len(run_dirs) == 2 else []
    for index, run in enumerate(described):
        click.echo(f"[{index + 1}] {run['run_dir']}: {run['experiment']}, {run['status']}, {run['steps']} steps")
        origin = run["provenance"]
        if origin:
            git = origin.get("git") or {}
            click.echo(f"    git {git.get('commit', 'none')}{' (dirty)' if git.get('dirty') else ''}, python "
                       f"{origin.get('python')}, torch {origin.get('torch')}, seed {origin.get('seed')}, "
                       f"host {origin.get('host')}")
            click.echo(f"    command: {' '.join(origin.get('command') or [])}")
    click.echo("final metrics:")
    for line in _metric_rows(described, "final"):
        click.echo(line)
    if any(run["eval"] for run in described):
        click.echo("evaluation:")
        for line in _metric_rows(described, "eval"):
            click.echo(line)
    if len(run_dirs) == 2:
        click.echo("config differences:" if diff else "config differences: none")
        for key, left, right in diff:
            click.echo(f"  {key}: {left!r} -> {right!r}")
