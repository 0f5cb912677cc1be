"""``mosaic sweep PRESET``: a grid or random search over overrides and seeds (Optuna-backed)."""

from __future__ import annotations

from pathlib import Path

import click

from mosaic.cli.commands.run import registry_from_context, user_errors
from mosaic.cli.params import checked_overrides


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers, e.g. 0,1,2") from None


@click.command("sweep")
@click.argument("preset")
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
              help="Grid search: try each value of KEY (repeat for more keys; every combination runs).")
@click.option("--param", "params", multiple=True, metavar="KEY=DIST",
              help="Random search: KEY=uniform:LO:HI, loguniform:LO:HI, int:LO:HI or choice:A,B (needs --trials).")
@click.option("--seeds", default="0", show_default=True, help="Seeds each parameter set is trained with.")
@click.option("--metric", default="final.loss_total", show_default=True,
              help="Dotted path into each run's summary, e.g. eval.token_accuracy.")
@click.option("--maximize", is_flag=True, help="Higher metric is better (default: lower is better).")
@click.option("--trials", type=click.IntRange(min=1), help="Parameter sets to try (default: the whole grid).")
@click.option("--set", "fixed", multiple=True, metavar="KEY=VALUE", callback=checked_overrides,
              help="An override applied to every run.")
@click.option("--steps", type=click.IntRange(min=1), help="trainer.steps for every run.")
@click.option("--study", "study_name", default="sweep", show_default=True,
              help="Study name; rerunning with the same name resumes it.")
@click.option("--storage", metavar="URL",
              help="Optuna storage shared by many machines (default: SQLite in the sweep directory).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Root of run directories; the sweep lives in OUT/<preset>/sweeps/<study>/.")
def sweep(preset: str, grids: tuple[str, ...], params: tuple[str, ...], seeds: str, metric: str, maximize: bool,
          trials: int | None, fixed: tuple[str, ...], steps: int | None, study_name: str, storage: str | None,
          out: Path) -> None:
    """Train PRESET once per parameter set and seed, one run after another, and write a comparison
    table (sweep.json and sweep.md, best first)."""
    from mosaic.runtime.training.sweep import SweepParam, SweepSpec, run_sweep

    with user_errors():
        searched = tuple(SweepParam.grid(g) for g in grids) + tuple(SweepParam.random(p) for p in params)
        overrides = (*fixed, *((f"trainer.steps={steps}",) if steps is not None else ()))
        spec = SweepSpec(preset=preset, params=searched, seeds=_seeds(seeds), metric=metric,
                         direction="maximize" if maximize else "minimize", trials=trials, fixed=overrides,
                         study_name=study_name, storage=storage)

        def report(trial: dict) -> None:
            values = ", ".join(f"{v:.4f}" for v in trial["values"])
            click.echo(f"trial {trial['number']}: {trial['params']} -> {metric} {values}", err=True)

        table = run_sweep(spec, out=out, registry=registry_from_context(), on_trial=report)
    best = table["rows"][0]
    click.echo(f"best of {len(table['rows'])} ({metric}, {spec.direction}): {best['params']} "
               f"mean {best['mean']:.4f} ± {best['std']:.4f} over seeds {best['seeds']}")
    if table["failed"]:
        click.echo(f"{len(table['failed'])} trial(s) failed; see sweep.md", err=True)
    click.echo(f"table: {Path(table['sweep_dir']) / 'sweep.md'}")
