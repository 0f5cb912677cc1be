"""The trainer end to end on tiny components: run directory, resume after a kill, NaN handling,
checkpoint integrity and accumulation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mosaic.core.errors import CheckpointError, ConfigError, TrainingError
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from mosaic.runtime.training.loading import load_trained_model
from mosaic.runtime.training.run import run_preset
from mosaic.runtime.training.run_dir import fingerprint

#: the tiny preset run in its own process (python -m ENTRY PRESET OUT ...)
ENTRY = "mosaic.runtime.testing.train_entry"


@pytest.fixture(scope="module")
def registry():
    return tiny_registry()


def preset_file(tmp_path: Path, text: str = TINY_PRESET) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(text)
    return path


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(latest_checkpoint(run_dir / "checkpoints"), weights_only=True)
    return payload["model"]


def test_run_writes_a_complete_run_directory(tmp_path: Path, registry) -> None:
    summary = run_preset(str(preset_file(tmp_path)), registry=registry, out=tmp_path / "runs", show_progress=False)
    run = Path(summary["run_dir"])
    assert {"config.yaml", "metrics.jsonl", "summary.json", "events.log", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 5, 10, 15, 20, 25, 30]
    assert train[-1]["loss_total"] < 0.5 * train[0]["loss_total"]
    assert "curriculum_difficulty" in train[-1]
    evaluation = summary["eval"]
    assert evaluation["token_accuracy"] > 0.9
    assert set(evaluation["commitment"]["per_class_accuracy"]) == {"close", "neutral", "open"}
    assert sum(map(sum, evaluation["commitment"]["confusion"]["matrix"])) > 0
    assert {"READ_MEM", "WRITE_MEM"} <= set(evaluation["opcode_accuracy_per_class"])
    config = (run / "config.yaml").read_text()
    assert "d_model: 16" in config and "${" not in config  # fully resolved


def test_kill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    slow = TINY_PRESET.replace("n_layers: 2\n", "n_layers: 2\n      delay_s: 0.04\n      dropout: 0.1\n", 1)
    preset = preset_file(tmp_path, slow)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(out: Path, *extra: str) -> dict:
        done = subprocess.run([sys.executable, "-m", ENTRY, str(preset), str(out), *extra], env=env,
                              capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        line = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")][-1]
        return json.loads(line[len("SUMMARY "):])

    reference = run(tmp_path / "whole")
    victim = subprocess.Popen([sys.executable, "-m", ENTRY, str(preset), str(tmp_path / "killed")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    checkpoints: list = []
    while time.time() < deadline and victim.poll() is None:
        runs = list((tmp_path / "killed").glob("tiny/*/checkpoints"))
        checkpoints = list_checkpoints(runs[0]) if runs else []
        if checkpoints and checkpoints[-1][0] >= 10:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert checkpoints and checkpoints[-1][0] < 30, "the run must be killed mid-way"
    killed_dir = runs[0].parent
    assert not (killed_dir / "summary.json").exists()
    resumed = run(tmp_path / "unused", "--resume", str(killed_dir))
    assert resumed["final"]["loss_total"] == pytest.approx(reference["final"]["loss_total"], rel=1e-6)
    whole, again = final_state(Path(reference["run_dir"])), final_state(killed_dir)
    assert all(torch.allclose(whole[k], again[k], atol=1e-6) for k in whole)
    steps = [json.loads(line)["step"] for line in (killed_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_non_finite_loss_stops_cleanly_keeping_last_checkpoint(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("n_layers: 2\n", "n_layers: 2\n      nan_at_call: 25\n", 1)
    with pytest.raises(TrainingError, match="non-finite loss or gradient at step 25"):
        run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs", show_progress=False)
    run = next((tmp_path / "runs" / "tiny").iterdir())
    assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [10, 20]
    payload = load_checkpoint(latest_checkpoint(run / "checkpoints"), config_fingerprint=None, opcode_table=None)
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("steps: 30", "steps: 10")
    summary = run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                         show_progress=False)
    run = Path(summary["run_dir"])
    with pytest.raises(CheckpointError, match="different configuration"):
        run_preset(None, registry=registry, resume=run, overrides=["model.d_model=8"], show_progress=False)
    with pytest.raises(CheckpointError, match="opcode table"):
        load_checkpoint(latest_checkpoint(run / "checkpoints"), config_fingerprint=None, opcode_table=["NOP"])
    latest_checkpoint(run / "checkpoints").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_preset(None, registry=registry, resume=run, show_progress=False)


def test_resume_can_extend_a_finished_run(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("steps: 30", "steps: 10")
    run = Path(run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                          show_progress=False)["run_dir"])
    extended = run_preset(None, registry=registry, resume=run, steps=20, show_progress=False)
    assert extended["steps"] == 20
    assert extended["first"]["step"] == 1  # ratios stay relative to the run's first logged values


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("steps: 30", "steps: 6")
    one = run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "a", show_progress=False)
    two = run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "b",
                     overrides=["trainer.grad_accum=2"], show_progress=False)
    assert two["final"]["loss_total"] == pytest.approx(one["final"]["loss_total"], rel=1e-4)


def test_batch_not_divisible_is_a_config_error(tmp_path: Path, registry) -> None:
    with pytest.raises(ConfigError, match="multiple of grad_accum"):
        run_preset(str(preset_file(tmp_path)), registry=registry, out=tmp_path / "runs",
                   overrides=["trainer.grad_accum=3"], show_progress=False)


def test_bf16_autocast_and_deterministic_mode_train(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("steps: 30", "steps: 10")
    summary = run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                         overrides=["trainer.precision=bf16", "trainer.deterministic=true"], show_progress=False)
    assert summary["status"] == "completed"
    assert summary["final"]["loss_total"] < summary["first"]["loss_total"]


def test_stop_at_accuracy_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path: Path, registry) -> None:
    summary = run_preset(str(preset_file(tmp_path)), registry=registry, out=tmp_path / "runs", show_progress=False,
                         overrides=["trainer.eval_every=2", "trainer.stop_at_accuracy=0.5"])
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "eval"]
    assert summary["status"] == "target_reached" and summary["steps"] < 30
    assert [r["step"] for r in evals] == list(range(2, summary["steps"] + 1, 2))  # no extra final evaluation
    assert all(r["token_accuracy"] < 0.5 for r in evals[:-1]) and evals[-1]["token_accuracy"] >= 0.5
    assert summary["eval"]["token_accuracy"] == evals[-1]["token_accuracy"]


def _as_before_delay_s_existed(run: Path) -> str:
    """Rewrite ``run`` as an older version wrote it: no delay_s in config.yaml, and its checkpoints say so."""
    config = run / "config.yaml"
    older = config.read_text().replace("    delay_s: 0.0\n", "")
    assert older != config.read_text()
    config.write_text(older)
    for path in (run / "checkpoints").glob("*.pt"):
        payload = torch.load(path, weights_only=True)
        payload["config_fingerprint"] = fingerprint(yaml.safe_load(older))
        torch.save(payload, path)
    return older


def test_a_run_trained_before_a_config_field_existed_still_loads(tmp_path: Path, registry) -> None:
    """A component that gains a config field (with a default) must not orphan the runs trained
    before: their config.yaml lacks the field, today's resolution of it has the default."""
    text = TINY_PRESET.replace("steps: 30", "steps: 2")
    run = Path(run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                          show_progress=False)["run_dir"])
    older = _as_before_delay_s_existed(run)
    loaded = load_trained_model(run, registry=registry, device="cpu")
    assert loaded.step == 2 and loaded.config_fingerprint == fingerprint(yaml.safe_load(older))
    assert torch.equal(loaded.model.state_dict()["head.weight"], final_state(run)["head.weight"])


