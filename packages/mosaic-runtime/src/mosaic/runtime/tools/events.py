"""The tool event flow on an ``EventBus``.

- ``ToolDefinition`` (payload: a definition's JSON form) -> ``ToolRegistered`` (payload: name,
  hash, state ``active`` or ``pending-approval``, reasons) or ``ToolRejected`` (name, every reason).
- ``ToolCall`` (payload: ``{"tool": name, "arguments": {...}}``) -> ``ToolResult`` (tool, value,
  stdout) or ``ToolError`` (tool, error type, message).

A ``ToolRequest`` (payload: ``{"task": name, "params": {...}}``, from a user) asks the model for a
tool; the registry does not handle it: the model answers it with a ``ToolDefinition``, then a
``ToolCall`` (see ``dataset.tool_building`` and docs/tools.md).

Replies carry ``in_reply_to`` (the request's event id) and the request's priority. Tool calls run
synchronously inside dispatch, bounded by the tool's wall-clock limit.
"""

from __future__ import annotations

from typing import Any

from mosaic.core.errors import ConfigError, MosaicError
from mosaic.core.events.bus import EventBus, Subscription
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.tools.definition import ToolDefinition
from mosaic.runtime.tools.display import escape_control
from mosaic.runtime.tools.registry import ToolRegistry, ToolState

TOOL_REQUEST = "ToolRequest"
TOOL_DEFINITION = "ToolDefinition"
TOOL_REGISTERED = "ToolRegistered"
TOOL_REJECTED = "ToolRejected"
TOOL_CALL = "ToolCall"
TOOL_RESULT = "ToolResult"
TOOL_ERROR = "ToolError"


class ToolEventHandler:
    """Connects a ``ToolRegistry`` to a bus: ``attach()`` subscribes, ``detach()`` undoes it."""

    def __init__(self, registry: ToolRegistry, bus: EventBus, *, sender: str = "tool_registry") -> None:
        self.registry = registry
        self.bus = bus
        self.sender = sender
        self._subscriptions: list[Subscription] = []

    def attach(self) -> ToolEventHandler:
        self._subscriptions = [
            self.bus.subscribe(TOOL_DEFINITION, self.on_definition, name="tools.definition"),
            self.bus.subscribe(TOOL_CALL, self.on_call, name="tools.call"),
        ]
        return self

    def detach(self) -> None:
        for subscription in self._subscriptions:
            self.bus.unsubscribe(subscription)
        self._subscriptions = []

    def _envelope(self, request: EventEnvelope, event_type: str, payload: dict[str, Any]) -> EventEnvelope:
        return EventEnvelope(
            type=event_type,
            payload={**payload, "in_reply_to": request.id},
            sender=self.sender,
            priority=request.priority,
        )

    def _reply(self, request: EventEnvelope, event_type: str, payload: dict[str, Any]) -> None:
        self.bus.publish(self._envelope(request, event_type, payload))

    def on_definition(self, event: EventEnvelope) -> None:
        payload = event.payload
        name = str(payload.get("name", "?")) if isinstance(payload, dict) else "?"
        try:
            definition = ToolDefinition.from_json_dict(payload)
        except ConfigError as exc:
            self._reply(event, TOOL_REJECTED, {"name": name, "reasons": [p.render() for p in exc.problems]})
            return
        record = self.registry.submit(definition, actor=event.sender)
        if record.state is ToolState.REJECTED:
            self._reply(event, TOOL_REJECTED, {"name": definition.name, "reasons": list(record.reasons)})
        else:
            self._reply(
                event,
                TOOL_REGISTERED,
                {
                    "name": definition.name,
                    "hash": record.hash,
                    "state": record.state.value,
                    "reasons": list(record.reasons),
                },
            )

    def on_call(self, event: EventEnvelope) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        tool = payload.get("tool")
        arguments = payload.get("arguments", {})
        if not isinstance(tool, str) or not isinstance(arguments, dict):
            self._reply(
                event,
                TOOL_ERROR,
                {
                    "tool": str(tool),
                    "error_type": "ToolError",
                    "message": "ToolCall payload needs 'tool' (string) and 'arguments' (object)",
                },
            )
            return
        try:
            result = self.registry.call(tool, arguments)
        except MosaicError as exc:
            self._reply(
                event,
                TOOL_ERROR,
                {
                    "tool": tool,
                    "error_type": type(exc).__name__,
                    "message": escape_control(str(exc), keep_newlines=True),
                },
            )
            return
        reply = {
            "tool": tool,
            "value": result.value,
            "stdout": result.stdout,
            "wall_seconds": round(result.wall_seconds, 6),
        }
        try:
            envelope = self._envelope(event, TOOL_RESULT, reply)
        except MosaicError as exc:
            # A value the event cannot carry (the sandbox checks, this is the last guard) still
            # gets an answer: the model must never be left without a reply.
            self._reply(
                event,
                TOOL_ERROR,
                {
                    "tool": tool,
                    "error_type": "ToolOutputError",
                    "message": escape_control(str(exc)[:2000], keep_newlines=True),
                },
            )
            return
        self.bus.publish(envelope)
