"""``mosaic presets list|show|validate``."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from mosaic.cli.commands.run import registry_from_context, user_errors
from mosaic.cli.params import checked_overrides
from mosaic.core.errors import MosaicError

GIB = 1024 ** 3


@click.group("presets")
def presets() -> None:
    """List, show and validate training presets."""


@presets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_presets(as_json: bool) -> None:
    """The registered presets."""
    registry = registry_from_context()
    rows = [(c.name, c.provider, c.summary) for c in registry if c.kind == "preset"]
    if as_json:
        click.echo(json.dumps([{"name": n, "provider": p, "summary": s} for n, p, s in rows], indent=2))
        return
    width = max((len(n) for n, _, _ in rows), default=4)
    for name, provider, summary in rows:
        click.echo(f"{name:<{width}}  {summary}  [{provider}]")


@presets.command("show")
@click.argument("preset")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", callback=checked_overrides,
              help="Override a preset value.")
@click.option("--estimate", is_flag=True, help="Estimate parameters and memory by component.")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size for the estimate.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="Precision for the estimate.")
def show(preset: str, overrides: tuple[str, ...], estimate: bool, batch: int | None, precision: str | None) -> None:
    """Print PRESET fully resolved (defaults filled in); with --estimate, its memory needs."""
    from mosaic.runtime.training.manifest import load_manifest, resolved_yaml

    registry = registry_from_context()
    with user_errors():
        manifest = load_manifest(preset, registry, overrides=overrides)
        click.echo(yaml.safe_dump(json.loads(json.dumps(resolved_yaml(manifest), default=str)), sort_keys=False))
        if estimate:
            for experiment in manifest.experiments:
                click.echo(format_estimate(experiment, registry, batch, precision))


def format_estimate(experiment: Any, registry: Any, batch: int | None, precision: str | None) -> str:
    from mosaic.runtime.training.sizing import estimate_memory

    budget = experiment.budget
    batch = batch or (budget.batch_size if budget else None)
    precision_asked = precision is not None
    precision = precision or (budget.precision if budget else None)
    result = estimate_memory(experiment, registry, batch_size=batch, precision=precision)
    trains_in = experiment.trainer.precision
    basis = result.precision if result.precision == trains_in else (
        f"{result.precision} as {'asked' if precision_asked else 'the budget assumes'}; this preset trains in {trains_in}")
    lines = [f"estimate for {experiment.name} (batch {result.batch_size}, {basis}):",
             f"  parameters            {result.parameters:,}"]
    for name, count in result.parameters_by_component.items():
        lines.append(f"    {name:<20} {count:,}")
    for label, value in (("weights", result.weights_bytes), ("gradients", result.gradient_bytes),
                         ("optimizer state", result.optimizer_bytes), ("memory tables/state", result.state_bytes),
                         ("activations", result.activation_bytes), ("total", result.total_bytes)):
        lines.append(f"  {label:<21} {value / GIB:.3f} GiB")
    if budget is not None:
        verdict = "within" if result.total_bytes <= budget.memory_gib * GIB else "EXCEEDS"
        lines.append(f"  budget                {budget.memory_gib} GiB: {verdict}")
    return "\n".join(lines)


@presets.command("validate")
@click.argument("names", nargs=-1)
@click.option("--estimate/--no-estimate", default=True, show_default=True,
              help="Also check each memory estimate against the preset's budget.")
@click.option("--preflight/--no-preflight", default=True, show_default=True,
              help="Also try what only this machine can tell: the device, the datasets (their files, whether "
                   "samples fit), building the model.")
def validate(names: tuple[str, ...], estimate: bool, preflight: bool) -> None:
    """Validate presets (default: every registered one): every config, nested component and
    model x dataset x objective requirement, then what only this machine can tell (the device, each
    dataset's samples, the model's construction). Any of these is an error; an estimate over its
    budget is a warning."""
    from mosaic.runtime.training.manifest import load_manifest
    from mosaic.runtime.training.preflight import preflight as try_on_this_machine
    from mosaic.runtime.training.sizing import estimate_memory

    registry = registry_from_context()
    names = names or tuple(c.name for c in registry if c.kind == "preset")
    failed = 0
    for name in names:
        try:
            manifest = load_manifest(name, registry)
            if preflight:
                try_on_this_machine(manifest, registry)
        except MosaicError as exc:
            failed += 1
            click.echo(f"FAIL {name}\n{_indent(str(exc))}")
            continue
        warnings = []
        if estimate:
            for experiment in manifest.experiments:
                if experiment.budget is None:
                    warnings.append(f"{experiment.name}: no budget stated")
                    continue
                try:
                    result = estimate_memory(experiment, registry, batch_size=experiment.budget.batch_size,
                                             precision=experiment.budget.precision)
                except MosaicError as exc:
                    warnings.append(f"{experiment.name}: cannot estimate: {exc}")
                    continue
                if result.total_bytes > experiment.budget.memory_gib * GIB:
                    warnings.append(f"{experiment.name}: estimate {result.total_bytes / GIB:.2f} GiB exceeds "
                                    f"budget {experiment.budget.memory_gib} GiB")
        click.echo(f"ok   {name}" + "".join(f"\n  warning: {w}" for w in warnings))
    if failed:
        raise click.ClickException(f"{failed} of {len(names)} preset(s) invalid")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


