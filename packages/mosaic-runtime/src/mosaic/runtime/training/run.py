"""Running a preset end to end: the public entry point behind ``mosaic run``."""

from __future__ import annotations

import math
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
    progress_mode: str = "auto",
) -> dict[str, Any]:
    """Train ``preset`` (a registered name or a YAML file) into a fresh run directory under
    ``out``, or continue the run in ``resume`` (its recorded experiment unless ``experiment`` says
    otherwise). Returns the run's summary; its ``status`` is ``interrupted`` after Ctrl-C/SIGTERM.
    ``show_progress=False`` prints nothing; ``progress_mode`` is ``auto``, ``lines`` or ``quiet``."""
    from mosaic.runtime.training import provenance
    from mosaic.runtime.training.interrupts import stop_on_signals
    from mosaic.runtime.training.run_lock import acquire_run_lock

    registry = registry if registry is not None else get_registry()
    overrides = list(overrides)
    if steps is not None:
        overrides.append(f"trainer.steps={steps}")
    main = _is_main_process()
    lock = None
    try:
        run: RunDir | None = None
        if resume is not None:
            existing = RunDir.existing(resume)
            run = existing
            lock = acquire_run_lock(existing.path) if main else None  # before anything reads the run's files
            manifest = parse_manifest(existing.config_text(), registry, source=str(existing.config_path),
                                      overrides=overrides)
            experiment = existing.experiment_for(experiment)
        else:
            if preset is None:
                raise ValueError("run_preset needs a preset or a run directory to resume")
            manifest = load_manifest(preset, registry, overrides=overrides)
        resolved = resolved_yaml(manifest)
        config_print = fingerprint(resolved)
        if resume is not None and run is not None:
            config_print = _resumed_fingerprint(run, registry, config_print)
        chosen = manifest.experiment(experiment)
        # Everything is validated and tried (device, datasets, objective, model) before the run
        # directory is created: a preset that cannot run leaves nothing on disk.
        preflight(manifest, registry, experiment=chosen.name, device=device)
        # torch is imported only when something trains (a preset that fails to parse never loads it)
        from mosaic.runtime.training.distributed import shutdown
        from mosaic.runtime.training.trainer import Trainer

        trainer = Trainer(chosen, registry, run, fingerprint=config_print, device=device,
                          show_progress=show_progress, progress_mode=progress_mode)
        if run is None and main:  # other data-parallel ranks of a fresh run write nothing
            run = RunDir.create(out, manifest.name)
            lock = acquire_run_lock(run.path)
            trainer.run = run
        if run is not None and main:
            run.clean_stale_temporaries()
            provenance.record(run, provenance.collect(seed=chosen.trainer.seed))
        if resume is not None:
            trainer.resume()
        elif run is not None:
            run.write_config(resolved)
            run.write_record(preset=manifest.name, experiment=chosen.name)
            trainer.open_sinks(resume_step=None)
            run.log_event("start", preset=manifest.name, experiment=chosen.name)
            run.mark_latest()  # only a run that started: a failed start never becomes "latest"
        with stop_on_signals() as stop:
            trainer.stop = stop
            # A process group left to the interpreter's exit can abort a rank ("terminate called
            # without an active exception") while gloo's threads are still running.
            try:
                summary = trainer.fit()
            except BaseException:
                shutdown(trainer.dist, trainer, wait=False)
                raise
            shutdown(trainer.dist, trainer)
            return summary
    finally:
        if lock is not None:
            lock.release()


def _resumed_fingerprint(run: RunDir, registry: Registry, with_overrides: str) -> str:
    """The fingerprint a resumed run's checkpoints are checked against (and its new ones carry): that
    of its config.yaml as written, not as resolved today, so a run trained before a component gained
    a config field (today filled with its default) goes on, as ``load_trained_model`` loads it. An
    override that changes what trained (today's resolution with it differs from without it) keeps
    ``with_overrides``, which the checkpoint check refuses."""
    text, source = run.config_text(), str(run.config_path)
    if fingerprint(resolved_yaml(parse_manifest(text, registry, source=source))) != with_overrides:
        return with_overrides
    return run.written_fingerprint()


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def evaluate_run(run_path: Path, *, registry: Registry | None = None, samples: int | None = None,
                 device: str | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Re-evaluate a run's newest loadable checkpoint on its held-out set; the report is written into
    the run's ``summary.json`` under ``eval`` and returned (holding the run's lock meanwhile). A
    non-finite evaluation is an error and leaves ``summary.json`` as it was."""
    from mosaic.runtime.training.run_lock import acquire_run_lock

    registry = registry if registry is not None else get_registry()
    run = RunDir.existing(run_path)
    lock = acquire_run_lock(run.path)  # a run still training (or another eval) writes summary.json too
    try:
        return _evaluate_locked(run, registry, samples=samples, device=device, experiment=experiment)
    finally:
        lock.release()


def _evaluate_locked(run: RunDir, registry: Registry, *, samples: int | None, device: str | None,
                     experiment: str | None) -> dict[str, Any]:
    import torch

    from mosaic.core.errors import TrainingError
    from mosaic.runtime.training.evaluation import evaluate
    from mosaic.runtime.training.loading import load_trained_model
    from mosaic.runtime.training.loggers import flatten

    loaded = load_trained_model(run.path, registry=registry, device=device, experiment=experiment)
    chosen = loaded.experiment
    if chosen.eval_dataset is None or chosen.eval is None:
        from mosaic.core.errors import ConfigError, ConfigProblem

        raise ConfigError([ConfigProblem("$.targets[0].eval", "this run has no eval section to evaluate")],
                          source=str(run.config_path))
    torch.manual_seed(chosen.trainer.seed)
    objective = chosen.objective.build(registry)
    summary = run.read_summary()  # a damaged summary is reported before the evaluation runs
    report = evaluate(loaded.model, objective, chosen.eval_dataset.build(registry),
                      samples=samples or chosen.eval.samples, batch_size=chosen.eval.batch_size, device=loaded.device)
    non_finite = [name for name, value in flatten(report).items()
                  if isinstance(value, float) and not math.isfinite(value)]
    if non_finite:
        raise TrainingError(f"evaluating {loaded.checkpoint} gave non-finite {', '.join(non_finite[:3])}; "
                            "summary.json is left as it was")
    report["checkpoint_step"] = loaded.step
    summary["eval"] = report
    run.write_summary(summary)
    return report
