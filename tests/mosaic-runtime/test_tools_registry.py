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
from mosaic.runtime.tools.names import name_skeleton
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


APPROVAL_KEY = b"a" * 32


def make_registry(tmp_path, clock, approval_key=APPROVAL_KEY, **config):
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    return ToolRegistry(
        tmp_path / "reg",
        builders={"python": PythonToolBuilder()},
        audit=audit,
        config=ToolRegistryConfig(**config),
        clock=clock,
        approval_key=approval_key,
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


@pytest.mark.parametrize(("edit", "said"), [
    (lambda tool: tool.update(reasons=[{"a": 1}]), "reasons must be a list of strings"),
    (lambda tool: tool.update(approval_mac=[1]), "approval_mac must be a string"),
], ids=["reasons", "approval-mac"])
def test_a_registry_record_of_the_wrong_types_is_corrupt_not_a_traceback(tmp_path, clock, edit, said):
    registry = make_registry(tmp_path, clock)
    registry.submit(add_tool())
    path = tmp_path / "reg" / "tools.json"
    state = json.loads(path.read_text())
    edit(state["tools"]["add"])
    path.write_text(json.dumps(state))
    with pytest.raises(ToolError, match=f"tool registry {path} is corrupt: .*{said}"):
        registry.list()


def test_a_tool_listed_under_another_name_is_corrupt(tmp_path, clock):
    """Listed as one name and run under another: `tools list` showed 'add', `tools run add` found nothing."""
    registry = make_registry(tmp_path, clock)
    registry.submit(add_tool())
    path = tmp_path / "reg" / "tools.json"
    state = json.loads(path.read_text())
    state["tools"]["renamed"] = state["tools"].pop("add")
    path.write_text(json.dumps(state))
    with pytest.raises(ToolError, match="the tool listed as 'renamed' holds the definition of 'add'"):
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


def test_python_builder_is_registered_as_a_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_KEY_DIR", str(tmp_path / "keys"))
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.tools.registry import installed_builders, open_registry

    component = get_registry().get("tool_builder.python")
    assert "sandbox" in component.summary
    assert isinstance(installed_builders()["python"], PythonToolBuilder)
    registry = open_registry(tmp_path / "r")
    assert "python" in registry.builders
    assert not (tmp_path / "r" / "audit.key").exists(), "keys never live beside the registry by default"
    assert (tmp_path / "keys" / "audit.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "tool-approval.key").stat().st_mode & 0o777 == 0o600


# --- hostile registrations (issue 17 item 8) -------------------------------------------------------


@pytest.mark.parametrize(
    "lookalike",
    ["\u0430dd", "\uff41dd", "ad\u0501", "a\u0301dd", "\u0251dd"],
    ids=["cyrillic-a", "fullwidth-a", "cyrillic-d", "combining-accent", "latin-alpha"],
)
def test_look_alike_names_collide(tmp_path, clock, lookalike):
    registry = make_registry(tmp_path, clock)
    assert registry.submit(add_tool("add")).state is ToolState.ACTIVE
    record = registry.submit(add_tool(lookalike))
    assert record.state is ToolState.REJECTED
    assert any("looks like" in r or "NFKC" in r for r in record.reasons), record.reasons
    assert [r.definition.name for r in registry.list() if r.state is not ToolState.REJECTED] == ["add"]


def test_name_skeleton_is_stable_for_plain_names():
    assert name_skeleton("word_count") == name_skeleton("word_count")
    assert name_skeleton("add") != name_skeleton("sub")
    assert name_skeleton("\u0430dd") == name_skeleton("add") == name_skeleton("ADD")


def test_rejected_definitions_are_bounded_in_size_and_number(tmp_path, clock):
    registry = make_registry(tmp_path, clock, max_submissions_per_window=20, max_rejected_records=5)
    huge = ToolDefinition(name="huge", description="x" * 2**20, implementation="def run():\n    return 1\n")
    for index in range(30):
        record = registry.submit(attrs.evolve(huge, name=f"huge{index}"))
        assert record.state is ToolState.REJECTED
    for index in range(40):
        registry.submit(ToolDefinition(name=f"bad{index}", description="", implementation="x"))
    size = (tmp_path / "reg" / "tools.json").stat().st_size
    assert size < 64 * 1024, f"tools.json grew to {size} bytes"
    assert len(registry.list()) <= 5
    limited = registry.submit(add_tool("fine"))
    assert limited.state is ToolState.REJECTED and any("submissions" in r for r in limited.reasons)


def test_control_and_bidi_characters_are_escaped_before_the_audit_log(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    registry.submit(ToolDefinition(name="evil\u202etxt.py\x1b[2J", description="d", implementation="x"))
    raw = registry.audit.path.read_bytes()
    assert "\u202e".encode() not in raw and b"\x1b" not in raw
    assert b"\\\\u202e" in raw  # the escape itself, JSON-encoded
    assert verify_log(registry.audit.path, key=KEY).ok


def test_editing_the_state_file_cannot_self_approve(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    record = registry.submit(add_tool("slow", cpu_seconds=3))
    assert record.state is ToolState.PENDING
    state_file = tmp_path / "reg" / "tools.json"
    state = json.loads(state_file.read_text())
    state["tools"]["slow"].update(state="active", approved_hash=record.hash, approval_mac="0" * 64)
    state_file.write_text(json.dumps(state))
    with pytest.raises(ToolStateError, match="approval"):
        registry.call("slow", {"a": 1})
    # a registry without the approval key can neither approve nor run approved tools
    keyless = make_registry(tmp_path, clock, approval_key=None)
    with pytest.raises(ToolStateError, match="approval key"):
        keyless.call("slow", {"a": 1})


@root_only
def test_an_authenticated_approval_runs_and_another_key_voids_it(tmp_path, clock):
    registry = make_registry(tmp_path, clock)
    record = registry.submit(add_tool("slow", cpu_seconds=3))
    registry.approve("slow", record.hash)
    assert registry.call("slow", {"a": 1}).value == 2
    other = make_registry(tmp_path, clock, approval_key=b"b" * 32)
    with pytest.raises(ToolStateError, match="approval"):
        other.call("slow", {"a": 1})
