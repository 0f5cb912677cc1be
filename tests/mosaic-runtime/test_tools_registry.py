"""ToolDefinition validation and the persistent ToolRegistry: states, rate limit, approval bound to
the definition hash, automatic deprecation, crash-safe state and the audit trail."""

from __future__ import annotations

import json
import os

import attrs
import pytest

from mosaic.core.audit import AuditLog, verify_log
from mosaic.core.errors import ToolError
from mosaic.runtime.tools.definition import ParameterSpec, ToolCapabilities, ToolDefinition, definition_hash
from mosaic.runtime.tools.errors import ToolStateError
from mosaic.runtime.tools.python_builder import PythonToolBuilder
from mosaic.runtime.tools.registry import ToolRegistry, ToolRegistryConfig, ToolState

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="running tools needs the root-only OS layers")
KEY = b"r" * 32


class Clock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self):
        return self.now


def add_tool(name="add", **capabilities):
    return ToolDefinition(
        name=name,
        description="adds two integers",
        parameters={"a": ParameterSpec("integer"), "b": ParameterSpec("integer", required=False, default=1)},
        implementation="def run(a, b):\n    return a + b\n",
        capabilities=ToolCapabilities(**capabilities),
    )


@pytest.fixture
def clock():
    return Clock()


def make_registry(tmp_path, clock, **config):
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    return ToolRegistry(
        tmp_path / "reg",
        builders={"python": PythonToolBuilder()},
        audit=audit,
        config=ToolRegistryConfig(**config),
        clock=clock,
    )


def test_validate_returns_every_problem():
    bad = ToolDefinition(
        name="not valid",
        description="",
        implementation="",
        parameters={
            "x": ParameterSpec("complex"),
            "y": ParameterSpec("integer", required=True, default=3),
            "z": ParameterSpec("integer", required=False, default="three"),
        },
        capabilities=ToolCapabilities(allowed_imports=("os", "_thread"), network=True, cpu_seconds=-1),
        sandbox=False,
    )
    problems = bad.validate()
    for fragment in (
        "name:",
        "description:",
        "parameters.x.type",
        "parameters.y:",
        "parameters.z.default",
        "implementation:",
        "'os'",
        "'_thread'",
        "network",
        "cpu_seconds",
        "sandbox",
    ):
        assert any(fragment in p for p in problems), fragment
    assert add_tool().validate() == []


def test_arguments_are_checked_and_defaults_filled():
    tool = add_tool()
    assert tool.bind_arguments({"a": 2}) == {"a": 2, "b": 1}
    with pytest.raises(ToolError) as info:
        tool.bind_arguments({"c": 1})
    assert "unknown parameter 'c'" in str(info.value) and "missing required parameter 'a'" in str(info.value)
    with pytest.raises(ToolError, match="expected integer"):
        tool.bind_arguments({"a": True})


def test_hash_covers_source_and_manifest():
    base = add_tool()
    edited = attrs.evolve(base, implementation=base.implementation + "# edit\n")
    widened = attrs.evolve(base, capabilities=ToolCapabilities(cpu_seconds=3))
    assert len({definition_hash(base), definition_hash(edited), definition_hash(widened)}) == 3
    assert definition_hash(ToolDefinition.from_json_dict(base.to_json_dict())) == definition_hash(base)


