"""``mosaic run PRESET|FILE``: train a preset into a run directory."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from mosaic.cli.params import checked_overrides
from mosaic.core.errors import MosaicError


def registry_from_context() -> Any:
    """The registry to use: one injected through ``ctx.obj['registry']`` (tests, embedding), else the
    process-wide one."""
    context = click.get_current_context(silent=True)
    while context is not None:
        if isinstance(context.obj, dict) and "registry" in context.obj:
            return context.obj["registry"]
        context = context.parent
    from mosaic.core.plugins import get_registry

    return get_registry()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report toolkit errors as one readable message and exit 1, never a traceback."""
    try:
        yield
    except MosaicError as exc:
        raise click.ClickException(str(exc)) from None


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)



@click.command("run")
@click.argument("preset", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", callback=checked_overrides,
              help="Override a preset value (trainer.steps=50, vars.d_model=64, targets[0].model.d_model=32).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of run directories (runs/<preset>/<timestamp>/).")
@click.option("--resume", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Continue the run in this directory from its newest loadable checkpoint.")
@click.option("--device", help="cpu, cuda, cuda:1 (default: the preset's trainer.device).")
@click.option("--steps", type=click.IntRange(min=1), help="Train for this many steps in total.")
@click.option("--experiment", help="Which target of a multi-target preset to run (default: the first; with "
              "--resume, the one the run recorded).")
@click.option("--no-progress", is_flag=True, help="No progress bar; one plain line per logged step instead.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary.")
def run(preset: str | None, overrides: tuple[str, ...], out: Path, resume: Path | None, device: str | None,
        steps: int | None, experiment: str | None, no_progress: bool, quiet: bool) -> None:
    """Train PRESET (a built-in name or a YAML file), or resume a run with --resume.

    Ctrl-C or SIGTERM stops after the current step with a checkpoint and a summary marked
    `interrupted` (exit 130 or 143); a second Ctrl-C stops at once. A diverged run exits 1.
    """
    if preset is None and resume is None:
        raise click.UsageError("give a PRESET (see `mosaic presets list`) or --resume RUN_DIR")
    if preset is not None and resume is not None:  # the run's own config.yaml decides what it resumes
        raise click.UsageError(f"give a PRESET or --resume RUN_DIR, not both: {resume} resumes with its own "
                               "config.yaml")
    from mosaic.cli.plugin_commands import failed_plugins_line

    warning = failed_plugins_line()
    if warning:
        click.echo(warning, err=True)
    from mosaic.runtime.training.run import run_preset

    if quiet:
        from mosaic.cli.logging import quiet_logging

        quiet_logging()
    mode = "quiet" if quiet else "lines" if no_progress else "auto"
    with user_errors():
        summary = run_preset(preset, registry=registry_from_context(), overrides=overrides, out=out,
                             resume=resume, device=device, steps=steps, experiment=experiment,
                             progress_mode=mode)
    if summary.get("run_dir") is not None:  # under torchrun only rank 0 has a run directory to report
        click.echo(format_summary(summary))
    if summary["status"] == "interrupted":
        sys.exit(128 + int(getattr(signal, summary.get("signal") or "SIGINT", signal.SIGINT)))


def organism_lines(evaluation: dict[str, Any]) -> list[str]:
    """Whole-answer metrics (``answer_exact``, ``forget_exact``, ``priority_exact``, ``scan_exact``) and
    their ablations, one line each."""
    metrics = [name for name in ("answer_exact", "forget_exact", "priority_exact", "scan_exact") if name in evaluation]
    lines = [f"    {name} {fmt(evaluation[name])}" for name in metrics]
    ablations = evaluation.get("ablations") or {}
    for metric, value in (ablations.get("memory_off") or {}).items():
        lines.append(f"    ablations.memory_off.{metric} {fmt(value)}")
    for name, values in (ablations.get("opcode_off") or {}).items():
        for metric, value in values.items():
            lines.append(f"    ablations.opcode_off.{name}.{metric} {fmt(value)}")
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    lines = [(f"run {summary['status']}: {summary['experiment']} ({summary['model']} on {summary['dataset']}), "
              f"{summary['steps']} steps in {summary['wall_seconds']:.1f}s, {summary['tokens_per_s']:.0f} tok/s")]
    first, final = summary.get("first") or {}, summary.get("final") or {}
    for name in sorted(k for k in final if k == "loss_total" or k == "lm_ce" or
                       (k.startswith("aux_") and not k.endswith("_weighted"))):
        ratio = summary.get("final_over_first", {}).get(name)
        lines.append(f"  {name:<22} first {fmt(first.get(name))}  final {fmt(final.get(name))}"
                     + (f"  ({ratio:.0%} of first)" if ratio is not None else ""))
    evaluation = summary.get("eval") or {}
    if evaluation:
        lines.append(f"  held-out ({evaluation.get('samples')} samples): token accuracy "
                     f"{fmt(evaluation.get('token_accuracy'))}")
        if "answer_accuracy" in evaluation:
            lines.append(f"    answer accuracy {fmt(evaluation['answer_accuracy'])}")
        lines.extend(organism_lines(evaluation))
        if "opcode_accuracy" in evaluation:
            per = ", ".join(f"{k} {fmt(v)}" for k, v in evaluation["opcode_accuracy_per_class"].items())
            lines.append(f"    opcode accuracy {fmt(evaluation['opcode_accuracy'])} ({per})")
        commitment = evaluation.get("commitment")
        if commitment:
            per = ", ".join(f"{k} {fmt(v)}" for k, v in commitment["per_class_accuracy"].items())
            spans = ", ".join(f"{k} {fmt(v)}" for k, v in commitment["span_accuracy"].items())
            lines.append(f"    commitment accuracy per class: {per}; per span: {spans}")
        lines.extend(_decision_lines(evaluation))
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    lines.append(f"  run directory: {summary['run_dir']}")
    return "\n".join(lines)


def _decision_lines(evaluation: dict[str, Any]) -> list[str]:
    """Held-out-template commitments, the ledger, turn taking and the opcode-off ablations."""
    lines = []
    commitment = evaluation.get("commitment") or {}
    heldout = commitment.get("heldout_templates")
    if heldout:
        per = ", ".join(f"{k} {fmt(v)}" for k, v in heldout["per_class_accuracy"].items())
        lines.append(f"    held-out templates, per message: {per}; ledger exact {fmt(commitment.get('ledger_exact'))}")
    turns = evaluation.get("turns")
    if turns:
        lines.append(f"    turns: silent under IDLE {fmt(turns['silence'])}, onset at RESPOND {fmt(turns['onset'])}")
    off = (evaluation.get("ablations") or {}).get("opcode_off") or {}
    if off:
        per = ", ".join(f"{opcode} {metric} {fmt(value)}" for opcode, metrics in sorted(off.items())
                        for metric, value in sorted(metrics.items()))
        lines.append(f"    opcode forced to NOP: {per}")
    return lines
