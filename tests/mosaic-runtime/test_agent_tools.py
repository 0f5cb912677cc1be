"""The model's tool requests are executed through the tool registry and the replies fed back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.reactive import ReactiveRuntime
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.agent.tool_flow import ToolBridge
from mosaic.runtime.testing.tiny_agent import TinyStreamConfig, TinyStreamLM
from mosaic.runtime.tools.registry import open_registry

ASK = EventEnvelope("Ask", {"text": "add two numbers"}, "user", id="a1", ts=1.0)
CALL = EventEnvelope("ToolCall", {"tool": "adder", "arguments": {"a": 1}}, "agent", id="t1", ts=2.0)
DEFINE = EventEnvelope("ToolDefinition", {"name": "adder"}, "agent", id="t2", ts=3.0)


def session_emitting(event: EventEnvelope) -> EventSession:
    torch.manual_seed(0)
    return EventSession(TinyStreamLM(TinyStreamConfig(script=event.to_json(), commit_bias=0)).eval())


@pytest.fixture(autouse=True)
def private_key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_registry keeps its keys in the user key directory: point it at the test's own."""
    monkeypatch.setenv("MOSAIC_KEY_DIR", str(tmp_path / "keys"))


def test_a_tool_call_is_executed_and_the_reply_fed_back(tmp_path: Path) -> None:
    session = session_emitting(CALL)
    bridge = ToolBridge(open_registry(tmp_path / "tools", builders={}))
    emitted: list[EventEnvelope] = []
    ReactiveRuntime(session, emitted.append, tools=bridge).run([ASK.to_bytes()])
    # The model calls an unknown tool; the registry answers ToolError, the model sees it and answers
    # with another call, and so on until the round limit (3) ends the exchange.
    types = [event.type for event in emitted]
    assert types == ["ToolCall", "ToolError"] * 3 + ["ToolCall"]
    error = emitted[1]
    assert error.payload["tool"] == "adder" and error.payload["in_reply_to"] == CALL.id
    assert bridge.requests == 3 and session.events_observed == 1 + 4 + 3  # ask, 4 calls, 3 replies


def test_an_invalid_definition_is_rejected_with_reasons(tmp_path: Path) -> None:
    session = session_emitting(DEFINE)
    bridge = ToolBridge(open_registry(tmp_path / "tools", builders={}))
    emitted: list[EventEnvelope] = []
    ReactiveRuntime(session, emitted.append, tools=bridge).run([ASK.to_bytes()])
    assert emitted[1].type == "ToolRejected" and emitted[1].payload["reasons"]


def test_without_a_registry_tool_events_are_ordinary_events(tmp_path: Path) -> None:
    session = session_emitting(CALL)
    emitted: list[EventEnvelope] = []
    ReactiveRuntime(session, emitted.append).run([ASK.to_bytes(), CALL.to_bytes()])
    assert [event.type for event in emitted] == ["ToolCall", "ToolCall"]  # nothing is executed
