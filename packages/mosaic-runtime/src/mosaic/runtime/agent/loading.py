"""Loading a run's newest checkpoint as a streaming model, without importing the model's package.

The model is rebuilt from the run's resolved ``config.yaml`` through the registry and its weights
are read with the training engine's checkpoint loader (fingerprint and opcode table checked). The
runtime then uses the model by duck typing; :func:`check_streaming_model` names any missing method.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from mosaic.core.errors import RuntimeStateError
from mosaic.core.plugins import get_registry
from mosaic.runtime.training.checkpoint import latest_checkpoint, load_checkpoint
from mosaic.runtime.training.evaluation import opcode_names
from mosaic.runtime.training.manifest import parse_manifest, resolved_yaml
from mosaic.runtime.training.run_dir import RunDir, fingerprint
from mosaic.runtime.training.trainer import pick_device

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

#: What the runtimes call on a model: ``init_state(batch, device)``, ``step(ids (B,), state)`` and
#: ``prefill(ids (B, T), state)`` returning a ModelOutput with ``state``, and ``forward(batch)``.
STREAMING_METHODS = ("init_state", "step", "prefill", "forward")
#: What the runtimes call on a streaming state: ``copy()``, ``state_dict()`` and the classmethod
#: ``from_state_dict(data)`` and ``to(device)`` (persistence across restarts).
STATE_METHODS = ("copy", "to", "state_dict", "from_state_dict")


def check_streaming_model(model: Any, component_id: str = "the model") -> None:
    """Raise :class:`RuntimeStateError` naming each streaming method ``model`` or its state lacks."""
    missing = [name for name in STREAMING_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise RuntimeStateError(
            f"{component_id} ({type(model).__name__}) cannot run as an event runtime: it has no "
            f"{', '.join(missing)} method(s); the runtimes need {', '.join(STREAMING_METHODS)}"
        )
    state = model.init_state(1)
    missing = [name for name in STATE_METHODS if not callable(getattr(state, name, None))]
    if missing:
        raise RuntimeStateError(
            f"{component_id}: its streaming state ({type(state).__name__}) has no {', '.join(missing)} "
            f"method(s); the runtimes need {', '.join(STATE_METHODS)} to copy and save sessions"
        )


@attrs.frozen
class LoadedModel:
    """A run's model with its newest checkpoint's weights, in eval mode."""

    model: torch.nn.Module
    run: RunDir
    component_id: str
    checkpoint: Path
    step: int
    config_fingerprint: str
    device: torch.device


def load_run_model(run_path: Path, *, registry: Registry | None = None, device: str | None = None,
                   experiment: str | None = None) -> LoadedModel:
    """Rebuild the run's model through the registry and load its newest checkpoint."""
    registry = registry if registry is not None else get_registry()
    run = RunDir.existing(Path(run_path))
    manifest = parse_manifest(run.config_text(), registry, source=str(run.config_path))
    chosen = manifest.experiment(experiment)
    target = pick_device(device or "cpu")
    model = chosen.model.build(registry).to(target)
    path = latest_checkpoint(run.checkpoints)
    config_fingerprint = fingerprint(resolved_yaml(manifest))
    payload = load_checkpoint(path, config_fingerprint=config_fingerprint, opcode_table=opcode_names(model))
    model.load_state_dict(payload["model"])
    model.eval()
    check_streaming_model(model, chosen.model.id)
    return LoadedModel(model, run, chosen.model.id, path, int(payload["step"]), config_fingerprint, target)
