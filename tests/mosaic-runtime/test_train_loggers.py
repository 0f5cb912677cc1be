"""Metric loggers as plugins: jsonl always, csv and tensorboard when a preset lists them, a
third-party logger through ``register_loggers``, and a failing optional logger only a warning."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from mosaic.core.errors import UnknownComponentError
from mosaic.core.plugins import PluginHost, PluginSelection, hookimpl
from mosaic.runtime import plugin as runtime_plugin
from mosaic.runtime.testing.tiny_training import TINY_PRESET, TinyPlugin
from mosaic.runtime.training.run import run_preset

SHORT = TINY_PRESET.replace("steps: 30", "steps: 20")


class BrokenLogger:
    """Fails on its third record, as a logger whose service went away mid-run would."""

    def __init__(self) -> None:
        self.records = 0

    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        (Path(run_path) / "broken.txt").write_text("opened\n")

    def log(self, record: dict[str, Any]) -> None:
        self.records += 1
        if self.records == 3:
            raise ConnectionError("tracking server unreachable")

    def close(self) -> None:
        raise AssertionError("a dropped logger is never closed")


class UnopenableLogger(BrokenLogger):
    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        raise PermissionError("no token")


class ThirdPartyLoggers:
    @staticmethod
    @hookimpl
    def register_loggers(register: Any) -> None:
        register("logger.broken", BrokenLogger, summary="fails mid-run")
        register("logger.unopenable", UnopenableLogger, summary="fails at open")


@pytest.fixture(scope="module")
def registry():
    host = PluginHost(PluginSelection())
    host.add_plugin(runtime_plugin, "mosaic-runtime", distribution="mosaic-runtime")
    host.add_plugin(TinyPlugin, "tiny-test", distribution="tiny-test")
    host.add_plugin(ThirdPartyLoggers, "loggers-test", distribution="loggers-test")
    assert not host.failures, [record.error for record in host.failures]
    return host.registry


def train(tmp_path: Path, registry, loggers: list[str], **kwargs) -> Path:
    preset = tmp_path / "tiny.yml"
    preset.write_text(SHORT.replace("      threads: 1\n", f"      threads: 1\n      loggers: {json.dumps(loggers)}\n"))
    summary = run_preset(str(preset), registry=registry, out=tmp_path / "runs", show_progress=False, **kwargs)
    return Path(summary["run_dir"])


def jsonl_steps(run: Path, split: str = "train") -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_jsonl_is_written_whatever_the_preset_lists(tmp_path: Path, registry) -> None:
    run = train(tmp_path, registry, ["logger.csv"])
    assert jsonl_steps(run) == [1, 5, 10, 15, 20]


def test_csv_has_one_file_per_split_matching_the_jsonl(tmp_path: Path, registry) -> None:
    run = train(tmp_path, registry, ["logger.jsonl", "logger.csv"])
    train_rows = csv_rows(run / "metrics_train.csv")
    assert [int(row["step"]) for row in train_rows] == jsonl_steps(run)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert float(train_rows[-1]["loss_total"]) == pytest.approx([r for r in records if r["split"] == "train"][-1]["loss_total"])
    assert list(train_rows[0])[0] == "step" and "split" not in train_rows[0]
    eval_rows = csv_rows(run / "metrics_eval.csv")
    assert [int(row["step"]) for row in eval_rows] == [20] and "commitment.per_class_accuracy.open" in eval_rows[0]


def test_resume_trims_the_csv_like_the_jsonl(tmp_path: Path, registry) -> None:
    run = train(tmp_path, registry, ["logger.csv"])
    (run / "checkpoints" / "step_00000020.pt").unlink()  # resume from step 10: rows after it are redone
    run_preset(None, registry=registry, resume=run, steps=25, show_progress=False)
    assert [int(row["step"]) for row in csv_rows(run / "metrics_train.csv")] == [1, 5, 10, 15, 20, 25]
    assert [int(row["step"]) for row in csv_rows(run / "metrics_eval.csv")] == [25]


def test_a_failing_optional_logger_is_a_warning_not_a_crash(tmp_path: Path, registry) -> None:
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        run = train(tmp_path, registry, ["logger.broken", "logger.unopenable", "logger.csv"])
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    failed = {entry["logger"]: entry["error"] for entry in logs if entry["event"] == "logger_failed"}
    assert failed == {"logger.broken": "ConnectionError: tracking server unreachable",
                      "logger.unopenable": "PermissionError: no token"}
    assert [int(row["step"]) for row in csv_rows(run / "metrics_train.csv")] == jsonl_steps(run)


def test_tensorboard_writes_event_files_or_names_its_extra(tmp_path: Path, registry) -> None:
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        run = train(tmp_path, registry, ["logger.tensorboard"])
    failed = [entry["error"] for entry in logs if entry["event"] == "logger_failed"]
    if importlib.util.find_spec("tensorboard") is None:
        assert failed and "pip install 'mosaic-runtime[tensorboard]'" in failed[0]
        return
    assert not failed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [scalar.step for scalar in events.Scalars("train/loss_total")] == jsonl_steps(run)
    assert "eval/token_accuracy" in events.Tags()["scalars"]


def test_a_misspelt_logger_is_an_error_before_the_run_directory_exists(tmp_path: Path, registry) -> None:
    with pytest.raises(UnknownComponentError, match="logger.cvs"):
        train(tmp_path, registry, ["logger.cvs"])
    assert not (tmp_path / "runs").exists()
