"""Loading a trained run in Python: :func:`load_run`.

The model is rebuilt from the run's resolved ``config.yaml`` through the registry (so the runtime
never imports the model's package), and its newest checkpoint is read weights-only with the
training engine's checks (config fingerprint, opcode table), by
:func:`~mosaic.runtime.training.loading.load_trained_model`, the loader ``mosaic eval`` shares. The run's saved streaming state, when a
session was saved, comes back beside it::

    from mosaic.runtime import load_run

    loaded = load_run("runs/mosaic_commitment/20250101-120000")
    loaded.model          # in eval mode, newest checkpoint's weights
    loaded.config         # the model's resolved config object (e.g. MosaicLMConfig)
    loaded.state          # the "default" session's streaming state, or None
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from mosaic.core.errors import CheckpointError
from mosaic.runtime.training.checkpoint import load_payload
from mosaic.runtime.training.loading import load_trained_model
from mosaic.runtime.training.run_dir import RunDir

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


@attrs.frozen
class LoadedRun:
    """A run's model with its newest checkpoint's weights (in eval mode), and what describes it."""

    model: Any  # a torch.nn.Module, used by duck typing (its package is never imported here)
    #: The model's resolved config object (an instance of its registered config class).
    config: Any
    #: The streaming state saved by session ``session`` (``mosaic events``/``live``), or None.
    state: Any
    model_id: str
    experiment: str
    run: RunDir
    checkpoint: Path
    step: int
    config_fingerprint: str
    device: torch.device


def load_run(run_dir: str | Path, experiment: str | None = None, *, session: str | None = "default",
             registry: Registry | None = None, device: str | None = None) -> LoadedRun:
    """Load the run in ``run_dir``: its model (``experiment`` of a multi-experiment preset; default
    the first) with the newest checkpoint's weights, on ``device`` (default cpu), and the streaming
    state that session ``session`` saved, if there is one (``session=None``: do not look).

    Raises a :class:`~mosaic.core.errors.MosaicError` (ConfigError, RunDirectoryError) for a directory that is not a run or an
    experiment it did not train, and :class:`~mosaic.core.errors.CheckpointError` for a missing, corrupt or foreign
    checkpoint or session file (never unpickling code: files are read weights-only).
    """
    loaded = load_trained_model(Path(run_dir), registry=registry, device=device or "cpu", experiment=experiment)
    state = None if session is None else _saved_state(loaded.run, session, loaded.model, loaded.config_fingerprint,
                                                      loaded.device)
    return LoadedRun(model=loaded.model, config=loaded.experiment.model.config, state=state,
                     model_id=loaded.component_id, experiment=loaded.experiment.name, run=loaded.run,
                     checkpoint=loaded.checkpoint, step=loaded.step, config_fingerprint=loaded.config_fingerprint,
                     device=loaded.device)


def _saved_state(run: RunDir, session: str, model: Any, config_fingerprint: str, device: torch.device) -> Any:
    from mosaic.runtime.agent.session import SESSION_FORMAT, SessionStore

    path = SessionStore(run.path).state_path(session)
    init_state = getattr(model, "init_state", None)
    if not path.is_file() or not callable(init_state):
        return None
    payload = load_payload(path, file_format=SESSION_FORMAT, what="session file")
    if payload.get("config_fingerprint") != config_fingerprint:
        raise CheckpointError(f"session file {path} was recorded for another configuration "
                              f"({payload.get('config_fingerprint')} != {config_fingerprint})")
    return type(init_state(1)).from_state_dict(payload["state"]).to(device)
