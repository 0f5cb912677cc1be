"""Loading a run's newest checkpoint as a streaming model, without importing the model's package.

The model is rebuilt and its weights loaded by the training engine's loader
(:mod:`mosaic.runtime.training.loading`). The runtime checks it against the contract's Protocols;
:func:`check_streaming_model` names any missing method.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosaic.core.contract.protocols import StreamingModel, StreamingState, missing_members, protocol_members
from mosaic.core.errors import RuntimeStateError
from mosaic.runtime.training.loading import LoadedModel, load_trained_model

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

#: What the runtimes call on a model (``mosaic.core.contract.protocols.StreamingModel``).
STREAMING_METHODS = protocol_members(StreamingModel)
#: What the runtimes call on a streaming state (``StreamingState``: copy and persist sessions).
STATE_METHODS = protocol_members(StreamingState)


def check_streaming_model(model: Any, component_id: str = "the model") -> None:
    """Raise :class:`RuntimeStateError` naming each streaming method ``model`` or its state lacks."""
    if not isinstance(model, StreamingModel):
        raise RuntimeStateError(
            f"{component_id} ({type(model).__name__}) cannot run as an event runtime: it has no "
            f"{', '.join(missing_members(model, StreamingModel))} method(s); the runtimes need "
            f"{', '.join(STREAMING_METHODS)}"
        )
    state = model.init_state(1)
    if not isinstance(state, StreamingState):
        missing = missing_members(state, StreamingState)
        raise RuntimeStateError(
            f"{component_id}: its streaming state ({type(state).__name__}) has no {', '.join(missing)} "
            f"method(s); the runtimes need {', '.join(STATE_METHODS)} to copy and save sessions"
        )


def load_run_model(run_path: Path, *, registry: Registry | None = None, device: str | None = None,
                   experiment: str | None = None) -> LoadedModel:
    """The run's model (see :func:`mosaic.runtime.training.loading.load_trained_model`) on ``device``
    (CPU when None), checked to be usable as a streaming event model."""
    loaded = load_trained_model(run_path, registry=registry, device=device or "cpu", experiment=experiment)
    check_streaming_model(loaded.model, loaded.component_id)
    return loaded
