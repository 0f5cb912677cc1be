"""``mosaic export RUN_DIR --safetensors``: a run's model as a file any framework can read."""

from __future__ import annotations

from pathlib import Path

import click

from mosaic.cli.commands.run import registry_from_context, user_errors


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--safetensors", "as_safetensors", is_flag=True,
              help="Write safetensors (the weights, with the model config as metadata).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Output file (default: RUN_DIR/model.safetensors).")
@click.option("--experiment", help="The experiment of a multi-experiment run (default: the one that ran).")
def export(run_dir: Path, as_safetensors: bool, out: Path | None, experiment: str | None) -> None:
    """Export RUN_DIR's newest checkpoint. Read it back in Python with
    mosaic.runtime.export.read_safetensors_export."""
    if not as_safetensors:
        raise click.UsageError("choose a format: --safetensors")
    from mosaic.runtime.export import export_safetensors

    with user_errors():
        path = export_safetensors(run_dir, out, experiment=experiment, registry=registry_from_context())
    click.echo(str(path))
