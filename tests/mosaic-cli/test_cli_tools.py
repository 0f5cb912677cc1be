"""The ``mosaic audit`` and ``mosaic tools`` command groups."""

from __future__ import annotations

from click.testing import CliRunner

from mosaic.cli.commands.audit import audit
from mosaic.cli.main import BUILTIN_COMMANDS
from mosaic.core.audit import AuditLog


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
    result = CliRunner().invoke(audit, ["verify", str(log.path)])
    assert result.exit_code == 0
    assert "NOT verified" in result.output
