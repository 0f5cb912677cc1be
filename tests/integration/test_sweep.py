"""`mosaic sweep`: a 2x2 grid with 2 seeds of a tiny preset, run through the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

PRESET = Path(__file__).parent / "data" / "tiny_sweep.yml"
MOSAIC = str(Path(sys.executable).parent / "mosaic")


def mosaic(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    return subprocess.run([MOSAIC, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_grid_of_two_by_two_with_two_seeds(tmp_path: Path) -> None:
    result = mosaic("sweep", str(PRESET), "--grid", "vars.lr=0.01,0.001", "--grid", "trainer.batch_size=2,4",
                    "--seeds", "0,1", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sweep_dir = tmp_path / "tiny_sweep" / "sweeps" / "sweep"
    table = json.loads((sweep_dir / "sweep.json").read_text())
    assert table["metric"] == "final.loss_total" and table["failed"] == []
    combos = {(row["params"]["vars.lr"], row["params"]["trainer.batch_size"]) for row in table["rows"]}
    assert combos == {("0.01", "2"), ("0.01", "4"), ("0.001", "2"), ("0.001", "4")}
    means = [row["mean"] for row in table["rows"]]
    assert means == sorted(means)  # best (lowest loss) first
    runs = []
    for row in table["rows"]:
        assert row["seeds"] == [0, 1] and len(row["values"]) == 2
        for seed, run_dir in zip(row["seeds"], row["run_dirs"], strict=True):
            config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
            trainer = config["targets"][0]["trainer"]
            assert trainer["seed"] == seed
            assert str(trainer["batch_size"]) == row["params"]["trainer.batch_size"]
            assert str(trainer["lr"]) == row["params"]["vars.lr"]
            runs.append(run_dir)
    assert len(set(runs)) == 8
    markdown = (sweep_dir / "sweep.md").read_text()
    assert "| trial | vars.lr | trainer.batch_size |" in markdown and markdown.count("\n| ") == 5
    assert (sweep_dir / "study.db").is_file()


def test_a_metric_missing_from_the_summary_stops_after_one_run(tmp_path: Path) -> None:
    result = mosaic("sweep", str(PRESET), "--grid", "vars.lr=0.01,0.001", "--metric", "final.no_such_metric",
                    "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "no 'no_such_metric' in the run summary" in result.stderr and "Traceback" not in result.stderr
    runs = (tmp_path / "tiny_sweep" / "sweeps" / "sweep" / "runs" / "tiny_sweep").iterdir()
    assert len([run for run in runs if run.name != "latest"]) == 1


def test_bad_sweep_options_fail_before_any_run(tmp_path: Path) -> None:
    for args in (["--grid", "vars.lr"], ["--param", "vars.lr=gaussian:0:1", "--trials", "2"],
                 ["--grid", "vars.lr=0.1", "--param", "trainer.steps=int:1:3"]):
        result = mosaic("sweep", str(PRESET), *args, "--out", str(tmp_path), cwd=tmp_path)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "tiny_sweep").exists()