def test_a_run_trained_before_a_config_field_existed_still_resumes(tmp_path: Path, registry) -> None:
    """Resume checks the checkpoint against the run's config.yaml as written, as loading does; an
    override that changes what trained is still refused."""
    text = TINY_PRESET.replace("steps: 30", "steps: 2")
    run = Path(run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                          show_progress=False)["run_dir"])
    older = _as_before_delay_s_existed(run)
    with pytest.raises(CheckpointError, match="different configuration"):
        run_preset(None, registry=registry, resume=run, steps=4, overrides=["trainer.lr=0.5"], show_progress=False)
    summary = run_preset(None, registry=registry, resume=run, steps=4, show_progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 4
    newest = torch.load(latest_checkpoint(run / "checkpoints"), weights_only=True)
    assert newest["step"] == 4 and newest["config_fingerprint"] == fingerprint(yaml.safe_load(older))


def test_load_trained_model_can_skip_the_config_fingerprint_only_when_asked(tmp_path: Path, registry) -> None:
    text = TINY_PRESET.replace("steps: 30", "steps: 2")
    run = Path(run_preset(str(preset_file(tmp_path, text)), registry=registry, out=tmp_path / "runs",
                          show_progress=False)["run_dir"])
    config = run / "config.yaml"  # as if the dataset's config had gained a field since: same weights
    config.write_text(config.read_text().replace("size: 64", "size: 65"))
    with pytest.raises(CheckpointError, match="different configuration"):
        load_trained_model(run, registry=registry, device="cpu")
    loaded = load_trained_model(run, registry=registry, device="cpu", check_config=False)
    assert loaded.step == 2 and torch.equal(loaded.model.state_dict()["head.weight"], final_state(run)["head.weight"])


@pytest.mark.parametrize("damage", ["wrong shape", "missing", "unexpected", "not a tensor"])
def test_a_checkpoint_whose_weights_are_not_the_models_is_a_checkpoint_error(tmp_path: Path, registry,
                                                                              damage: str) -> None:
    """Loading a run for eval, generation or export names the checkpoint when its weights do not fit
    the model (torch's load_state_dict traceback before)."""
    run = Path(run_preset(str(preset_file(tmp_path, TINY_PRESET.replace("steps: 30", "steps: 2"))), registry=registry,
                          out=tmp_path / "runs", show_progress=False)["run_dir"])
    path = latest_checkpoint(run / "checkpoints")
    payload = torch.load(path, weights_only=True)
    weights = payload["model"]
    if damage == "wrong shape":
        weights["head.weight"] = torch.zeros(3, 3)
    elif damage == "missing":
        del weights["head.weight"]
    elif damage == "unexpected":
        weights["planted.weight"] = torch.zeros(1)
    else:
        weights["head.weight"] = "x"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {re.escape(str(path))} does not match this model: .*head|planted"):
        load_trained_model(run, registry=registry, device="cpu")


def test_a_config_yaml_edited_to_a_model_the_machine_cannot_hold_names_the_file(tmp_path: Path, registry) -> None:
    run = Path(run_preset(str(preset_file(tmp_path, TINY_PRESET.replace("steps: 30", "steps: 2"))), registry=registry,
                          out=tmp_path / "runs", show_progress=False)["run_dir"])
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("d_model: 16", "d_model: 100000000000"))
    with pytest.raises(ConfigError, match=rf"(?s)invalid configuration in {re.escape(str(config))}.*do not fit in this machine"):
        load_trained_model(run, registry=registry, device="cpu")


def test_a_models_own_refusal_of_its_extra_state_names_the_checkpoint(tmp_path: Path) -> None:
    """A model that checks its extra state (MosaicLM's opcode table) raises without the file's name."""
    from mosaic.runtime.training.checkpoint import load_model_weights

    class Checked(torch.nn.Module):
        def get_extra_state(self) -> dict:
            return {"opcode_table": []}

        def set_extra_state(self, state: object) -> None:
            raise CheckpointError("checkpoint does not record an opcode table")

    path = tmp_path / "step_00000001.pt"
    with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(path))} does not record an opcode table$"):
        load_model_weights(Checked(), {"_extra_state": {}}, path)
