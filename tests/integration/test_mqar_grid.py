"""The MQAR grid: every run's summary.json counts its recurrent state, the grid presets follow one
memory-geometry rule, and the benchmark's JSON, plot and docs table come out of a micro run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mosaic.core.contract.protocols import DeclaresContextLength, RecurrentStateCounter
from mosaic.core.plugins import get_registry
from mosaic.runtime.presets.mqar_grid import memory_geometry
from mosaic.runtime.training.evaluation import state_floats
from mosaic.runtime.training.manifest import load_manifest
from mosaic.runtime.training.run import run_preset

ROOT = Path(__file__).resolve().parents[2]
TINY = ["trainer.steps=1", "trainer.warmup_steps=1", "trainer.batch_size=2", "eval.samples=2", "eval.batch_size=2"]
D, CONV_TAIL, BANK, CELL = 64, 6 * 64, 8 * 8, 32 + 64 + 1  # the grid's MOSAIC block: d 64, conv 7, 8 x 8 bank


def _summary(tmp_path: Path, preset: str, *extra: str) -> dict[str, Any]:
    result = run_preset(preset, out=tmp_path, show_progress=False, overrides=[*TINY, *extra])
    summary: dict[str, Any] = json.loads((Path(result["run_dir"]) / "summary.json").read_text())
    return summary


@pytest.mark.parametrize(("preset", "extra", "per_layer"), [
    # KV cache at the context length: keys and values, L x d each
    ("mqar_transformer_128_8", [], 2 * 128 * D),
    # 2 heads of 32 x 32 fast weights, plus q, k, v's conv tail of 3 inputs
    ("mqar_delta_128_8", [], 2 * 32 * 32 + 3 * 3 * D),
    # 2 buckets x 16 slots + a scratch row, each cell's write-time utility, the all-bucket summary,
    # the bank and the conv tail
    ("mqar_mosaic_128_8", ["vars.tf_warmup=0", "vars.tf_cooldown=0"],
     (2 * 16 + 1) * CELL + 2 * 16 + CELL + BANK + CONV_TAIL),
    ("mqar_mosaic_128_8", ["vars.tf_warmup=0", "vars.tf_cooldown=0", "vars.memory=memory.off", "vars.aux_gate_weight=0", "vars.aux_bits_weight=0"],
     BANK + CONV_TAIL),
])
def test_summary_json_counts_the_recurrent_state(tmp_path: Path, preset: str, extra: list[str],
                                                 per_layer: int) -> None:
    state = _summary(tmp_path, preset, *extra)["state_floats"]
    assert state == {"per_layer": [per_layer, per_layer], "total": 2 * per_layer, "context_length": 128}


def test_state_counters_are_found_by_protocol_and_unknown_lengths_are_not_guessed() -> None:
    registry = get_registry()
    experiment = load_manifest("mqar_delta_64_4", registry).experiments[0]
    model, dataset = experiment.model.build(registry), experiment.dataset.build(registry)
    assert isinstance(model, RecurrentStateCounter) and isinstance(dataset, DeclaresContextLength)
    assert state_floats(model, dataset) == {"per_layer": [2624, 2624], "total": 5248, "context_length": 64}
    assert state_floats(torch.nn.Linear(2, 2), dataset) is None  # a model that does not count its state
    assert state_floats(model, [1, 2, 3]) is None  # a dataset without a context length: no length assumed


def test_grid_memory_follows_one_rule_that_gives_the_small_point() -> None:
    registry = get_registry()
    small = load_manifest("mqar_mosaic", registry).experiments[0].model.config.block
    assert memory_geometry(4) == (small.mem_buckets, small.mem_assoc)
    for seq_len, pairs in ((128, 8), (256, 16), (512, 64)):
        experiment = load_manifest(f"mqar_mosaic_{seq_len}_{pairs}", registry).experiments[0]
        block = experiment.model.config.block
        assert (block.mem_buckets, block.mem_assoc) == memory_geometry(pairs)
        assert block.mem_buckets * block.mem_assoc == 4 * pairs
        # buckets multiply past 16 pairs: 32 pairs in one bucket never started recalling at (512, 64)
        assert pairs / block.mem_buckets <= 8 and block.mem_buckets == max(2, pairs // 8)
        # from 16 pairs on only strong writes move a bucket's ring (docs/mqar.md: (256, 16) reached
        # 0.99 so, and not in its whole budget with every soft write moving it)
        assert block.mem_ring_advance_at == (0.5 if pairs >= 16 else 0.0)
        data = experiment.dataset.config
        assert (data.seq_len, data.num_kv_pairs, data.vocab_size) == (seq_len, pairs, 8192)
        trainer = experiment.trainer
        assert data.num_samples >= trainer.batch_size * trainer.steps  # a fresh training stream
        for model in ("transformer", "delta"):
            other = load_manifest(f"mqar_{model}_{seq_len}_{pairs}", registry).experiments[0]
            assert other.dataset.config.num_samples == data.num_samples
            assert (other.trainer.batch_size, other.trainer.steps, other.trainer.lr) == (
                trainer.batch_size, trainer.steps, trainer.lr)
            assert other.eval_dataset is not None and other.eval_dataset.config.split == "eval"


def _renderer() -> Any:
    spec = importlib.util.spec_from_file_location("docs_renderer_mqar", ROOT / "docs" / "renderers" / "mqar.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_writes_merged_json_plot_and_table_from_a_micro_run(tmp_path: Path) -> None:
    out, png = tmp_path / "mqar.json", tmp_path / "mqar.png"
    out.write_text(json.dumps({"benchmark": "mqar", "anchors": [], "rows": [
        {"point": "64,4", "seq_len": 64, "num_kv_pairs": 4, "model": "transformer", "variant": "full", "seed": 0,
         "micro": True, "status": "completed", "lr": 0.006, "lr_sweep": [], "sweep_steps": None, "batch_size": 4, "steps": 1,
         "accuracy": 0.5, "steps_to_0.99": None, "seconds_to_0.99": None, "machine": "earlier",
         "state_floats": {"per_layer": [1, 1], "total": 2}}]}))
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--micro", "--point", "128,8",
               "--model", "mosaic,delta", "--ablations", "--steps", "2", "--sweep-steps", "1",
               "--lrs", "0.003,0.006", "--out", str(out), "--plot", str(png)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    rows = {(r["point"], r["model"], r["variant"]): r for r in data["rows"]}
    assert set(rows) == {("64,4", "transformer", "full"), ("128,8", "mosaic", "full"),
                         ("128,8", "mosaic", "memory_off"), ("128,8", "mosaic", "memory_small"),
                         ("128,8", "delta", "full")}  # the earlier row is kept
    mosaic, off, small = (rows[("128,8", "mosaic", v)] for v in ("full", "memory_off", "memory_small"))
    assert [r["lr"] for r in mosaic["lr_sweep"]] == [0.003, 0.006] and mosaic["lr"] in (0.003, 0.006)
    assert off["state_floats"]["total"] < small["state_floats"]["total"] < mosaic["state_floats"]["total"]
    assert {a["model"] for a in data["anchors"]} == {"DeltaNet (published)", "Mamba-2 (published)"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = _renderer().render(tmp_path)
    assert "| (128,8) | mosaic | memory_off | 0 |" in table
    assert "python benchmarks/bench_mqar.py --point 512,64 --model mosaic --ablations" in table  # not run yet
    assert "published figures, not our runs" in table
    sweeps = {(s["point"], s["model"]): s for s in data["sweeps"]}  # kept apart, as soon as each ends
    assert set(sweeps) == {("128,8", "mosaic"), ("128,8", "delta")}
    assert "| (128,8) | delta | 4 x 1 |" in table
    # --lr at the rate a recorded sweep chose: the row carries that sweep
    best = sweeps[("128,8", "delta")]["best_lr"]
    subprocess.run([*command[:5], "--model", "delta", "--lr", str(best), "--steps", "1", "--out", str(out),
                    "--plot", str(png)], check=True, capture_output=True, timeout=300)
    again = next(r for r in json.loads(out.read_text())["rows"] if (r["point"], r["model"]) == ("128,8", "delta"))
    assert again["lr_sweep"] == sweeps[("128,8", "delta")]["runs"] and again["sweep_steps"] == 1


def test_micro_rows_never_go_into_the_docs_json() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--micro"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--micro needs --out" in result.stderr


def test_a_run_stopped_at_its_target_names_the_budget_it_had(tmp_path: Path) -> None:
    row = {"point": "128,8", "seq_len": 128, "num_kv_pairs": 8, "model": "mosaic", "variant": "full", "seed": 0,
           "status": "target_reached", "stop_at_accuracy": 0.99, "lr": 0.006, "lr_sweep": [], "batch_size": 64,
           "steps": 1000, "accuracy": 0.9934, "steps_to_0.99": 1000, "seconds_to_0.99": 779.2, "machine": "m",
           "state_floats": {"per_layer": [3778, 3778], "total": 7556}}
    (tmp_path / "mqar.json").write_text(json.dumps({"benchmark": "mqar", "anchors": [], "rows": [row]}))
    table = _renderer().render(tmp_path)
    assert "| 64 x 1000 of 64 x 2000 (stopped at 0.99) | 0.9934 | 1000 | 779.2 |" in table


def test_bench_refuses_an_unknown_variant(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--variants", "memory_big",
                             "--micro", "--out", str(tmp_path / "mqar.json")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--variants memory_big: one of full, memory_off, memory_small" in result.stderr


def test_bench_ring_advance_variant_takes_a_threshold_below_one(tmp_path: Path) -> None:
    """``ring_advance_G`` trains with ``mem_ring_advance_at = G``: a threshold of 1 or more would stop
    every write from moving its ring, and a name without a number is no threshold."""
    for bad in ("ring_advance_1.5", "ring_advance_x"):
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--variants", bad,
                                 "--micro", "--out", str(tmp_path / "mqar.json")], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and f"--variants {bad}: one of" in result.stderr, result.stderr
        assert "ring_advance_G with 0 <= G < 1" in result.stderr


def test_bench_resume_finishes_a_run_cut_short_and_counts_both_parts(tmp_path: Path) -> None:
    out, png = tmp_path / "mqar.json", tmp_path / "mqar.png"
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--micro", "--out", str(out), "--plot", str(png)]
    first = [*bench, "--point", "128,8", "--model", "mosaic", "--lr", "0.006", "--steps", "3", "--eval-every", "1",
             "--max-seconds", "0.001", "--keep-runs", str(tmp_path / "runs")]  # stops after its first step
    subprocess.run(first, check=True, capture_output=True, timeout=300)
    cut = json.loads(out.read_text())["rows"][0]
    assert cut["status"] == "time_limit" and cut["steps"] == 1
    run = next((tmp_path / "runs" / "mqar_mosaic_128_8").glob("2*"))
    subprocess.run([*bench, "--resume", str(run), "--max-seconds", "600"], check=True, capture_output=True, timeout=300)
    (row,) = json.loads(out.read_text())["rows"]  # the resumed run's row replaces the cut one
    assert row["status"] == "completed" and row["steps"] == 3 and row["lr"] == 0.006 and row["seed"] == 0
    resumed = row["resumed"]
    assert resumed["from_step"] == 1 and resumed["run_dir"] == str(run)
    assert resumed["first_part"]["steps"] == 1 and resumed["first_part"]["command"] == cut["command"]
    assert resumed["first_part"]["wall_seconds"] == cut["wall_seconds"]
    assert row["wall_seconds"] == pytest.approx(cut["wall_seconds"] + resumed["resumed_part_seconds"], abs=0.11)
    steps, seconds = [s for s, _, _ in row["curve_step_seconds_accuracy"]], [t for _, t, _ in row["curve_step_seconds_accuracy"]]
    assert steps == [1, 2, 3] and seconds[1] >= cut["wall_seconds"] and seconds == sorted(seconds)
    table = _renderer().render(tmp_path)
    assert "| 4 x 3 (resumed at step 1) |" in table and "stopped by time_limit at step 1 (0.0000, " in table
    again = subprocess.run([*bench, "--resume", str(run)], capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "only a run stopped by time_limit or interrupted" in again.stderr


def test_bench_delta_heads_variant_trades_heads_for_state(tmp_path: Path) -> None:
    """``heads_H`` runs the delta baseline with H heads (state d_model² / H per layer plus the conv
    tail): one head holds more state than the preset's two. MOSAIC and the Transformer ignore it."""
    out, png = tmp_path / "mqar.json", tmp_path / "mqar.png"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--micro", "--point", "128,8",
               "--model", "delta,transformer", "--variants", "full,heads_1", "--lr", "0.006", "--steps", "1",
               "--out", str(out), "--plot", str(png)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    rows = {(r["model"], r["variant"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("delta", "full"), ("delta", "heads_1"), ("transformer", "full")}
    one_head, two_heads = rows[("delta", "heads_1")]["state_floats"], rows[("delta", "full")]["state_floats"]
    assert one_head["per_layer"][0] - two_heads["per_layer"][0] == 64 * 64 - 2 * 32 * 32
    for bad in ("heads_0", "heads_x"):
        result = subprocess.run([*command[:2], "--variants", bad, "--micro", "--out", str(out)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "heads_H with H >= 1 (delta)" in result.stderr, result.stderr


def test_the_equal_state_table_compares_each_delta_row_with_mosaic_at_no_more_state(tmp_path: Path) -> None:
    def row(model: str, variant: str, state: int, accuracy: float, point: str = "128,8") -> dict[str, Any]:
        return {"point": point, "seq_len": int(point.split(",")[0]), "num_kv_pairs": 8, "model": model,
                "variant": variant, "seed": 0, "status": "completed", "lr": 0.006, "lr_sweep": [], "batch_size": 64,
                "steps": 10, "accuracy": accuracy, "steps_to_0.99": None, "seconds_to_0.99": None, "machine": "m",
                "state_floats": {"per_layer": [state, state], "total": 2 * state}}

    rows = [row("mosaic", "full", 3778, 0.99), row("mosaic", "memory_small", 1000, 0.40),
            row("delta", "full", 2624, 0.30), row("delta", "heads_1", 4672, 0.995),
            row("delta", "full", 2624, 0.5, point="256,16"),
            row("delta", "heads_1", 4672, 0.0002, point="512,64"), row("mosaic", "memory_small", 4000, 0.0003, point="512,64")]
    (tmp_path / "mqar.json").write_text(json.dumps({"benchmark": "mqar", "anchors": [], "rows": rows}))
    table = _renderer().render(tmp_path)
    # the smaller memory beats the delta rule at its own state; the full one is compared with the
    # larger delta state, and loses; a point without a MOSAIC row establishes nothing
    assert "| (128,8) | full | 2,624 | 0.3000 | memory_small, 0 | 1,000 | 0.4000 | yes |" in table
    assert "| (128,8) | heads_1 | 4,672 | 0.9950 | full, 0 | 3,778 | 0.9900 | no |" in table
    assert "| (256,16) | full | 2,624 | 0.5000 | none run at this state | - | - | not established |" in table
    # two models at chance compare nothing, whichever is higher
    assert "| (512,64) | heads_1 | 4,672 | 0.0002 | memory_small, 0 | 4,000 | 0.0003 | neither recalls" in table


def test_a_diverged_run_is_a_row_that_says_so(tmp_path: Path) -> None:
    """A rate too high for a point is a result, not a crash: the run's row says diverged, at which
    step and why, and the benchmark goes on to the next model."""
    out, png = tmp_path / "mqar.json", tmp_path / "mqar.png"
    # a guard that trips on any loss above half its running median: every run diverges at step 6
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_mqar.py"), "--micro", "--point", "128,8",
               "--model", "delta,transformer", "--lr", "0.006", "--steps", "12", "--eval-every", "4",
               "--set", "trainer.divergence_factor=0.5", "--out", str(out), "--plot", str(png)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"delta", "transformer"}
    for row in rows.values():
        assert row["status"] == "diverged" and row["steps"] < 12 and "diverged at step" in row["error"]
        assert row["accuracy"] == row["curve_step_seconds_accuracy"][-1][2]  # the last evaluation reached
        assert "--set trainer.divergence_factor=0.5" in row["command"]


def test_rows_and_sweeps_trained_before_the_straight_through_change_are_marked(tmp_path: Path) -> None:
    def row(variant: str, marked: bool) -> dict[str, Any]:
        return {"point": "512,64", "seq_len": 512, "num_kv_pairs": 64, "model": "mosaic", "variant": variant,
                "seed": 0, "status": "completed", "lr": 0.006, "lr_sweep": [], "batch_size": 16, "steps": 10,
                "accuracy": 0.5, "steps_to_0.99": None, "seconds_to_0.99": None, "machine": "m",
                "state_floats": {"per_layer": [1, 1], "total": 2},
                **({"straight_through": "teacher_forced_too"} if marked else {})}

    sweep = {"point": "512,64", "model": "mosaic", "batch_size": 16, "steps": 300, "best_lr": 0.006,
             "runs": [{"lr": 0.006, "accuracy": 0.5}, {"lr": 0.012, "accuracy": 0.4}], "machine": "m",
             "straight_through": "teacher_forced_too"}
    data = {"benchmark": "mqar", "anchors": [], "rows": [row("forced_ste", True), row("full", False)], "sweeps": [sweep]}
    (tmp_path / "mqar.json").write_text(json.dumps(data))
    table = _renderer().render(tmp_path)
    assert "| (512,64) | mosaic | forced_ste † | 0 |" in table and "| (512,64) | mosaic | full | 0 |" in table
    assert "| (512,64) | mosaic † | 16 x 300 |" in table
    assert "† trained before commit 0bc9b62" in table
    data["rows"], data["sweeps"] = [row("full", False)], []
    (tmp_path / "mqar.json").write_text(json.dumps(data))
    assert "†" not in _renderer().render(tmp_path)
