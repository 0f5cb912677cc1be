"""``mosaic eval RUN_DIR``: evaluate a run's newest checkpoint on its held-out set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mosaic.cli.commands.run import registry_from_context, user_errors


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--samples", type=click.IntRange(min=1), help="Held-out samples (default: the run's eval.samples).")
@click.option("--device", help="cpu, cuda, ... (default: the run's trainer.device).")
@click.option("--experiment", help="The experiment of a multi-experiment run (default: the one that ran).")
def eval_command(run_dir: Path, samples: int | None, device: str | None, experiment: str | None) -> None:
    """Recall, commitment, opcode and token accuracy of RUN_DIR; written into its summary.json.

    Warns when the installed mosaic packages or plugins differ from those that trained the run.
    """
    from mosaic.runtime.training.provenance import plugin_drift
    from mosaic.runtime.training.run import evaluate_run
    from mosaic.runtime.training.run_dir import RunDir

    with user_errors():
        for line in plugin_drift(RunDir.existing(run_dir)):
            click.echo(f"warning: {line}", err=True)
        report = evaluate_run(run_dir, registry=registry_from_context(), samples=samples, device=device,
                              experiment=experiment)
    click.echo(json.dumps(report, indent=2, sort_keys=True))


