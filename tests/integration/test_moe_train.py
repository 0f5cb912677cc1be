"""A MOSAIC preset with router.chrono experts trains end to end; ChronoMoE metrics and lifecycle
decisions land in the run directory, and a resumed run continues the lifecycle's clocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mosaic.runtime.training.run import run_preset

# phase8_moe's targets: 0 topk, 1 loss_free, 2 chrono, 3 chrono_lifecycle, 4 chrono_adhoc
TINY = ["vars.warmup=1", "vars.d_model=16", "vars.block_size=16", "vars.batch_size=4", "vars.n_experts=4", "vars.n_live=3",
        "eval.samples=8", "eval.batch_size=8"]


def fast_lifecycle(target: int) -> list[str]:
    prefix = f"targets[{target}].model.block.ffn.router.chrono"
    return [f"{prefix}.lifecycle.mid_interval=2", f"{prefix}.lifecycle.slow_interval=3",
            f"{prefix}.lifecycle.cooldown_steps=3", f"{prefix}.prune_min_tokens=0"]


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 40, encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(("experiment", "target"), [("chrono_lifecycle", 3), ("chrono_adhoc", 4)])
def test_chrono_preset_trains_and_logs_chronomoe_metrics(tmp_path: Path, text_file: Path, experiment: str,
                                                         target: int) -> None:
    torch.manual_seed(0)
    overrides = [*TINY, *fast_lifecycle(target), f"vars.data={text_file}", "vars.steps=6",
                 f"targets[{target}].trainer.log_every=1"]
    summary = run_preset("phase8_moe", experiment=experiment, out=tmp_path / "runs", overrides=overrides,
                         show_progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 6
    run = Path(summary["run_dir"])
    train = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train"]
    assert len(train) == 6
    for key in ("aux_moe", "moe_psi_l0", "moe_psi_l1", "moe_beta_absmax_l0", "moe_max_vio",
                "moe_active_experts_l1", "loss_total"):
        assert all(key in record for record in train), key
    assert all(0 < r["moe_active_experts"] <= 4 for r in train)
    decisions = read_jsonl(run / "decisions.jsonl")
    # the slow clock's own evaluations (its keeper's proposals settle when the keeper answers)
    slow = [d for d in decisions if d["clock"] == "slow" and d.get("source") != "keepers"]
    assert {d["train_step"] for d in slow} == {3, 6}, "a slow evaluation every 3 steps, per layer"
    assert {d["layer"] for d in slow} == {0, 1}
    assert any("lifecycle_decisions" in r for r in train)
    assert summary["eval"]["metrics"]["lm_ce"] > 0


def test_resume_restores_the_lifecycle_clock(tmp_path: Path, text_file: Path) -> None:
    overrides = [*TINY, *fast_lifecycle(3), f"vars.data={text_file}", "targets[3].trainer.checkpoint_every=2"]
    first = run_preset("phase8_moe", experiment="chrono_lifecycle", out=tmp_path / "runs",
                       overrides=[*overrides, "vars.steps=4"], show_progress=False)
    run = Path(first["run_dir"])
    before = read_jsonl(run / "decisions.jsonl")
    resumed = run_preset(None, resume=run, experiment="chrono_lifecycle", steps=6,
                         show_progress=False)
    assert resumed["steps"] == 6
    after = read_jsonl(run / "decisions.jsonl")[len(before):]
    # ChronoSystem's own step counter continued from the checkpoint: its slow clock fired at 6
    assert {d["step"] for d in after if d["clock"] == "slow"} == {6}


def test_plain_chrono_router_without_lifecycle_writes_no_decisions(tmp_path: Path, text_file: Path) -> None:
    summary = run_preset("phase8_moe", experiment="chrono", out=tmp_path / "runs",
                         overrides=[*TINY, f"vars.data={text_file}", "vars.steps=3"], show_progress=False)
    run = Path(summary["run_dir"])
    assert not (run / "decisions.jsonl").exists()
    assert "moe_psi" in summary["final"] and "lifecycle_decisions" not in summary["final"]


def test_resume_after_a_crash_rewrites_the_decisions_past_the_checkpoint_once(tmp_path: Path,
                                                                              text_file: Path) -> None:
    overrides = [*TINY, *fast_lifecycle(3), f"vars.data={text_file}", "targets[3].trainer.checkpoint_every=2"]
    first = run_preset("phase8_moe", experiment="chrono_lifecycle", out=tmp_path / "runs",
                       overrides=[*overrides, "vars.steps=4"], show_progress=False)
    run = Path(first["run_dir"])
    slow_at_3 = [d for d in read_jsonl(run / "decisions.jsonl") if d["clock"] == "slow" and d["train_step"] == 3]
    assert slow_at_3, "the slow clock fired at step 3, after the step-2 checkpoint"
    # a crash before the step-4 checkpoint was written: resume from step 2 replays steps 3 and 4
    checkpoints = sorted((run / "checkpoints").iterdir())
    for late in checkpoints[1:]:
        late.unlink()
    run_preset(None, resume=run, experiment="chrono_lifecycle", steps=6, show_progress=False)
    decisions = read_jsonl(run / "decisions.jsonl")
    slow = [(d["train_step"], d["layer"], d["action"], d["expert"], d["other"], d["trigger"])
            for d in decisions if d["clock"] == "slow" and d.get("source") != "keepers"]
    assert len(slow) == len(set(slow)), "no decision is logged twice"  # (expert may be None: no sort)
    assert {record[0] for record in slow} == {3, 6}


def test_phase8_runs_from_any_directory_on_the_shipped_corpus(tmp_path: Path, monkeypatch) -> None:
    """No vars.data: the preset reads the tiny Shakespeare corpus shipped inside mosaic-data."""
    monkeypatch.chdir(tmp_path)
    summary = run_preset("phase8_moe", experiment="topk", out=tmp_path / "runs",
                         overrides=[*TINY, "vars.steps=2"], show_progress=False)
    assert summary["status"] == "completed"
    assert summary["eval"]["samples"] == 8
