"""``mosaic chrono report RUN_DIR`` on a real tiny ChronoMoE run with lifecycle decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mosaic.cli.commands.chrono import chrono, live_experts
from mosaic.cli.main import BUILTIN_COMMANDS
from mosaic.runtime.training.run import run_preset

PREFIX = "targets[3].model.block.ffn.router.chrono"


@pytest.fixture(scope="module")
def lifecycle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chrono_report")
    text = root / "corpus.txt"
    text.write_text("All the world's a stage, and all the men and women merely players.\n" * 30, encoding="utf-8")
    overrides = ["vars.warmup=1", "vars.d_model=16", "vars.block_size=16", "vars.batch_size=4",
                 "vars.n_experts=4", "vars.n_live=3", "vars.steps=6", f"vars.data={text}", "eval.samples=8", "eval.batch_size=8",
                 "targets[3].trainer.log_every=1", f"{PREFIX}.lifecycle.mid_interval=2",
                 f"{PREFIX}.lifecycle.slow_interval=3"]
    summary = run_preset("phase8_moe", experiment="chrono_lifecycle", out=root / "runs", overrides=overrides,
                         show_progress=False)
    return Path(summary["run_dir"])


def test_report_prints_clocks_series_and_decisions(lifecycle_run: Path, tmp_path: Path) -> None:
    assert "chrono" in BUILTIN_COMMANDS
    png = tmp_path / "chrono.png"
    result = CliRunner().invoke(chrono, ["report", str(lifecycle_run), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "router: router.chrono" in result.output
    assert "slow clock: retention 0.99, half-life 69.0 steps" in result.output
    assert "slow (lifecycle) every 3 steps" in result.output
    for key in ("moe_psi_l0", "moe_psi_l1", "moe_beta_absmax_l1", "moe_max_vio_l0", "moe_active_experts_l1"):
        assert key in result.output
    assert "by action:" in result.output and "live experts per layer after edits" in result.output
    assert png.exists() and png.stat().st_size > 0


def test_report_of_a_non_run_directory_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(chrono, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a run directory" in result.output


def test_live_experts_follow_the_edits() -> None:
    def edit(action: str, layer: int, delta: int) -> dict:
        return {"action": action, "layer": layer, "edit": True, "expert_delta": delta}

    decisions = [edit("prune", 0, -1), edit("split", 1, 1), {"action": "none", "layer": 1, "edit": False},
                 edit("merge", 0, -1), {"action": "queued_spawn", "layer": 1, "edit": False}]
    assert live_experts(decisions, 8, 2) == [6, 9]
    # the report keeps no list of edit names: a kind it has never seen counts by its record
    assert live_experts([*decisions, edit("retire", 1, -1)], 8, 2) == [6, 8]


def test_the_runs_decisions_record_their_edits(lifecycle_run: Path) -> None:
    import json

    records = [json.loads(line) for line in (lifecycle_run / "decisions.jsonl").read_text().splitlines()]
    assert records and all(isinstance(r["edit"], bool) and isinstance(r["expert_delta"], int) for r in records)
    assert all(r["expert_delta"] == 0 for r in records if not r["edit"])
