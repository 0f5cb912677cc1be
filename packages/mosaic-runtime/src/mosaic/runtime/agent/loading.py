"""What the agent runtimes need of a model, checked up front.

Runs are loaded with :func:`mosaic.runtime.load_run` (on the training engine's
:func:`~mosaic.runtime.training.loading.load_trained_model`). The runtime checks the model against
the contract's Protocols; :func:`check_streaming_model` names any missing method, and
:func:`check_byte_model` refuses a model whose logits do not cover every byte (events are bytes: a
narrower model would fail on the first byte above its vocabulary, deep inside an embedding).
"""

from __future__ import annotations

from typing import Any

import torch

from mosaic.core.contract.protocols import StreamingModel, StreamingState, missing_members, protocol_members
from mosaic.core.errors import RuntimeStateError

#: The ids a byte-level model emits: one per byte value.
BYTE_VOCABULARY = 256
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


def check_byte_model(model: Any, component_id: str = "the model", *, purpose: str = "the event runtimes need") -> None:
    """Raise :class:`RuntimeStateError` unless ``model`` (a streaming model) scores every byte value:
    the width of the logits of one step from a fresh state, whatever the model calls its vocabulary."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model.step(torch.zeros(1, dtype=torch.int64, device=device), model.init_state(1, device)).logits
    width = int(logits.shape[-1])
    if width < BYTE_VOCABULARY:
        raise RuntimeStateError(f"{component_id} has a vocabulary of {width} ids; {purpose} a byte-level "
                                f"model ({BYTE_VOCABULARY} ids or more)")
