"""Hostile presets through the installed ``mosaic``: ``presets validate`` exits 1 with one clean
``$.path (line N)`` report, ``run`` exits non-zero and leaves no run directory, neither hangs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MOSAIC = str(Path(sys.executable).with_name("mosaic"))


def laughs() -> str:
    text = 'version: 2\nname: x\nl0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in range(1, 10):
        text += f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]\n"
    return text


HOSTILE = [
    ("billion laughs", laughs(), "$ (line 3): aliases expand to more than 100,000 values"),
    ("self-referencing alias", "version: 2\nname: x\ntargets: &t [*t]\n",
     "$.targets[0] (line 3): an alias refers to the mapping or list that contains it"),
    ("deep nesting", "version: 2\nname: x\ntargets: " + "[" * 3000 + "]" * 3000 + "\n",
     "$ (line 3): nested more than 64 levels deep"),
    ("python tag", "version: 2\nname: !!python/name:os.system x\ntargets: []\n",
     "$.name (line 2): the YAML tag !!python/name:os.system is not allowed"),
    ("merge key", "version: 2\nname: x\nvars: &v {a: 1}\ntargets:\n  - <<: *v\n",
     "$.targets[0] (line 5): merge keys (<<) are not supported"),
    ("non-UTF-8", b"version: 2\nname: caf\xe9\ntargets: []\n", "$ (line 2): not UTF-8: byte 0xe9"),
    ("400-digit step count", "version: 2\nname: x\nvars:\n  steps: " + "9" * 400 + "\ntargets: []\n",
     "$.vars.steps (line 4): integer of 400 digits is out of range"),
]


def mosaic(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MOSAIC, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(("kind", "content", "report"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_installed_mosaic_rejects_hostile_presets_cleanly(tmp_path: Path, kind: str, content: str | bytes,
                                                          report: str) -> None:
    preset = tmp_path / "bad.yml"
    preset.write_bytes(content if isinstance(content, bytes) else content.encode())
    validated = mosaic("presets", "validate", "--no-estimate", str(preset), cwd=tmp_path)
    assert validated.returncode == 1, validated
    assert f"FAIL {preset}" in validated.stdout and report in validated.stdout, validated.stdout
    assert "Traceback" not in validated.stdout + validated.stderr
    ran = mosaic("run", str(preset), "--out", str(tmp_path / "runs"), "--no-progress", cwd=tmp_path)
    assert ran.returncode != 0, ran
    assert report in ran.stdout + ran.stderr and "Traceback" not in ran.stdout + ran.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_set_variable_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    preset = tmp_path / "p.yml"
    preset.write_text("version: 2\nname: x\nvars:\n  d_model: 64\ntargets: []\n")
    shown = mosaic("presets", "show", str(preset), "--set", "vars.d_modle=128", cwd=tmp_path)
    assert shown.returncode == 1, shown
    assert "the preset declares no variable 'd_modle' (did you mean vars.d_model?)" in shown.stderr + shown.stdout
