"""Bad options and damaged run directories, through the installed ``mosaic``: each is one clear
error with the right exit code (2 a usage mistake, 1 a file the toolkit refuses), never a
traceback, and nothing outside what the command owns is written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from mosaic.runtime.testing.installed_mosaic import TINY_PRESET, InstalledMosaic

EVENT = b'{"type": "Message", "sender": "user", "payload": {"text": "hi"}}\n'


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def trained(mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mosaic.train(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained run, free to damage."""
    copy = tmp_path / "runs" / "exit_tiny" / "run"  # laid out as `mosaic runs list` reads a root
    shutil.copytree(trained, copy, symlinks=True)
    return copy


def said(done) -> str:
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def refused(done, status: int, *fragments: str) -> None:
    text = said(done)
    assert done.returncode == status, text
    assert "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text


# --- options click used to let through ---------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["generate", "--prompt", "hi", "--temperature", "nan"],
    ["generate", "--prompt", "hi", "--seed", str(2**64)],
    ["generate", "--prompt", "hi", "--seed", str(-(2**63) - 1)],
    ["events", "--temperature", "nan"],
    ["events", "--seed", str(2**64)],
    ["live", "--no-stdin", "--max-ticks", "1", "--prune-below", "nan"],
    ["live", "--no-stdin", "--max-ticks", "1", "--refresh-above", "nan"],
], ids=["generate-nan", "generate-seed-high", "generate-seed-low", "events-nan", "events-seed", "live-prune",
        "live-refresh"])
def test_non_finite_numbers_and_seeds_torch_refuses_are_usage_errors(mosaic: InstalledMosaic, tmp_path: Path,
                                                                    command: list[str]) -> None:
    refused(mosaic(command[0], tmp_path, *command[1:], stdin=EVENT), 2, "Invalid value")


@pytest.mark.parametrize("name,why", [("x.txt", "PNG"), ("plain", "PNG"), ("missing/x.png", "does not exist")])
def test_chrono_report_plot_takes_a_png_in_a_directory_that_exists(mosaic: InstalledMosaic, run: Path,
                                                                   tmp_path: Path, name: str, why: str) -> None:
    refused(mosaic("chrono", "report", run, "--plot", tmp_path / name), 2, why)
    assert not (tmp_path / f"{name}.png").exists()


def test_a_preset_and_resume_together_are_a_usage_error(mosaic: InstalledMosaic, run: Path) -> None:
    refused(mosaic("run", "mosaic_vm", "--resume", run), 2, "not both")


# --- names that become paths -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "/abs", "..", "a/b", ""])
def test_a_preset_name_is_one_safe_path_component(mosaic: InstalledMosaic, tmp_path: Path, name: str) -> None:
    preset = tmp_path / "p.yml"
    preset.write_text(TINY_PRESET)
    done = mosaic("run", preset, "--out", tmp_path / "runs", "--set", f"name={name!r}")
    refused(done, 1, "$.name")
    assert not (tmp_path / "escape").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.yml"]


