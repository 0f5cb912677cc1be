"""Tools in the agent runtimes: the model's ``ToolDefinition`` / ``ToolCall`` events are executed.

A response the model generates of type ``ToolDefinition`` or ``ToolCall`` is dispatched to a
:class:`~mosaic.runtime.tools.events.ToolEventHandler` on a private bus; its replies
(``ToolRegistered`` / ``ToolRejected`` / ``ToolResult`` / ``ToolError``) are emitted and fed to the
model, which then responds to them. That loop is bounded by ``max_rounds`` tool events per incoming
event. Tool events that arrive from outside are observed like any event but never executed: only the
model defines and calls tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mosaic.core.events.bus import EventBus
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.responder import EventSession, Response
from mosaic.runtime.tools.events import TOOL_CALL, TOOL_DEFINITION, ToolEventHandler

TOOL_REQUESTS = frozenset({TOOL_DEFINITION, TOOL_CALL})


class ToolBridge:
    """Executes tool request events against a tool registry; returns the replies."""

    def __init__(self, tool_registry: Any, *, sender: str = "tool_registry") -> None:
        self.bus = EventBus()
        self.handler = ToolEventHandler(tool_registry, self.bus, sender=sender).attach()
        self.requests = 0

    def execute(self, request: EventEnvelope) -> list[EventEnvelope]:
        self.requests += 1
        self.bus.publish(request)
        self.bus.dispatch_next()  # the handler publishes its replies onto the same bus
        replies = []
        while (reply := self.bus.pop()) is not None:
            replies.append(reply)
        return replies


def respond(session: EventSession, event: EventEnvelope, emit: Callable[[EventEnvelope], Any],
            tools: ToolBridge | None, *, max_rounds: int = 3) -> Response | None:
    """Generate the response to the (already observed) ``event``, emit it, and run the model's
    tool requests (at most ``max_rounds``), feeding each reply back and emitting the model's answer.
    None (nothing emitted) when the session's turn taking keeps the model silent."""
    if not session.ready_to_respond():
        return None
    response = session.generate(event)
    emit(response.event)
    rounds = 0
    while tools is not None and response.valid and response.event.type in TOOL_REQUESTS and rounds < max_rounds:
        rounds += 1
        replies = tools.execute(response.event)
        for reply in replies:
            emit(reply)
            session.observe(reply)
        if not replies:
            break
        response = session.generate(replies[-1])
        emit(response.event)
    return response
