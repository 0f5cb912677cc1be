"""The installed ``mosaic`` returns non-zero on every failure path and 0 on success (a subprocess
per case: exit statuses are only real through the console entry point)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mosaic.core.audit import AuditLog
from mosaic.runtime.testing.installed_mosaic import TINY_PRESET, InstalledMosaic

GOOD_EVENT = b'{"type": "Message", "sender": "user", "payload": {"text": "hi"}}\n'


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def run_dir(mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mosaic.train(tmp_path_factory.mktemp("trained"))


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def text(done) -> str:
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


# --- success paths --------------------------------------------------------------------------------


def test_version_and_help_exit_zero(mosaic: InstalledMosaic) -> None:
    assert mosaic("--version").returncode == 0
    assert mosaic("--help").returncode == 0


def test_training_eval_and_events_exit_zero(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path) -> None:
    assert (run_dir / "summary.json").is_file()
    run = copy_run(run_dir, tmp_path)
    evaluated = mosaic("eval", run)
    assert evaluated.returncode == 0, text(evaluated)
    events = mosaic("events", run, "--fresh", "--max-new-bytes", "4", stdin=GOOD_EVENT)
    assert events.returncode == 0, text(events)
    assert json.loads(events.stdout.decode().splitlines()[-1])["type"] == "LedgerSummary"


def test_intact_audit_log_verifies_with_exit_zero(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl", key=b"k" * 32)
    log.append("kind", {"i": 1})
    assert mosaic("audit", "verify", log.path).returncode == 0


# --- failure paths --------------------------------------------------------------------------------


def test_unknown_command_and_bad_option_are_usage_errors(mosaic: InstalledMosaic) -> None:
    assert mosaic("no-such-command").returncode == 2
    assert mosaic("run", "--steps", "zero").returncode == 2


def test_tampered_audit_log_exits_one(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl", key=b"k" * 32)
    for i in range(3):
        log.append("kind", {"i": i})
    lines = log.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    log.path.write_bytes(b"".join(lines))
    done = mosaic("audit", "verify", log.path)
    assert "BAD" in text(done) and "record 2" in text(done)
    assert done.returncode == 1


def test_rejected_tool_exits_one(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    definition = tmp_path / "bad.json"
    definition.write_text(json.dumps({
        "name": "bad", "description": "imports os", "parameters": {"x": {"type": "number"}},
        "implementation": "import os\ndef run(x):\n    return 1\n",
    }))
    done = mosaic("tools", "add", definition, "--registry", tmp_path / "reg", "--key-file", tmp_path / "key")
    assert "rejected" in text(done)
    assert done.returncode == 1


def test_unknown_tool_and_wrong_approval_hash_exit_one(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    options = ["--registry", tmp_path / "reg", "--key-file", tmp_path / "key"]
    assert mosaic("tools", "run", "nothing", *options).returncode == 1
    assert mosaic("tools", "show", "nothing", *options).returncode == 1
    assert mosaic("tools", "approve", "nothing", "--hash", "f" * 64, *options).returncode == 1


def test_tools_layers_exit_status_matches_its_report(mosaic: InstalledMosaic) -> None:
    done = mosaic("tools", "layers")
    assert (done.returncode != 0) == ("UNAVAILABLE" in text(done)), text(done)


def test_tools_layers_exits_one_when_a_layer_is_unavailable(tmp_path: Path) -> None:
    # No layer can be made unavailable from outside on a machine that has them all, so the probe's
    # result is replaced, and the console entry point is called exactly as the installed script does.
    code = textwrap.dedent("""\
        import sys
        from mosaic.runtime.tools import sandbox
        real_run = sandbox.Sandbox.run
        def run(self, *args, **kwargs):
            result = real_run(self, *args, **kwargs)
            result.layers[sandbox.OS_LAYERS[0]] = {"active": False, "detail": "switched off by the test"}
            return result
        sandbox.Sandbox.run = run
        from mosaic.cli.main import main
        sys.argv = ["mosaic", "tools", "layers"]
        sys.exit(main())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert "UNAVAILABLE" in text(done), text(done)
    assert done.returncode == 1


def test_unknown_preset_exits_non_zero(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    done = mosaic("run", "no_such_preset_anywhere", "--out", tmp_path)
    assert done.returncode == 1, text(done)
    assert mosaic("presets", "show", "no_such_preset_anywhere").returncode == 1


def test_invalid_preset_exits_one_for_run_and_validate(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    preset = tmp_path / "bad.yml"
    preset.write_text(TINY_PRESET.replace("lr: 0.001", "lr: fast"))
    ran = mosaic("run", preset, "--out", tmp_path / "runs")
    assert ran.returncode == 1 and "trainer.lr" in text(ran) and "Traceback" not in text(ran)
    validated = mosaic("presets", "validate", "--no-estimate", preset)
    assert validated.returncode == 1 and "Traceback" not in text(validated)


def test_unknown_component_exits_one(mosaic: InstalledMosaic) -> None:
    assert mosaic("components", "show", "model.no_such_model").returncode == 1


def test_missing_run_directory_is_a_usage_error(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in (["eval"], ["events"], ["live"], ["plot"], ["run", "--resume"]):
        done = mosaic(*command, missing)
        assert done.returncode == 2, (command, text(done))


def test_directory_that_is_not_a_run_exits_one(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    for command in (["eval"], ["run", "--resume"], ["events"]):
        done = mosaic(*command, tmp_path, stdin=b"")
        assert done.returncode == 1, (command, text(done))
        assert "Traceback" not in text(done)


def test_corrupt_checkpoint_exits_one_naming_the_file(mosaic: InstalledMosaic, run_dir: Path,
                                                      tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    checkpoints = sorted((run / "checkpoints").glob("step_*.pt"))
    for checkpoint in checkpoints:
        checkpoint.write_bytes(b"not a checkpoint at all")
    for command in (["eval", run], ["run", "--resume", run, "--steps", "4"]):
        done = mosaic(*command, stdin=b"")
        assert done.returncode == 1, (command, text(done))
        assert checkpoints[-1].name in text(done) and "Traceback" not in text(done)


def test_bad_events_input_exits_one_after_the_stream(mosaic: InstalledMosaic, run_dir: Path,
                                                     tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    done = mosaic("events", run, "--fresh", "--max-new-bytes", "4", stdin=b"not an event\n" + GOOD_EVENT)
    assert done.returncode == 1, text(done)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[0]["type"] == "Error" and lines[-1]["type"] == "LedgerSummary"  # the stream went on
    assert lines[-1]["payload"]["input_errors"] == 1
    assert (run / "sessions" / "default" / "session.pt").is_file()  # and the session was saved


def test_bad_session_name_exits_one(mosaic: InstalledMosaic, run_dir: Path) -> None:
    done = mosaic("events", run_dir, "--session", "../escape", stdin=GOOD_EVENT)
    assert done.returncode == 1 and "not a session name" in text(done)


def test_eval_of_a_run_without_eval_section_exits_one(mosaic: InstalledMosaic, run_dir: Path,
                                                      tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().split("  eval:")[0])
    done = mosaic("eval", run)
    assert done.returncode == 1 and "Traceback" not in text(done), text(done)
