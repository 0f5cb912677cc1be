"""MCP endpoints as tool implementations: a small local stdio MCP server (written with the ``mcp``
library's server side) is named by a ToolDefinition, approved by a human, and called through the
official client library under the sandbox's OS layers, end to end over tool events."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.tool_flow import ToolBridge
from mosaic.runtime.tools.definition import ToolDefinition
from mosaic.runtime.tools.registry import open_registry

pytest.importorskip("mcp", reason="needs the optional extra mosaic-runtime[mcp]")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")

SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("mosaic-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    server.run("stdio")
'''


def _other_can_reach(path: str) -> bool:
    """Whether an unprivileged user can execute ``path`` (every directory above it searchable)."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [real, *real.parents])


def _registry(tmp_path: Path):
    from mosaic.runtime.tools.mcp_builder import MCP_LAYERS, McpToolBuilder, McpToolBuilderConfig

    layers = (
        MCP_LAYERS if _other_can_reach(sys.executable) else [x for x in MCP_LAYERS if x != "drop_privileges"]
    )
    builder = McpToolBuilder(McpToolBuilderConfig(required_layers=layers))
    return open_registry(
        tmp_path / "tools",
        key_file=tmp_path / "audit.key",
        approval_key_file=tmp_path / "approval.key",
        builders={"mcp": builder},
    )


def _definition(server: Path, **capabilities) -> dict:
    return {
        "name": "mcp_add",
        "description": "adds two integers on an MCP server",
        "builder": "mcp",
        "parameters": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "mcp": {"tool": "add", "command": [sys.executable, str(server)]},
        "capabilities": {"cpu_seconds": 30, "wall_seconds": 120.0, "memory_bytes": 4 * 2**30, **capabilities},
    }


def _event(event_type: str, payload: dict) -> EventEnvelope:
    return EventEnvelope(event_type, payload, "agent")


@root_only
def test_an_approved_mcp_tool_is_called_end_to_end(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    registry = _registry(tmp_path)
    bridge = ToolBridge(registry)

    [registered] = bridge.execute(_event("ToolDefinition", _definition(server)))
    assert registered.type == "ToolRegistered" and registered.payload["state"] == "pending-approval"
    assert "MCP endpoint" in registered.payload["reasons"][0]
    [refused] = bridge.execute(_event("ToolCall", {"tool": "mcp_add", "arguments": {"a": 2, "b": 40}}))
    assert refused.type == "ToolError" and "pending-approval" in refused.payload["message"]

    registry.approve("mcp_add", registered.payload["hash"])
    [result] = bridge.execute(_event("ToolCall", {"tool": "mcp_add", "arguments": {"a": 2, "b": 40}}))
    assert result.type == "ToolResult", result.payload
    assert result.payload["value"] == 42
    # the server ran under the OS layers: without network, in its own PID namespace, under Landlock
    layers = registry.builders["mcp"].build(registry.get("mcp_add").definition)({"a": 1, "b": 1}).layers
    for layer in (
        "network_namespace",
        "pid_namespace",
        "mount_namespace",
        "rlimits",
        "no_new_privs",
        "landlock",
    ):
        assert layers[layer]["active"] is True, (layer, layers[layer])


@root_only
def test_network_reaches_a_stdio_server_only_when_the_approval_grants_it(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    registry = _registry(tmp_path)
    record = registry.submit(ToolDefinition.from_json_dict(_definition(server, network=True)))
    assert "network" in record.reasons[0]
    registry.approve("mcp_add", record.hash)
    result = registry.call("mcp_add", {"a": 1, "b": 2})
    assert result.value == 3
    assert result.layers["network_namespace"]["active"] is False
    assert "granted by the approval" in result.layers["network_namespace"]["detail"]


def test_mcp_definitions_always_need_approval_and_a_url_needs_network() -> None:
    stdio = ToolDefinition.from_json_dict(
        {
            "name": "t",
            "description": "d",
            "builder": "mcp",
            "mcp": {"tool": "add", "command": ["/usr/bin/true"]},
        }
    )
    assert stdio.validate() == [] and stdio.requires_approval()
    url = ToolDefinition.from_json_dict(
        {
            "name": "t",
            "description": "d",
            "builder": "mcp",
            "mcp": {"tool": "add", "url": "http://127.0.0.1:9/mcp"},
        }
    )
    assert any("capabilities.network" in p for p in url.validate())
    granted = ToolDefinition.from_json_dict(
        {
            "name": "t",
            "description": "d",
            "builder": "mcp",
            "mcp": {"tool": "add", "url": "http://127.0.0.1:9/mcp"},
            "capabilities": {"network": True},
        }
    )
    assert granted.validate() == [] and "network" in granted.approval_reasons()
    python_with_network = ToolDefinition.from_json_dict(
        {
            "name": "t",
            "description": "d",
            "implementation": "def run():\n    return 1",
            "capabilities": {"network": True},
        }
    )
    assert any("only MCP endpoints" in p for p in python_with_network.validate())
    both = ToolDefinition.from_json_dict(
        {
            "name": "t",
            "description": "d",
            "builder": "mcp",
            "mcp": {"tool": "add", "command": ["/usr/bin/true"], "url": "http://x"},
        }
    )
    assert any("exactly one server" in p for p in both.validate())
