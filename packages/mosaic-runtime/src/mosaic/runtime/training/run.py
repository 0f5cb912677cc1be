"""Running a preset end to end: the public entry point behind ``mosaic run``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosaic.core.plugins import get_registry
from mosaic.runtime.training.manifest import load_manifest, parse_manifest, resolved_yaml
from mosaic.runtime.training.preflight import preflight
from mosaic.runtime.training.run_dir import RunDir, fingerprint

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


def run_preset(
    preset: str | None,
    *,
    registry: Registry | None = None,
    overrides: Sequence[str] = (),
    out: Path = Path("runs"),
    resume: Path | None = None,
    device: str | None = None,
    steps: int | None = None,
    experiment: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``preset`` (a registered name or a YAML file) into a fresh run directory under
    ``out``, or continue the run in ``resume``. Returns the run's summary."""
    registry = registry if registry is not None else get_registry()
    overrides = list(overrides)
    if steps is not None:
        overrides.append(f"trainer.steps={steps}")
    if resume is not None:
        run = RunDir.existing(resume)
        manifest = parse_manifest(run.config_text(), registry, source=str(run.config_path), overrides=overrides)
    else:
        if preset is None:
            raise ValueError("run_preset needs a preset or a run directory to resume")
        manifest = load_manifest(preset, registry, overrides=overrides)
        run = None
    resolved = resolved_yaml(manifest)
    chosen = manifest.experiment(experiment)
    # Everything is validated and tried (device, datasets, objective, model) before the run
    # directory is created: a preset that cannot run leaves nothing on disk.
    preflight(manifest, registry, experiment=chosen.name, device=device)
    # torch is imported only when something trains (a preset that fails to parse never loads it)
    from mosaic.runtime.training.trainer import Trainer

    trainer_run = run
    if trainer_run is None and _is_main_process():
        trainer_run = RunDir.create(out, manifest.name)
    # Other data-parallel ranks of a fresh run write nothing and so get no run directory.
    trainer = Trainer(chosen, registry, trainer_run, fingerprint=fingerprint(resolved), device=device,
                      show_progress=show_progress)
    if resume is not None:
        trainer.resume()
    elif trainer_run is not None:
        trainer_run.write_config(resolved)
        trainer_run.log_event("start", preset=manifest.name, experiment=chosen.name)
    return trainer.fit()


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def evaluate_run(run_path: Path, *, registry: Registry | None = None, samples: int | None = None,
                 device: str | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Re-evaluate a run's newest checkpoint on its held-out set; the report is written into the
    run's ``summary.json`` under ``eval`` and returned."""
    import torch

    from mosaic.runtime.training.evaluation import evaluate
    from mosaic.runtime.training.loading import load_trained_model

    registry = registry if registry is not None else get_registry()
    loaded = load_trained_model(run_path, registry=registry, device=device, experiment=experiment)
    chosen, run = loaded.experiment, loaded.run
    if chosen.eval_dataset is None or chosen.eval is None:
        from mosaic.core.errors import ConfigError, ConfigProblem

        raise ConfigError([ConfigProblem("$.targets[0].eval", "this run has no eval section to evaluate")],
                          source=str(run.config_path))
    torch.manual_seed(chosen.trainer.seed)
    objective = chosen.objective.build(registry)
    report = evaluate(loaded.model, objective, chosen.eval_dataset.build(registry),
                      samples=samples or chosen.eval.samples, batch_size=chosen.eval.batch_size, device=loaded.device)
    report["checkpoint_step"] = loaded.step
    summary = run.read_summary()
    summary["eval"] = report
    run.write_summary(summary)
    return report
