"""`mosaic run`, `presets`, `eval` and `plot` on tiny test components (registry injected via obj)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mosaic.cli.commands.eval import eval_command
from mosaic.cli.commands.plot import plot
from mosaic.cli.commands.presets import presets
from mosaic.cli.commands.run import run
from mosaic.cli.main import BUILTIN_COMMANDS
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry


@pytest.fixture(scope="module")
def registry():
    return tiny_registry()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, registry) -> Path:
    root = tmp_path_factory.mktemp("cli")
    preset = root / "tiny.yml"
    preset.write_text(TINY_PRESET)
    result = CliRunner().invoke(run, [str(preset), "--out", str(root / "runs"), "--steps", "20", "--no-progress",
                                      "--set", "vars.d_model=12"], obj={"registry": registry})
    assert result.exit_code == 0, result.output
    assert "aux_commitment_ce" in result.output and "run directory:" in result.output
    assert "commitment accuracy per class" in result.output
    return Path(result.output.rsplit("run directory:", 1)[1].strip())


def test_commands_are_wired_into_the_group() -> None:
    assert {"run", "presets", "eval", "plot"} <= set(BUILTIN_COMMANDS)


def test_run_applies_overrides_and_steps(finished_run: Path) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["steps"] == 20
    assert "d_model: 12" in (finished_run / "config.yaml").read_text()


def test_resume_through_the_cli(finished_run: Path, registry) -> None:
    result = CliRunner().invoke(run, ["--resume", str(finished_run), "--steps", "25", "--no-progress"],
                                obj={"registry": registry})
    assert result.exit_code == 0, result.output
    assert json.loads((finished_run / "summary.json").read_text())["steps"] == 25


def test_eval_rewrites_the_summary(finished_run: Path, registry) -> None:
    result = CliRunner().invoke(eval_command, [str(finished_run), "--samples", "16"], obj={"registry": registry})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["samples"] == 16 and "commitment" in report
    assert json.loads((finished_run / "summary.json").read_text())["eval"]["samples"] == 16


def test_plot_writes_a_png(finished_run: Path) -> None:
    result = CliRunner().invoke(plot, [str(finished_run)])
    assert result.exit_code == 0, result.output
    assert (finished_run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_run_without_preset_is_a_usage_error(registry) -> None:
    result = CliRunner().invoke(run, [], obj={"registry": registry})
    assert result.exit_code == 2 and "give a PRESET" in result.output


def test_run_reports_bad_preset_without_traceback(tmp_path: Path, registry) -> None:
    preset = tmp_path / "bad.yml"
    preset.write_text(TINY_PRESET.replace("lr: 0.01", "lr: fast"))
    result = CliRunner().invoke(run, [str(preset), "--out", str(tmp_path)], obj={"registry": registry})
    assert result.exit_code == 1
    assert "$.targets[0].trainer.lr (line" in result.output and "Traceback" not in result.output


def test_presets_list_show_validate(tmp_path: Path, registry) -> None:
    listed = CliRunner().invoke(presets, ["list"], obj={"registry": registry})
    assert listed.exit_code == 0 and "mosaic_commitment" in listed.output
    preset = tmp_path / "tiny.yml"
    preset.write_text(TINY_PRESET + "    budget:\n      memory_gib: 0.000001\n      batch_size: 4\n")
    shown = CliRunner().invoke(presets, ["show", str(preset), "--estimate", "--batch", "4"], obj={"registry": registry})
    assert shown.exit_code == 0, shown.output
    assert "parameters" in shown.output and "activations" in shown.output and "EXCEEDS" in shown.output
    validated = CliRunner().invoke(presets, ["validate", str(preset)], obj={"registry": registry})
    assert validated.exit_code == 0 and "exceeds budget" in validated.output
