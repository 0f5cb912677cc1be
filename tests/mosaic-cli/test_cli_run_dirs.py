"""The installed ``mosaic`` on run directories, in subprocesses: Ctrl-C/SIGTERM, progress output,
clear errors, ``latest`` links, provenance, ``mosaic runs`` and experiments recorded per run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from mosaic.runtime.testing.tiny_cli import TinyCli, interrupt, wait_for
from mosaic.runtime.testing.tiny_training import TINY_PRESET
from mosaic.runtime.training.checkpoint import list_checkpoints

SLOW = TINY_PRESET.replace("n_layers: 2\n", "n_layers: 2\n      delay_s: 0.05\n", 1)
# the second experiment's model is narrower: a reader that rebuilt the first could not load its checkpoint
TWO_EXPERIMENTS = TINY_PRESET + TINY_PRESET[TINY_PRESET.index("  - type: experiment"):].replace(
    "name: train", "name: second").replace("d_model: ${d_model}", "d_model: 8")


@pytest.fixture
def cli(tmp_path: Path) -> TinyCli:
    return TinyCli(tmp_path)


def preset(tmp_path: Path, text: str = TINY_PRESET) -> str:
    path = tmp_path / "tiny.yml"
    path.write_text(text)
    return str(path)


def only_run(out: Path) -> Path:
    runs = [p for p in (out / "tiny").iterdir() if p.name != "latest"]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_and_marks_the_run_interrupted(tmp_path: Path, cli: TinyCli, signal_number) -> None:
    out = tmp_path / "runs"
    process = cli.start("run", preset(tmp_path, SLOW), "--out", str(out), "--no-progress")
    assert wait_for(lambda: bool(list(out.glob("tiny/*/checkpoints/step_00000010.pt")))), "no first checkpoint"
    _stdout, stderr = interrupt(process, signal_number)
    assert process.returncode == 128 + signal_number, stderr[-2000:]
    run = only_run(out)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(signal_number).name
    assert 10 <= summary["steps"] < 30
    assert list_checkpoints(run / "checkpoints")[-1][0] == summary["steps"]  # nothing trained is lost
    assert "Traceback" not in stderr
    resumed = cli.run("run", "--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = json.loads((run / "summary.json").read_text())
    assert final["status"] == "completed"
    reference = cli.run("run", preset(tmp_path, SLOW), "--out", str(tmp_path / "whole"), "-q")
    assert reference.returncode == 0, reference.stderr[-2000:]
    whole = json.loads((only_run(tmp_path / "whole") / "summary.json").read_text())
    assert final["final"]["loss_total"] == pytest.approx(whole["final"]["loss_total"], rel=1e-6)


def test_piped_output_gets_progress_lines_and_quiet_gets_only_the_summary(tmp_path: Path, cli: TinyCli) -> None:
    text = preset(tmp_path)
    piped = cli.run("run", text, "--out", str(tmp_path / "a"), "--steps", "10")
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "step 5/10 loss_total" in piped.stderr and "step 10/10" in piped.stderr
    no_bar = cli.run("run", text, "--out", str(tmp_path / "b"), "--steps", "10", "--no-progress")
    assert "step 5/10 loss_total" in no_bar.stderr  # --no-progress hides a bar, never the log lines
    quiet = cli.run("run", text, "--out", str(tmp_path / "c"), "--steps", "10", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "run completed" in quiet.stdout


def test_a_warmup_longer_than_the_run_is_clipped_with_a_note(tmp_path: Path, cli: TinyCli) -> None:
    done = cli.run("run", preset(tmp_path), "--out", str(tmp_path / "runs"), "--steps", "5",
                   "--set", "trainer.warmup_steps=20")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warmup_steps 20 clipped to the 5-step budget" in done.stderr


def test_out_pointing_at_a_file_is_one_clear_error(tmp_path: Path, cli: TinyCli) -> None:
    (tmp_path / "runs").write_text("not a directory")
    done = cli.run("run", preset(tmp_path), "--out", str(tmp_path / "runs"))
    assert done.returncode == 1
    assert "not a directory" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def two_runs(shared: Path) -> tuple[Path, Path]:
    """Two finished runs shared by the tests below, which run in file order: the read-only ones
    first, the ones that damage a file last."""
    cli, tmp_path = TinyCli(shared), shared
    out = tmp_path / "runs"
    first = cli.run("run", preset(tmp_path), "--out", str(out), "--steps", "10", "-q")
    second = cli.run("run", preset(tmp_path), "--out", str(out), "--steps", "10", "-q", "--set", "trainer.lr=0.02")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    paths = [Path(done.stdout.rsplit("run directory:", 1)[1].strip()) for done in (first, second)]
    return paths[0], paths[1]


def test_latest_points_at_the_newest_started_run(shared: Path, cli: TinyCli, two_runs) -> None:
    first, second = two_runs
    latest = shared / "runs" / "tiny" / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    failed = cli.run("run", str(shared / "tiny.yml"), "--out", str(shared / "runs"), "--set", "model.d_model=-1")
    assert failed.returncode == 1
    assert latest.resolve() == second.resolve()  # a run that never started is never "latest"


def test_runs_list_and_show_compare_two_runs(shared: Path, cli: TinyCli, two_runs) -> None:
    first, second = two_runs
    listed = cli.run("runs", "list", "--out", str(shared / "runs"), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(Path(r["path"]).name, r["status"], r["steps"], r["latest"]) for r in rows] == [
        (first.name, "completed", 10, False), (second.name, "completed", 10, True)]
    assert all(isinstance(r["final_loss"], float) and r["experiment"] == "train" for r in rows)
    table = cli.run("runs", "list", "--out", str(shared / "runs"))
    assert f"* tiny/{second.name}" in table.stdout
    shown = cli.run("runs", "show", str(first), str(second))
    assert shown.returncode == 0, shown.stderr
    assert "targets[0].trainer.lr: 0.01 -> 0.02" in shown.stdout
    assert "loss_total" in shown.stdout and "token_accuracy" in shown.stdout
    assert "command:" in shown.stdout and "seed 0" in shown.stdout


def test_provenance_records_what_made_the_run_and_eval_warns_on_drift(cli: TinyCli, two_runs) -> None:
    run = two_runs[0]
    sessions = json.loads((run / "provenance.json").read_text())["sessions"]
    origin = sessions[0]
    assert origin["command"][1:4] == ["run", origin["command"][2], "--out"] and "-q" in origin["command"]
    assert origin["seed"] == 0 and origin["host"] and origin["python"].count(".") == 2 and origin["torch"]
    assert origin["packages"]["tiny-test"] == "0.1" and "mosaic-runtime" in origin["packages"]
    assert origin["git"] is None or len(origin["git"]["commit"]) == 40
    clean = cli.run("eval", str(run), "--samples", "4")
    assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr
    origin["packages"]["tiny-test"] = "0.0"
    (run / "provenance.json").write_text(json.dumps({"sessions": sessions}))
    drifted = cli.run("eval", str(run), "--samples", "4")
    assert drifted.returncode == 0, drifted.stderr
    assert "tiny-test is 0.1 now but 0.0 trained this run: reinstall it (pip install 'tiny-test==0.0')" in drifted.stderr


def test_a_torn_summary_is_one_clear_error_in_eval(cli: TinyCli, two_runs) -> None:
    run = two_runs[0]
    (run / "summary.json").write_text('{"status": ')
    done = cli.run("eval", str(run), "--samples", "4")
    assert done.returncode == 1 and "summary.json is unreadable" in done.stderr and "Traceback" not in done.stderr


def test_readers_default_to_the_experiment_that_ran(tmp_path: Path, cli: TinyCli) -> None:
    out = tmp_path / "runs"
    trained = cli.run("run", preset(tmp_path, TWO_EXPERIMENTS), "--out", str(out), "--steps", "10", "-q",
                      "--experiment", "second")
    assert trained.returncode == 0, trained.stderr[-2000:]
    run = only_run(out)
    assert json.loads((run / "run.json").read_text()) == {"experiment": "second", "preset": "tiny"}
    evaluated = cli.run("eval", str(run), "--samples", "4")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    wrong = cli.run("eval", str(run), "--experiment", "train")
    assert wrong.returncode == 1 and "trained experiment 'second', not 'train'" in wrong.stderr
    plotted = cli.run("plot", str(run), "--experiment", "train")
    assert plotted.returncode == 1 and "trained experiment 'second'" in plotted.stderr
    reported = cli.run("chrono", "report", str(run), "--experiment", "train")
    assert reported.returncode == 1 and "trained experiment 'second'" in reported.stderr
    wrong_events = cli.run("events", str(run), "--experiment", "train", "--no-save")
    assert wrong_events.returncode == 1 and "trained experiment 'second'" in wrong_events.stderr
    # by default events rebuilds "second" and loads its checkpoint; the tiny model then is refused
    # only because it has no streaming methods, not for a checkpoint that does not fit
    events = cli.run("events", str(run), "--no-save")
    assert events.returncode == 1 and "cannot run as an event runtime" in events.stderr, events.stderr
    resumed = cli.run("run", "--resume", str(run), "--steps", "12", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "run completed: second" in resumed.stdout


def test_eval_of_nan_weights_exits_non_zero_and_writes_no_nan(cli: TinyCli, two_runs) -> None:
    import torch

    run = two_runs[1]
    before = (run / "summary.json").read_text()
    for _, path in list_checkpoints(run / "checkpoints"):
        payload = torch.load(path, weights_only=False)
        payload["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in payload["model"].items()}
        torch.save(payload, path)
    done = cli.run("eval", str(run), "--samples", "4")
    assert done.returncode == 1 and "non-finite weights" in done.stderr and "Traceback" not in done.stderr
    assert (run / "summary.json").read_text() == before and "NaN" not in before
