"""The tool-building episodes are true: each task's definition passes the real validation, registers
active (no approval needed), and its tool returns the episode's results in the sandbox; unused tools
of such a flow are deprecated by the registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.plugins import get_registry
from mosaic.runtime.agent.tool_flow import ToolBridge
from mosaic.runtime.tools.registry import ToolRegistryConfig, ToolState, open_registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")


def _registry(tmp_path: Path, **config):
    return open_registry(
        tmp_path / "tools",
        key_file=tmp_path / "audit.key",
        approval_key_file=tmp_path / "approval.key",
        config=ToolRegistryConfig(**config),
    )


def _one_per_task():
    from mosaic.data.tool_building import TASKS

    episodes = {}
    for task in TASKS:
        [episode] = (
            get_registry().build("dataset.tool_building", {"split": "eval", "tasks": (task,)}).episodes(1)
        )
        episodes[task] = episode
    return episodes


def test_each_tasks_definition_registers_and_solves_its_request(tmp_path: Path) -> None:
    from mosaic.data.tool_building import definition_payload

    bridge = ToolBridge(_registry(tmp_path, max_creations_per_window=50))
    for task, episode in _one_per_task().items():
        [registered] = bridge.execute(
            EventEnvelope("ToolDefinition", definition_payload(task, episode.params), "agent")
        )
        assert registered.type == "ToolRegistered" and registered.payload["state"] == "active", (
            registered.payload
        )
        for arguments, expected in (
            (episode.arguments, episode.expected),
            (episode.probe_arguments, episode.probe_expected),
        ):
            [result] = bridge.execute(
                EventEnvelope("ToolCall", {"tool": episode.name, "arguments": arguments}, "agent")
            )
            assert result.type == "ToolResult" and result.payload["value"] == expected, (task, result.payload)


def test_unused_tools_built_by_the_flow_are_deprecated(tmp_path: Path) -> None:
    from mosaic.data.tool_building import definition_payload

    registry = _registry(tmp_path, deprecate_after_idle_calls=2)
    bridge = ToolBridge(registry)
    episodes = list(_one_per_task().values())[:3]
    for episode in episodes:
        bridge.execute(
            EventEnvelope("ToolDefinition", definition_payload(episode.task, episode.params), "agent")
        )
    used = episodes[0]
    for _ in range(2):
        [result] = bridge.execute(
            EventEnvelope("ToolCall", {"tool": used.name, "arguments": used.arguments}, "agent")
        )
        assert result.payload["value"] == used.expected
    assert registry.get(used.name).state is ToolState.ACTIVE
    for unused in episodes[1:]:
        record = registry.get(unused.name)
        assert record.state is ToolState.DEPRECATED and record.reasons == ["unused for 2 calls"]
    [refused] = bridge.execute(
        EventEnvelope("ToolCall", {"tool": episodes[1].name, "arguments": episodes[1].arguments}, "agent")
    )
    assert refused.type == "ToolError" and "deprecated" in refused.payload["message"]
