"""``mosaic plot RUN_DIR``: PNG curves of loss and auxiliary metrics."""

from __future__ import annotations

from pathlib import Path

import click

from mosaic.cli.commands.run import user_errors
from mosaic.cli.params import png_path


@click.command("plot")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), callback=png_path,
              help="PNG path (default: RUN_DIR/curves.png).")
@click.option("--experiment", help="The experiment of a multi-experiment run (default: the one that ran; a run "
              "directory holds one).")
def plot(run_dir: Path, out: Path | None, experiment: str | None) -> None:
    """Plot RUN_DIR's training (and eval) curves to a PNG."""
    from mosaic.runtime.training.plotting import plot_run
    from mosaic.runtime.training.run_dir import RunDir

    with user_errors():
        RunDir.existing(run_dir).experiment_for(experiment)  # a different experiment is an error, not a plot
        target = plot_run(run_dir, out)
    click.echo(f"wrote {target}")
