"""Loading a run's newest checkpoint as a streaming model, without importing the model's package.

The model is rebuilt and its weights loaded by the training engine's loader
(:mod:`mosaic.runtime.training.loading`). The runtime then uses the model by duck typing;
:func:`check_streaming_model` names any missing method.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosaic.core.errors import RuntimeStateError
from mosaic.runtime.training.loading import LoadedModel, load_trained_model

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


def load_run_model(run_path: Path, *, registry: Registry | None = None, device: str | None = None,
                   experiment: str | None = None) -> LoadedModel:
    """The run's model (see :func:`mosaic.runtime.training.loading.load_trained_model`) on ``device``
    (CPU when None), checked to be usable as a streaming event model."""
    loaded = load_trained_model(run_path, registry=registry, device=device or "cpu", experiment=experiment)
    check_streaming_model(loaded.model, loaded.component_id)
    return loaded
