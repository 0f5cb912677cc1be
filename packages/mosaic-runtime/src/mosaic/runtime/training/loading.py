"""Rebuilding a run's model from its directory: the one loader ``mosaic eval`` and the event runtimes
share.

The model is rebuilt from the run's resolved ``config.yaml`` through the registry (so the runtime
never imports the model's package) and its newest checkpoint's weights are read with the checkpoint
loader, which checks the config fingerprint and the opcode table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import torch

from mosaic.core.errors import CheckpointError, ConfigError
from mosaic.core.plugins import get_registry
from mosaic.runtime.training.checkpoint import load_model_weights, load_newest_loadable
from mosaic.runtime.training.evaluation import opcode_names
from mosaic.runtime.training.manifest import Experiment, parse_manifest
from mosaic.runtime.training.run_dir import RunDir
from mosaic.runtime.training.sizing import build_model
from mosaic.runtime.training.trainer import pick_device

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


@attrs.frozen
class LoadedModel:
    """A run's model with its newest checkpoint's weights, in eval mode, and the experiment it was
    trained as."""

    model: torch.nn.Module
    run: RunDir
    experiment: Experiment
    component_id: str
    checkpoint: Path
    step: int
    config_fingerprint: str
    device: torch.device


def load_trained_model(run_path: Path, *, registry: Registry | None = None, device: str | None = None,
                   experiment: str | None = None, check_config: bool = True) -> LoadedModel:
    """Rebuild ``experiment``'s model (the one the run trained when None) through the registry and
    load the run's newest loadable checkpoint onto ``device`` (the run's ``trainer.device`` when
    None); non-finite weights are refused. ``check_config=False`` skips the config-fingerprint check
    (opcode table and weight shapes are still checked): for a run whose config.yaml was edited after
    training. A run saved before its components gained a config field needs no such option: the
    checkpoint is checked against the run's config.yaml as written, not as resolved today."""
    registry = registry if registry is not None else get_registry()
    run = RunDir.existing(Path(run_path))
    manifest = parse_manifest(run.config_text(), registry, source=str(run.config_path))
    chosen = manifest.experiment(run.experiment_for(experiment))  # default: the experiment that ran
    target = pick_device(device or chosen.trainer.device)
    try:  # an allocation the machine refuses (config.yaml edited to a huge width) is a ConfigError
        model = build_model(chosen, registry).to(target)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=str(run.config_path)) from None
    # The checkpoint (and a saved session) names the config it was trained with: the run's own
    # config.yaml as written at training time. Checked against that text, not against today's
    # resolution of it, so a run trained before a component gained a config field (today filled
    # with its default) still loads; the weight shapes and opcode table are checked either way.
    config_fingerprint = run.written_fingerprint()
    expected = config_fingerprint if check_config else None
    path, payload = load_newest_loadable(run.checkpoints, config_fingerprint=expected,
                                         opcode_table=opcode_names(model))
    # a state dict also holds plain extra state (a MosaicLM's opcode table): check tensors only
    bad = [name for name, tensor in payload["model"].items()
           if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
           and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the run diverged before it was saved")
    load_model_weights(model, payload["model"], path)
    model.eval()
    return LoadedModel(model, run, chosen, chosen.model.id, path, int(payload["step"]), config_fingerprint, target)
