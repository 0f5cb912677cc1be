"""Tool-building evaluation: held-out requests through the real runtime path.

For a dataset that provides tool episodes (``dataset.tool_building``: ``episodes(count)``), each
held-out ``ToolRequest`` is fed to a fresh :class:`~mosaic.runtime.agent.responder.EventSession` and
answered by :func:`mosaic.runtime.agent.tool_flow.respond` with a :class:`ToolBridge` on a private,
fresh tool registry: the model's ``ToolDefinition`` is validated and registered (pending approval when
privileged), its ``ToolCall`` runs in the sandbox, and the replies come back as events.

A request succeeds when the generated tool registered ``active``, the model's own call (with the
task's example arguments) returned the right value, and a second call of the registered tool with
the probe arguments (made here, through the same registry and sandbox) returned the right value too.

- ``tools.success_rate``: the fraction of requests that succeed;
- ``tools.registered_rate`` / ``tools.call_rate`` / ``tools.probe_rate``: each condition alone;
- ``tools.examples``: the first requests with what the model emitted (types and the tool's name).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mosaic.core.errors import MosaicError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import GenerationConfig
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.agent.tool_flow import ToolBridge, respond

#: Longest generated event: the longest definition of dataset.tool_building is about 260 bytes.
MAX_NEW_BYTES = 384
SHOWN_EXAMPLES = 4


@runtime_checkable
class ProvidesToolEpisodes(Protocol):
    """A dataset whose held-out requests can be played through the runtime."""

    def episodes(self, count: int) -> list[Any]: ...


def open_private_registry(root: Path) -> Any:
    """A fresh registry under ``root`` with its own audit and approval keys (never the user's)."""
    from mosaic.runtime.tools.registry import open_registry

    return open_registry(root / "tools", key_file=root / "audit.key", approval_key_file=root / "approval.key")


def play_episode(model: Any, episode: Any, root: Path) -> dict[str, Any]:
    """Feed ``episode.request`` to a fresh session with a fresh registry; what happened, and whether
    the tool works (see the module docstring)."""
    registry = open_private_registry(root)
    bridge = ToolBridge(registry)
    session = EventSession(
        model, config=GenerationConfig(max_new_bytes=MAX_NEW_BYTES, commitment_source="event")
    )
    emitted: list[EventEnvelope] = []
    session.observe(episode.request)
    respond(session, episode.request, emitted.append, bridge)
    registered = [
        e.payload["name"]
        for e in emitted
        if e.type == "ToolRegistered" and e.payload.get("state") == "active"
    ]
    calls = {e.id: e.payload for e in emitted if e.type == "ToolCall" and e.sender != bridge.handler.sender}
    call_ok = any(
        e.type == "ToolResult"
        and e.payload.get("tool") in registered
        and e.payload.get("value") == episode.expected
        and calls.get(e.payload.get("in_reply_to"), {}).get("arguments") == episode.arguments
        for e in emitted
    )
    probe_ok = False
    if registered:
        try:
            probe_ok = registry.call(registered[0], episode.probe_arguments).value == episode.probe_expected
        except MosaicError:
            probe_ok = False
    return {
        "request": episode.request.payload,
        "emitted": [e.type for e in emitted],
        "tool": registered[0] if registered else None,
        "registered": bool(registered),
        "call_ok": call_ok,
        "probe_ok": probe_ok,
        "success": bool(registered) and call_ok and probe_ok,
    }


def tool_building_report(model: Any, dataset: Any, *, samples: int) -> dict[str, Any]:
    """``{"tools": {...}}`` for a dataset with tool episodes, else ``{}``."""
    if not isinstance(dataset, ProvidesToolEpisodes):
        return {}
    was_training = model.training
    model.eval()
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="mosaic-eval-tools-") as tmp:
            for index, episode in enumerate(dataset.episodes(samples)):
                outcomes.append(play_episode(model, episode, Path(tmp) / str(index)))
    finally:
        model.train(was_training)
    count = max(len(outcomes), 1)

    def rate(key: str) -> float:
        return sum(1 for outcome in outcomes if outcome[key]) / count

    return {
        "tools": {
            "success_rate": rate("success"),
            "registered_rate": rate("registered"),
            "call_rate": rate("call_ok"),
            "probe_rate": rate("probe_ok"),
            "requests": len(outcomes),
            "examples": outcomes[:SHOWN_EXAMPLES],
        }
    }
