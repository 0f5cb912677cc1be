"""The sweep runner's parsing, search and table, with training replaced by a known function."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mosaic.runtime.training import sweep as sweep_module
from mosaic.runtime.training.sweep import SweepError, SweepParam, SweepSpec, metric_value, run_sweep


@pytest.mark.parametrize(
    ("spec", "kind", "values", "low", "high"),
    [
        ("trainer.lr=loguniform:1e-4:1e-2", "loguniform", (), 1e-4, 1e-2),
        ("vars.d_model=choice:32,64", "choice", ("32", "64"), 0.0, 0.0),
        ("trainer.steps=int:2:6", "int", (), 2.0, 6.0),
        ("x=uniform:-1:1", "uniform", (), -1.0, 1.0),
    ],
)
def test_random_parameters_parse(spec, kind, values, low, high) -> None:
    param = SweepParam.random(spec)
    assert (param.kind, param.values, param.low, param.high) == (kind, values, low, high)


@pytest.mark.parametrize(
    "spec", ["lr", "lr=", "lr=normal:0:1", "lr=uniform:1", "lr=uniform:2:1", "lr=loguniform:0:1",
             "lr=int:1.5:3", "lr=choice:", "lr=uniform:nan:1"],
)
def test_bad_random_parameters_are_named(spec) -> None:
    with pytest.raises(SweepError, match="lr"):
        SweepParam.random(spec)


def test_grid_rejects_repeats_and_empty_values() -> None:
    with pytest.raises(SweepError, match="twice"):
        SweepParam.grid("lr=1,1")
    with pytest.raises(SweepError, match="empty"):
        SweepParam.grid("lr=1,,2")


def test_metric_lookup_is_dotted_and_strict() -> None:
    summary = {"final": {"loss_total": 1.5}, "eval": {"answer_exact": 0.25, "name": "x"}}
    assert metric_value(summary, "eval.answer_exact") == 0.25
    with pytest.raises(SweepError, match="no 'missing'"):
        metric_value(summary, "final.missing")
    with pytest.raises(SweepError, match="not a number"):
        metric_value(summary, "eval.name")


def test_random_search_runs_every_seed_of_each_trial_and_sorts(tmp_path: Path, monkeypatch) -> None:
    class Manifest:
        name = "fake"

    monkeypatch.setattr("mosaic.runtime.training.manifest.load_manifest", lambda *a, **k: Manifest())
    calls: list[list[str]] = []

    def run_one(overrides):
        calls.append(list(overrides))
        values = dict(item.split("=", 1) for item in overrides)
        lr, seed = float(values["trainer.lr"]), int(values["trainer.seed"])
        return {"final": {"loss_total": (math.log10(lr) + 3) ** 2 + 0.01 * seed}, "run_dir": f"r{len(calls)}"}

    spec = SweepSpec(preset="fake", params=(SweepParam.random("trainer.lr=loguniform:1e-5:1e-1"),),
                     seeds=(0, 1, 2), trials=6, fixed=("trainer.steps=3",))
    table = run_sweep(spec, out=tmp_path, registry=None, run_one=run_one)  # type: ignore[arg-type]
    assert len(calls) == 18 and all("trainer.steps=3" in c for c in calls)
    assert len(table["rows"]) == 6
    means = [row["mean"] for row in table["rows"]]
    assert means == sorted(means)
    best_lr = float(table["rows"][0]["params"]["trainer.lr"])
    assert all(abs(math.log10(best_lr) + 3) <= abs(math.log10(float(r["params"]["trainer.lr"])) + 3)
               for r in table["rows"])
    assert (tmp_path / "fake" / "sweeps" / "sweep" / "sweep.md").is_file()


def test_a_failing_run_fails_its_trial_not_the_sweep(tmp_path: Path, monkeypatch) -> None:
    from mosaic.core.errors import TrainingError

    class Manifest:
        name = "fake"

    monkeypatch.setattr("mosaic.runtime.training.manifest.load_manifest", lambda *a, **k: Manifest())

    def run_one(overrides):
        if "trainer.lr=3.0" in overrides:
            raise TrainingError("loss diverged")
        return {"final": {"loss_total": 1.0}}

    spec = SweepSpec(preset="fake", params=(SweepParam.grid("trainer.lr=0.1,3.0"),))
    table = run_sweep(spec, out=tmp_path, registry=None, run_one=run_one)  # type: ignore[arg-type]
    assert [row["params"] for row in table["rows"]] == [{"trainer.lr": "0.1"}]
    assert table["failed"][0]["params"] == {"trainer.lr": "3.0"} and "diverged" in table["failed"][0]["error"]
    assert sweep_module.render_markdown(table).count("failed") == 1


def test_spec_validation() -> None:
    grid = SweepParam.grid("a=1,2")
    with pytest.raises(SweepError, match="at least one"):
        SweepSpec(preset="p", params=())
    with pytest.raises(SweepError, match="not both"):
        SweepSpec(preset="p", params=(grid, SweepParam.random("b=int:1:2")), trials=1)
    with pytest.raises(SweepError, match="--trials N"):
        SweepSpec(preset="p", params=(SweepParam.random("b=int:1:2"),))
    with pytest.raises(SweepError, match="more than the grid"):
        SweepSpec(preset="p", params=(grid,), trials=3)
    with pytest.raises(SweepError, match="distinct"):
        SweepSpec(preset="p", params=(grid,), seeds=(1, 1))
