"""Turn taking: where the agent stays silent (IDLE) and where its response begins (RESPOND).

A runtime decides after every event it observes whether to answer. The decision is taught at the
event's delimiter (the input position whose next byte begins the following event), after every
event the agent did not send itself:

- RESPOND where the following event is the agent's (a query, an idle tick before a replay, a user's
  request, a tool result): the response event begins at the next byte;
- IDLE where it is not (noise, memory writes): the agent stays silent.

Only the boundary is labelled, not the noise inside an event: IDLE zeroes the block's update, so a
stretch of IDLE would erase the very context the next decision needs. After the agent's own events
the opcode is not supervised (ignored): the runtime generated them and does not decide there, and
who speaks next is not determined by the trace.
"""

from __future__ import annotations

from collections.abc import Sequence

from mosaic.data.common import IGNORE_INDEX, OP_IDLE, OP_RESPOND, TraceBuilder

AGENT = "agent"


def mark_turns(builder: TraceBuilder, boundaries: Sequence[tuple[int, str]]) -> None:
    """``boundaries``: (delimiter position, sender) of each event in order."""
    for (delimiter, sender), (_, next_sender) in zip(boundaries, boundaries[1:], strict=False):
        if sender == AGENT:
            builder.mark_opcode([delimiter], IGNORE_INDEX)
        else:
            builder.mark_opcode([delimiter], OP_RESPOND if next_sender == AGENT else OP_IDLE)
