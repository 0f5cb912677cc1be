"""The installed ``mosaic`` returns non-zero when an audit log fails verification, a head cannot be
printed or a tool is rejected (run as a subprocess, the way a script or CI job would)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.core.audit import AuditLog

MOSAIC = shutil.which("mosaic", path=str(Path(sys.executable).parent)) or shutil.which("mosaic")


def _mosaic(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOSAIC_KEY_DIR": str(tmp_path / "keys")}
    return subprocess.run([MOSAIC, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def signed_log(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s" * 32)
    log = AuditLog(tmp_path / "log.jsonl", key=key_file.read_bytes())
    for i in range(3):
        log.append("k", {"i": i})
    return log, key_file


def test_audit_verify_and_head_exit_codes(tmp_path, signed_log):
    assert MOSAIC, "the mosaic console script is not installed"
    log, key_file = signed_log
    head = _mosaic(tmp_path, "audit", "head", str(log.path), "--key-file", str(key_file))
    assert head.returncode == 0, head.stderr
    token = head.stdout.strip()
    ok = _mosaic(tmp_path, "audit", "verify", str(log.path), "--key-file", str(key_file), "--expect-head", token)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join([lines[0], lines[1].replace(b'"i":1', b'"i":7'), lines[2]]))
    bad = _mosaic(tmp_path, "audit", "verify", str(log.path), "--key-file", str(key_file))
    assert bad.returncode == 1 and "BAD" in bad.stdout
    assert _mosaic(tmp_path, "audit", "head", str(log.path), "--key-file", str(key_file)).returncode == 1

    log.path.write_bytes(b"".join(lines[:2]))  # truncated below the published head
    rolled = _mosaic(tmp_path, "audit", "verify", str(log.path), "--no-key", "--expect-head", token)
    assert rolled.returncode == 1 and "truncated" in rolled.stdout
    malformed = _mosaic(tmp_path, "audit", "verify", str(log.path), "--expect-head", "nonsense")
    assert malformed.returncode == 2 and "--expect-head" in malformed.stderr  # a usage mistake


def test_tools_add_of_a_rejected_tool_exits_1(tmp_path):
    definition = tmp_path / "bad.json"
    definition.write_text(
        json.dumps({"name": "peek", "description": "d", "implementation": "import os\ndef run():\n    return 1\n"})
    )
    result = _mosaic(tmp_path, "tools", "add", str(definition), "--registry", str(tmp_path / "reg"))
    assert result.returncode == 1 and "rejected" in result.stdout
