"""The ``mosaic audit`` and ``mosaic tools`` command groups."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from mosaic.cli.commands.audit import audit
from mosaic.cli.commands.tools import tools
from mosaic.cli.main import BUILTIN_COMMANDS
from mosaic.core.audit import AuditLog
from mosaic.core.errors import ToolError


def test_audit_group_is_a_builtin_command():
    assert BUILTIN_COMMANDS["audit"][0] == "mosaic.cli.commands.audit:audit"


def test_audit_verify_reports_ok_and_first_bad_record(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s" * 32)
    log = AuditLog(tmp_path / "log.jsonl", key=key_file.read_bytes())
    for i in range(3):
        log.append("k", {"i": i})
    runner = CliRunner()
    ok = runner.invoke(audit, ["verify", str(log.path), "--key-file", str(key_file)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output and "3 records" in ok.output and "signature verified" in ok.output

    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    log.path.write_bytes(b"".join(lines))
    bad = runner.invoke(audit, ["verify", str(log.path), "--key-file", str(key_file)])
    assert bad.exit_code == 1
    assert "BAD" in bad.output and "record 2" in bad.output


def test_audit_verify_without_key_says_signature_unchecked(tmp_path):
    log = AuditLog(tmp_path / "log.jsonl", key=b"q" * 32)
    log.append("k", {})
    result = CliRunner(env={"MOSAIC_KEY_DIR": str(tmp_path / "keys")}).invoke(audit, ["verify", str(log.path)])
    assert result.exit_code == 0
    assert "NOT verified" in result.output


# --- mosaic tools ---------------------------------------------------------------------------------

WIDE = {
    "name": "cube",
    "description": "cubes a number",
    "parameters": {"x": {"type": "number"}},
    "implementation": "def run(x):\n    print('cubing\\x1b[2J')\n    return x ** 3\n",
    "capabilities": {"cpu_seconds": 3},
}


def _invoke(tmp_path, *args):
    base = ["--registry", str(tmp_path / "reg"), "--key-file", str(tmp_path / "key")]
    return CliRunner(env={"MOSAIC_KEY_DIR": str(tmp_path / "keys")}).invoke(tools, [*args, *base])


def test_tools_group_is_a_builtin_command():
    assert BUILTIN_COMMANDS["tools"][0] == "mosaic.cli.commands.tools:tools"


@pytest.mark.skipif(os.geteuid() != 0, reason="running tools needs the root-only OS layers")
def test_tools_add_show_approve_run_revoke(tmp_path):
    definition_file = tmp_path / "cube.json"
    definition_file.write_text(json.dumps(WIDE))
    added = _invoke(tmp_path, "add", str(definition_file))
    assert added.exit_code == 0 and "pending-approval" in added.output
    digest = added.output.split()[2]

    listed = _invoke(tmp_path, "list", "--json")
    assert json.loads(listed.output) == [
        {
            "name": "cube",
            "state": "pending-approval",
            "hash": digest,
            "calls": 0,
            "reasons": ["needs approval: cpu_seconds 3 > default 2"],
        }
    ]
    shown = _invoke(tmp_path, "show", "cube")
    assert digest in shown.output and "\\x1b[2J" in shown.output and "\x1b" not in shown.output

    refused = _invoke(tmp_path, "approve", "cube", "--hash", "f" * 64)
    assert refused.exit_code != 0 and "approval refused" in str(refused.exception)
    approved = _invoke(tmp_path, "approve", "cube", "--hash", digest)
    assert approved.exit_code == 0 and "active" in approved.output

    ran = _invoke(tmp_path, "run", "cube", "--args", '{"x": 3}', "--layers")
    result = json.loads(ran.output)
    assert result["value"] == 27 and result["stdout"] == "cubing\x1b[2J\n"
    assert "\x1b" not in ran.output  # JSON output is ASCII-escaped
    assert all(result["layers"].values())

    revoked = _invoke(tmp_path, "revoke", "cube", "--reason", "no longer needed")
    assert "rejected" in revoked.output
    assert _invoke(tmp_path, "run", "cube", "--args", '{"x": 3}').exit_code != 0
    assert AuditLog(tmp_path / "reg" / "audit.jsonl", key=(tmp_path / "key").read_bytes()).verify().ok


def test_tools_add_rejects_with_reasons_and_list_when_empty(tmp_path):
    assert "no tools registered" in _invoke(tmp_path, "list").output
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({**WIDE, "name": "bad name", "implementation": "import os\ndef run(x):\n    return 1\n"})
    )
    result = _invoke(tmp_path, "add", str(bad))
    assert result.exit_code == 1 and "rejected" in result.output and "'os'" in result.output


def test_tools_run_rejects_non_object_arguments(tmp_path):
    result = CliRunner(env={"MOSAIC_KEY_DIR": str(tmp_path / "keys")}).invoke(
        tools,
        ["run", "x", "--args", "[1]", "--registry", str(tmp_path / "r"), "--key-file", str(tmp_path / "k")],
    )
    assert result.exit_code == 2 and "JSON object" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")
def test_tools_layers_reports_every_layer(tmp_path):
    result = CliRunner().invoke(tools, ["layers", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for layer in ("landlock", "seccomp", "network_namespace", "drop_privileges", "ast_gate", "supervision"):
        assert report[layer]["active"], layer


# --- anchoring (issue 17 item 9) -------------------------------------------------------------------


def _audit(tmp_path, *args):
    return CliRunner(env={"MOSAIC_KEY_DIR": str(tmp_path / "keys")}).invoke(audit, list(args))


def test_audit_head_and_expect_head_detect_rewrite_truncation_and_rollback(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s" * 32)
    log = AuditLog(tmp_path / "log.jsonl", key=key_file.read_bytes())
    for i in range(3):
        log.append("k", {"i": i})
    printed = _audit(tmp_path, "head", str(log.path), "--key-file", str(key_file))
    assert printed.exit_code == 0, printed.output
    head = printed.output.strip()
    assert head.startswith("3:") and len(head) == 2 + 64
    old = log.path.read_bytes(), log.checkpoint_path.read_bytes()
    log.append("k", {"i": 3})
    later = _audit(tmp_path, "head", str(log.path), "--key-file", str(key_file)).output.strip()
    ok = _audit(tmp_path, "verify", str(log.path), "--key-file", str(key_file), "--expect-head", head)
    assert ok.exit_code == 0 and "extends the published head" in ok.output

    log.path.write_bytes(old[0])  # rollback to the older, correctly signed state
    log.checkpoint_path.write_bytes(old[1])
    assert _audit(tmp_path, "verify", str(log.path), "--key-file", str(key_file)).exit_code == 0
    rolled = _audit(tmp_path, "verify", str(log.path), "--key-file", str(key_file), "--expect-head", later)
    assert rolled.exit_code == 1 and "BAD" in rolled.output and "rolled back" in rolled.output

    lines = log.path.read_bytes().splitlines(keepends=True)  # truncation
    log.path.write_bytes(b"".join(lines[:1]))
    truncated = _audit(tmp_path, "verify", str(log.path), "--no-key", "--expect-head", head)
    assert truncated.exit_code == 1 and "truncated" in truncated.output

    log.checkpoint_path.unlink()  # rewrite everything and drop the checkpoint
    log.path.unlink()
    forged = AuditLog(log.path)
    for i in range(3):
        forged.append("k", {"i": i, "forged": True})
    rewritten = _audit(tmp_path, "verify", str(log.path), "--key-file", str(key_file))
    assert rewritten.exit_code == 1 and "no signed checkpoint" in rewritten.output
    assert _audit(tmp_path, "verify", str(log.path), "--no-key", "--expect-head", head).exit_code == 1
    assert _audit(tmp_path, "head", str(log.path), "--key-file", str(key_file)).exit_code == 1


def test_audit_verify_uses_the_user_key_directory_by_default(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "audit.key").write_bytes(b"u" * 32)
    log = AuditLog(tmp_path / "log.jsonl", key=b"u" * 32)
    log.append("k", {})
    result = _audit(tmp_path, "verify", str(log.path))
    assert result.exit_code == 0 and "signature verified" in result.output
    (tmp_path / "keys" / "audit.key").write_bytes(b"v" * 32)
    assert _audit(tmp_path, "verify", str(log.path)).exit_code == 1
    assert _audit(tmp_path, "verify", str(log.path), "--expect-head", "zz").exit_code != 0


def test_tools_keys_stay_out_of_the_registry_directory(tmp_path):
    result = CliRunner(env={"MOSAIC_KEY_DIR": str(tmp_path / "keys")}).invoke(
        tools, ["list", "--registry", str(tmp_path / "reg")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["audit.key", "tool-approval.key"]
    assert not list((tmp_path / "reg").glob("*.key"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")
@pytest.mark.parametrize("layer", ["seccomp", "drop_privileges"])
def test_tools_layers_exits_1_when_a_layer_does_not_take_effect(monkeypatch, layer):
    """Issue 17 (1, 5): `tools layers` printed UNAVAILABLE and exited 0; a layer without effect must
    show as unavailable (drop_privileges: the child refuses outright and says what it verified)."""
    import functools

    import mosaic.runtime.tools.sandbox as sandbox_module

    policy = functools.partial(sandbox_module.SandboxPolicy, skip_layer_calls_for_testing={layer})
    monkeypatch.setattr(sandbox_module, "SandboxPolicy", policy)
    result = CliRunner().invoke(tools, ["layers", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report[layer]["active"] is False
    assert report["network_namespace"]["active"] is True


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"name": "x", "description": "' + b"d" * 2**21 + b'"}', b"\xff\xfe{", b"{"],
    ids=["deep", "oversized", "not-utf8", "not-json"],
)
def test_tools_add_refuses_hostile_files_with_one_message(tmp_path, content):
    definition = tmp_path / "hostile.json"
    definition.write_bytes(content)
    result = _invoke(tmp_path, "add", str(definition))
    assert result.exit_code != 0
    assert isinstance(result.exception, (SystemExit, ToolError)), repr(result.exception)
    assert not (tmp_path / "reg" / "tools.json").exists()


def test_tools_run_refuses_deeply_nested_arguments_as_a_usage_error(tmp_path):
    result = _invoke(tmp_path, "run", "x", "--args", "[" * 50_000 + "]" * 50_000)
    assert result.exit_code == 2 and "not JSON" in result.output