@root_only
def test_default_profile_tool_is_active_and_runs(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    record = registry.submit(add_tool())
    assert record.state is ToolState.ACTIVE
    assert registry.call("add", {"a": 2, "b": 5}).value == 7
    assert registry.get("add").calls == 1


def test_invalid_definitions_are_rejected_with_every_reason(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    bad = ToolDefinition(name="peek", description="", implementation="import os\ndef run():\n    return 1\n")
    record = registry.submit(bad)
    assert record.state is ToolState.REJECTED
    assert len(record.reasons) == 2
    with pytest.raises(ToolStateError, match="rejected"):
        registry.call("peek", {})


@root_only
def test_approval_is_bound_to_the_definition_hash(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    record = registry.submit(add_tool("slow", cpu_seconds=3))
    assert record.state is ToolState.PENDING and "cpu_seconds" in record.reasons[0]
    with pytest.raises(ToolStateError, match="pending"):
        registry.call("slow", {"a": 1})
    with pytest.raises(ToolStateError, match="approval refused"):
        registry.approve("slow", "0" * 64)
    registry.approve("slow", record.hash)
    assert registry.call("slow", {"a": 1}).value == 2

    # Edit the stored source behind the registry's back: the approval no longer applies.
    state_file = tmp_path / "reg" / "tools.json"
    state = json.loads(state_file.read_text())
    state["tools"]["slow"]["definition"]["implementation"] = "def run(a, b):\n    return 'evil'\n"
    state_file.write_text(json.dumps(state))
    with pytest.raises(ToolStateError, match="hash"):
        registry.call("slow", {"a": 1})
    state["tools"]["slow"]["hash"] = definition_hash(
        ToolDefinition.from_json_dict(state["tools"]["slow"]["definition"])
    )
    state_file.write_text(json.dumps(state))
    with pytest.raises(ToolStateError, match="approval is void"):
        registry.call("slow", {"a": 1})


def test_rate_limit_on_creation_per_window(tmp_path, clock):
    registry = make_registry(tmp_path, clock, max_creations_per_window=2, window_seconds=60)
    assert registry.submit(add_tool("t1")).state is ToolState.ACTIVE
    assert registry.submit(add_tool("t2")).state is ToolState.ACTIVE
    limited = registry.submit(add_tool("t3"))
    assert limited.state is ToolState.REJECTED and "rate limit" in limited.reasons[0]
    clock.now += 61
    assert registry.submit(add_tool("t3")).state is ToolState.ACTIVE


@root_only
def test_unused_tools_are_deprecated_by_calls_and_by_time(tmp_path, clock):
    registry = make_registry(tmp_path, clock, deprecate_after_idle_calls=2, deprecate_after_idle_seconds=100)
    for name in ("busy", "idle"):
        registry.submit(add_tool(name))
    registry.call("busy", {"a": 1})
    assert registry.get("idle").state is ToolState.ACTIVE
    registry.call("busy", {"a": 1})
    assert registry.get("idle").state is ToolState.DEPRECATED
    assert "unused for 2 calls" in registry.get("idle").reasons[0]
    with pytest.raises(ToolStateError, match="deprecated"):
        registry.call("idle", {"a": 1})
    clock.now += 101
    assert registry.sweep() == ["busy"]


def test_duplicate_names_revoke_and_resubmit(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    registry.submit(add_tool())
    duplicate = registry.submit(add_tool())
    assert duplicate.state is ToolState.REJECTED and "already active" in duplicate.reasons[0]
    assert registry.get("add").state is ToolState.ACTIVE
    assert registry.revoke("add", "misbehaved").state is ToolState.REJECTED
    assert registry.submit(add_tool()).state is ToolState.ACTIVE


def test_state_survives_restart_and_ignores_a_torn_temp_file(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    registry.submit(add_tool())
    (tmp_path / "reg" / ".tools.json.999.tmp").write_text("{ torn")
    reopened = make_registry(tmp_path, clock)
    assert [r.definition.name for r in reopened.list()] == ["add"]
    assert reopened.get("add").definition == add_tool()


def test_corrupt_state_is_a_typed_error(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    (tmp_path / "reg" / "tools.json").write_text("{not json")
    with pytest.raises(ToolError, match="corrupt"):
        registry.list()


def test_every_transition_is_in_the_verified_audit_log(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    first = registry.submit(add_tool("wide", cpu_seconds=3))
    registry.approve("wide", first.hash)
    registry.deprecate("wide", "superseded")
    registry.submit(ToolDefinition(name="bad", description="", implementation="x"))
    records = list(registry.audit.records())
    moves = [(r.data["tool"], r.data["from"], r.data["to"]) for r in records]
    assert moves == [
        ("wide", None, "pending-approval"),
        ("wide", "pending-approval", "active"),
        ("wide", "active", "deprecated"),
        ("bad", None, "rejected"),
    ]
    assert all(r.kind == "tool.transition" and r.data["hash"] for r in records)
    assert verify_log(registry.audit.path, key=KEY).ok


def test_python_builder_is_registered_as_a_plugin(tmp_path):
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.tools.registry import installed_builders, open_registry

    component = get_registry().get("tool_builder.python")
    assert "sandbox" in component.summary
    assert isinstance(installed_builders()["python"], PythonToolBuilder)
    registry = open_registry(tmp_path / "r")
    assert "python" in registry.builders
    assert (tmp_path / "r" / "audit.key").stat().st_mode & 0o777 == 0o600
