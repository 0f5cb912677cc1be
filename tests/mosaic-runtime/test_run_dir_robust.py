"""Run directories survive what unlucky users do to them: torn files, two writers, corrupt
checkpoints, stale temporaries, exploding losses, full disks and unwritable outputs."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mosaic.core.errors import CheckpointError, RunDirectoryError, RunLockedError
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training import checkpoint as checkpoint_module
from mosaic.runtime.training.checkpoint import list_checkpoints
from mosaic.runtime.training.divergence import DivergedError, DivergenceGuard
from mosaic.runtime.training.run import evaluate_run, run_preset
from mosaic.runtime.training.run_lock import acquire_run_lock, is_locked

SHORT = TINY_PRESET.replace("steps: 30", "steps: 20")


@pytest.fixture(scope="module")
def registry():
    return tiny_registry()


def train(tmp_path: Path, registry, text: str = SHORT, **kwargs) -> Path:
    preset = tmp_path / "tiny.yml"
    preset.write_text(text)
    summary = run_preset(str(preset), registry=registry, out=tmp_path / "runs", show_progress=False, **kwargs)
    return Path(summary["run_dir"])


@pytest.fixture
def finished(tmp_path: Path, registry) -> Path:
    return train(tmp_path, registry)


def train_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "train"]


def test_resume_trims_a_torn_last_line(finished: Path, registry) -> None:
    with (finished / "metrics.jsonl").open("a") as file:
        file.write('{"split": "train", "step": 2')  # a kill or a full disk mid-append
    (finished / "decisions.jsonl").write_text('{"train_step": 3, "kind": "spawn"}\n{"train_st')
    summary = run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 25
    assert train_steps(finished) == [1, 5, 10, 15, 20, 25]
    assert (finished / "decisions.jsonl").read_text() == '{"kind": "spawn", "train_step": 3}\n'


def test_a_damaged_line_inside_the_file_is_an_error_not_a_guess(finished: Path, registry) -> None:
    lines = (finished / "metrics.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (finished / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirectoryError, match="metrics.jsonl line 2 is not a JSON record"):
        run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)


def test_a_torn_summary_is_a_clean_error_in_eval(finished: Path, registry) -> None:
    (finished / "summary.json").write_text('{"status": "compl')
    with pytest.raises(RunDirectoryError, match="summary.json is unreadable"):
        evaluate_run(finished, registry=registry, samples=4)


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(finished: Path, registry) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mosaic.runtime.training.run_lock import acquire_run_lock;"
         f"lock = acquire_run_lock({str(finished)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(finished)
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
            run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert train_steps(finished) == [1, 5, 10, 15, 20]  # the refused resume wrote nothing
    # the holder died without releasing: its lock is stale and the next resume takes it over
    assert not is_locked(finished)
    assert run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)["steps"] == 25


def test_the_lock_is_held_in_process_too(finished: Path, registry) -> None:
    lock = acquire_run_lock(finished)
    try:
        with pytest.raises(RunLockedError):
            acquire_run_lock(finished)
    finally:
        lock.release()
    acquire_run_lock(finished).release()


def test_resume_falls_back_past_a_corrupt_newest_checkpoint(finished: Path, registry) -> None:
    steps = [step for step, _ in list_checkpoints(finished / "checkpoints")]
    assert steps == [10, 20]
    (finished / "checkpoints" / "step_00000020.pt").write_bytes(b"PK\x03\x04 torn")
    summary = run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 25
    assert train_steps(finished) == [1, 5, 10, 15, 20, 25]  # records after step 10 were written again
    events = [json.loads(line) for line in (finished / "events.log").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "resume"] == [10]


def test_no_loadable_checkpoint_names_every_failure(finished: Path, registry) -> None:
    for _, path in list_checkpoints(finished / "checkpoints"):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="no loadable checkpoint.*step_00000020.*step_00000010"):
        run_preset(None, registry=registry, resume=finished, steps=25, show_progress=False)


def test_resume_cleans_stale_temporary_files(finished: Path, registry) -> None:
    stale = [finished / "checkpoints" / ".step_00000030.pt.k2j4.tmp", finished / ".summary.json.x81q.tmp"]
    for path in stale:
        path.write_bytes(b"half a write")
    run_preset(None, registry=registry, resume=finished, steps=21, show_progress=False)
    assert not any(path.exists() for path in stale)


def test_an_exploding_loss_stops_the_run_as_diverged(tmp_path: Path, registry) -> None:
    text = SHORT.replace("n_layers: 2\n", "n_layers: 2\n      blowup_at_call: 15\n", 1)
    with pytest.raises(DivergedError, match="loss diverged at step 15"):
        train(tmp_path, registry, text)
    run = next((tmp_path / "runs" / "tiny").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "running median" in summary["error"]
    assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [10]  # the last good one


def test_the_divergence_factor_is_configurable(tmp_path: Path, registry) -> None:
    text = SHORT.replace("n_layers: 2\n", "n_layers: 2\n      blowup_at_call: 15\n", 1)
    summary = run_preset(str(_write(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                         overrides=["trainer.divergence_factor=0"], show_progress=False)
    assert summary["status"] == "completed"  # 0 turns the ratio test off


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(text)
    return path


def test_divergence_guard_uses_the_median_of_its_window() -> None:
    guard = DivergenceGuard(factor=3.0, window=4)
    for step, loss in enumerate([10.0, 9.0, 50.0, 8.0, 7.0], 1):  # one spike cannot move the median
        guard.check(step, loss)
    guard.check(6, 20.0)  # median of (9, 50, 8, 7) is 8.5: 20 < 25.5
    # the window is now (50, 8, 7, 20), median 14: 60 > 42
    with pytest.raises(DivergedError, match="step 7"):
        guard.check(7, 60.0)
    with pytest.raises(DivergedError, match="non-finite"):
        DivergenceGuard(factor=0.0, window=4).check(1, float("inf"))


def test_a_full_disk_during_a_checkpoint_is_a_clear_error(tmp_path: Path, registry, monkeypatch) -> None:
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "atomic_write", full)
    with pytest.raises(RunDirectoryError, match="no space left on the device"):
        train(tmp_path, registry)


def test_an_unwritable_output_directory_is_a_clear_error(tmp_path: Path, registry, monkeypatch) -> None:
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # root ignores chmod, so refuse as a read-only mount would
    with pytest.raises(RunDirectoryError, match="permission denied"):
        train(tmp_path, registry)


def test_out_pointing_at_a_file_is_a_clear_error_and_writes_nothing(tmp_path: Path, registry) -> None:
    (tmp_path / "runs").write_text("a file, not a directory")
    with pytest.raises(RunDirectoryError, match="not a directory"):
        train(tmp_path, registry)
    assert (tmp_path / "runs").read_text() == "a file, not a directory"


def test_eval_of_nan_weights_is_an_error_and_keeps_the_summary(finished: Path, registry) -> None:
    before = (finished / "summary.json").read_text()
    for _, path in list_checkpoints(finished / "checkpoints"):
        payload = torch.load(path, weights_only=False)
        payload["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in payload["model"].items()}
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        evaluate_run(finished, registry=registry, samples=4)
    assert (finished / "summary.json").read_text() == before


def test_each_resume_adds_a_provenance_session(finished: Path, registry) -> None:
    run_preset(None, registry=registry, resume=finished, steps=21, show_progress=False)
    sessions = json.loads((finished / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[0]["seed"] == sessions[1]["seed"] == 0
    assert sessions[1]["started"] > sessions[0]["started"]


def test_runs_index_reports_running_incomplete_and_damaged_runs(tmp_path: Path, registry) -> None:
    from mosaic.runtime.training.runs_index import list_runs

    done = train(tmp_path, registry)
    damaged = train(tmp_path, registry)
    (damaged / "summary.json").write_text("{")
    incomplete = train(tmp_path, registry)
    (incomplete / "summary.json").unlink()
    lock = acquire_run_lock(done)
    try:
        found = {info.path: info for info in list_runs(tmp_path / "runs")}
    finally:
        lock.release()
    assert found[done].status == "running"
    assert found[damaged].status == "damaged" and "summary.json is unreadable" in found[damaged].problem
    assert found[incomplete].status == "incomplete"
    assert [info.latest for info in found.values()] == [False, False, True]
    assert list_runs(tmp_path / "runs")[0].status == "completed"  # once the lock is released


def test_resume_may_change_the_guard_and_the_loggers(finished: Path, registry) -> None:
    """A diverged run's message says to raise the factor; that must not make its checkpoints foreign."""
    summary = run_preset(None, registry=registry, resume=finished, steps=21, show_progress=False,
                         overrides=["trainer.divergence_factor=50", "trainer.divergence_window=8",
                                    "trainer.loggers=[logger.jsonl, logger.csv]"])
    assert summary["status"] == "completed" and (finished / "metrics_train.csv").is_file()