def test_a_sweep_study_name_cannot_leave_the_sweep_directory(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    done = mosaic("sweep", "mosaic_vm", "--grid", "trainer.lr=0.1", "--study", "../../x", "--out", tmp_path / "o")
    refused(done, 1, "not a study name")
    assert list(tmp_path.iterdir()) == []


def test_a_deep_override_key_is_refused_by_its_depth(mosaic: InstalledMosaic) -> None:
    refused(mosaic("presets", "show", "mosaic_vm", "--set", "a." * 500 + "b=1"), 2, "nests at most")


# --- damaged run directories ---------------------------------------------------------------------


def test_a_symlinked_lock_is_refused_and_its_target_untouched(mosaic: InstalledMosaic, run: Path,
                                                               tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    for command in (["run", "--resume", run, "--steps", "3"], ["eval", run]):
        refused(mosaic(*command), 1, "symbolic link")
    assert victim.read_text() == "precious"


def test_a_log_planted_as_a_fifo_is_refused_without_waiting(mosaic: InstalledMosaic, run: Path) -> None:
    # opening a FIFO for writing waits for a reader: the resume hung for ever before the check
    (run / "events.log").unlink()
    os.mkfifo(run / "events.log")
    refused(mosaic("run", "--resume", run, "--steps", "3", timeout=60), 1, "not a regular file")


def test_a_symlinked_log_is_not_appended_to(mosaic: InstalledMosaic, run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / "events.log").unlink()
    (run / "events.log").symlink_to(victim)
    refused(mosaic("run", "--resume", run, "--steps", "3"), 1, "symbolic link")
    assert victim.read_text() == "precious"


def test_resume_sets_unreadable_newer_checkpoints_aside_so_pruning_keeps_the_good_ones(
        mosaic: InstalledMosaic, run: Path) -> None:
    checkpoints = run / "checkpoints"
    good = sorted(p.name for p in checkpoints.glob("step_*.pt"))
    (checkpoints / "step_00000099.pt").write_bytes(os.urandom(4096))
    done = mosaic("run", "--resume", run, "--steps", "4", "--no-progress")
    assert done.returncode == 0, said(done)
    assert "step_00000099.pt" in said(done)  # the note names what it set aside
    left = sorted(p.name for p in checkpoints.iterdir())
    # before, the damaged step 99 counted as the newest and pruning deleted step 2 to keep it
    assert left == [*good, "step_00000004.pt", "step_00000099.pt.unreadable"], left
    again = mosaic("run", "--resume", run, "--steps", "6", "--no-progress")
    assert again.returncode == 0, said(again)


@pytest.mark.parametrize("field,value", [("step", -5), ("step", 10**12), ("step", "abc"), ("samples_seen", "x"),
                                         ("rng", {"python": 1, "torch": 2}), ("model", [1, 2])])
def test_a_forged_checkpoint_field_is_a_corrupt_checkpoint(mosaic: InstalledMosaic, run: Path, field: str,
                                                           value: object) -> None:
    newest = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    payload = torch.load(newest, weights_only=True)
    payload[field] = value
    torch.save(payload, newest)
    metrics = (run / "metrics.jsonl").read_bytes()
    done = mosaic("run", "--resume", run, "--steps", "3", "--no-progress")
    # the only checkpoint is refused: one clear error, and the run's metrics are kept whole
    refused(done, 1, "is corrupt")
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_export_does_not_replace_the_runs_own_files(mosaic: InstalledMosaic, run: Path) -> None:
    newest = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    before = newest.read_bytes()
    refused(mosaic("export", run, "--safetensors", "--out", newest), 1, "one of the run's own files")
    assert newest.read_bytes() == before
    assert mosaic("export", run, "--safetensors").returncode == 0
    assert mosaic("export", run, "--safetensors").returncode == 0  # an earlier export may be replaced


def test_a_config_that_is_not_utf8_is_named_with_its_byte(mosaic: InstalledMosaic, run: Path) -> None:
    (run / "config.yaml").write_bytes(b"\xff\xfe")
    for command in (["events", run], ["chrono", "report", run], ["runs", "show", run, run]):
        refused(mosaic(*command, stdin=EVENT), 1, "not UTF-8")


@pytest.mark.parametrize("damage", ["deep", "list", "bad-step", "not-utf8"])
def test_damaged_metrics_lines_are_named_by_line(mosaic: InstalledMosaic, run: Path, damage: str) -> None:
    line = {"deep": b"[" * 100_000, "list": b"[1, 2]", "bad-step": b'{"step": "x", "split": "train"}',
            "not-utf8": b'{"step": 1, "note": "\xff"}'}[damage]
    with (run / "metrics.jsonl").open("ab") as file:
        file.write(line + b"\n" + b'{"step": 2, "split": "train"}\n')
    done = mosaic("chrono", "report", run)
    if damage == "not-utf8":  # read with replacement characters, as the trainer reads it
        assert done.returncode == 0, said(done)
    else:
        refused(done, 1, "metrics.jsonl line")


@pytest.mark.parametrize(("text", "said_"), [
    ('{"final": [1]}', "final is not a JSON object"),
    ('{"status": [1]}', "status is not a string"),
    ('{"steps": "many"}', "steps is not a count"),
], ids=["final", "status", "steps"])
def test_a_summary_of_the_wrong_shape_marks_the_run_damaged(mosaic: InstalledMosaic, run: Path, text: str,
                                                             said_: str) -> None:
    """`runs list` ended in a TypeError on a status that was not a string."""
    (run / "summary.json").write_text(text)
    refused(mosaic("runs", "show", run), 1, said_)
    listed = mosaic("runs", "list", "--out", run.parent.parent)
    assert listed.returncode == 0 and "damaged" in said(listed), said(listed)


def test_trace_names_the_line_of_a_bad_event(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    refused(mosaic("trace", tmp_path, stdin=EVENT + b"oops\n"), 1, "line 2")


@pytest.mark.parametrize("planted", ["fifo", "directory", "device"])
@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json"])
def test_run_files_read_whole_refuse_what_would_block_or_flood_the_reader(mosaic: InstalledMosaic, run: Path,
                                                                          name: str, planted: str) -> None:
    """A FIFO under a run file's name hung its reader (`runs show`, `run --resume`, chrono report,
    runs list) for ever, a link to /dev/zero grew its memory without bound, a directory ended in a
    traceback."""
    command = ("runs", "show", run) if name == "summary.json" else ("run", "--resume", run, "--steps", "3")
    path = run / name
    path.unlink()
    if planted == "fifo":
        os.mkfifo(path)
    elif planted == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    kind = {"fifo": "a FIFO", "directory": "a directory", "device": "a device"}[planted]
    refused(mosaic(*command, timeout=60), 1, f"{path} is not a regular file (it is {kind})")


def test_audit_files_planted_as_fifos_are_refused_without_waiting(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    os.mkfifo(log)
    refused(mosaic("audit", "verify", log, timeout=60), 1, f"audit log {log} is not a regular file (it is a FIFO)")
    key = tmp_path / "key"
    os.mkfifo(key)
    log.unlink()
    log.write_bytes(b"")
    refused(mosaic("audit", "verify", log, "--key-file", key, timeout=60), 1,
            f"key file {key} is not a regular file (it is a FIFO)")


@pytest.mark.parametrize(("name", "text"), [
    ("decisions.jsonl", '{"action": 1}\n{"action": "a"}\n'),
    ("decisions.jsonl", '{"action": "split", "free_energy": {"before": "x"}}\n'),
    ("chrono_audit.jsonl", '{"kind": ["x"]}\n'),
], ids=["mixed-actions", "free-energy-text", "unhashable-kind"])
def test_chrono_report_names_a_run_file_whose_records_have_the_wrong_types(mosaic: InstalledMosaic, run: Path,
                                                                           name: str, text: str) -> None:
    """JSON that parses but is not what the trainer writes ended chrono report in a traceback."""
    (run / name).write_text(text)
    refused(mosaic("chrono", "report", run), 1, f"{run / name}", "a value is not what the trainer writes")


@pytest.mark.parametrize("command", [
    ["run", "mosaic_vm", "--set", "foo"],
    ["run", "mosaic_vm", "--set", "=1"],
    ["run", "mosaic_vm", "--set", "a..b=1"],
    ["sweep", "mosaic_vm", "--set", "foo"],
    ["presets", "show", "mosaic_vm", "--set", "foo"],
], ids=["no-equals", "no-key", "empty-segment", "sweep", "presets-show"])
def test_a_malformed_override_is_a_usage_error(mosaic: InstalledMosaic, command: list[str]) -> None:
    refused(mosaic(*command), 2, "Invalid value for '--set'")


def test_plot_takes_a_png(mosaic: InstalledMosaic, run: Path) -> None:
    refused(mosaic("plot", run, "--out", run / "curves.txt"), 2, "the plot is a PNG")


def test_eval_names_a_checkpoint_whose_weights_are_not_the_models(mosaic: InstalledMosaic, run: Path) -> None:
    """Ended in torch's load_state_dict traceback (eval, generate, trace, events and export load alike)."""
    newest = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    payload = torch.load(newest, weights_only=True)
    weights = payload["model"]
    weights[next(k for k, v in weights.items() if isinstance(v, torch.Tensor) and v.dim() == 2)] = torch.zeros(3, 3)
    torch.save(payload, newest)
    refused(mosaic("eval", run), 1, f"checkpoint {newest}", "does not match this model")


def test_tools_add_and_trace_name_the_file_their_problem_is_in(mosaic: InstalledMosaic, run: Path,
                                                               tmp_path: Path) -> None:
    definition = tmp_path / "bad.json"
    definition.write_text('{"name": "adder", "description": "d", "implementation": "x", "capabilities": "nope"}')
    refused(mosaic("tools", "add", definition, "--registry", tmp_path / "reg"), 1,
            f"invalid configuration in {definition}", "$.capabilities")
    events = tmp_path / "big.jsonl"
    events.write_bytes(b"a" * (1 << 20) + b"a")
    refused(mosaic("trace", run, "--input", events), 1, f"{events}: more than")


def test_a_file_in_place_of_the_session_directory_is_named(mosaic: InstalledMosaic, run: Path) -> None:
    """Ended in a FileExistsError traceback when the session saved."""
    (run / "sessions").mkdir(exist_ok=True)
    (run / "sessions" / "default").write_text("x")
    refused(mosaic("events", run, stdin=EVENT), 1, f"session directory {run / 'sessions' / 'default'} is not a directory")
