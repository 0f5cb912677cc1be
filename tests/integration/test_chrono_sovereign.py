"""The sovereign core on a real (tiny) ``phase8_moe`` lifecycle run through the installed ``mosaic``:
the mid keeper process is killed mid-run, the run reports it ``Degraded``, restarts it and
completes; ``mosaic audit verify`` passes on the run's kernel log (key outside the run directory);
``mosaic chrono report`` lists the identity section and the per-layer geometry. The identity
events themselves need a few hundred steps: tests/acceptance/test_chrono_sovereign.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosaic.runtime.testing.chrono_run import KilledKeeperRun, run_killing_keeper

TINY = [
    "vars.warmup=1",
    "vars.d_model=16",
    "vars.block_size=16",
    "vars.batch_size=4",
    "vars.n_experts=4",
    "vars.n_live=3",
    "vars.steps=40",
    "vars.mid_interval=2",
    "vars.slow_interval=10",
    "vars.relaxation=4",
    "vars.window=4",
    "eval.samples=8",
    "eval.batch_size=8",
    "targets[3].trainer.log_every=1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> KilledKeeperRun:
    root = tmp_path_factory.mktemp("sovereign")
    text = root / "corpus.txt"
    text.write_text(
        "All the world's a stage, and all the men and women merely players.\n" * 30, encoding="utf-8"
    )
    return run_killing_keeper(root, [*TINY, f"vars.data={text}"], clock="mid", kill_after_step=8, timeout=300)


def _decisions(run: KilledKeeperRun) -> list[dict]:
    return [json.loads(line) for line in (run.run_dir / "decisions.jsonl").read_text().splitlines()]


def test_a_killed_keeper_is_degraded_restarted_and_the_run_completes(run: KilledKeeperRun) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.killed_pid is not None and run.killed_at_step is not None
    assert json.loads((run.run_dir / "summary.json").read_text())["status"] == "completed"
    degraded = [d for d in _decisions(run) if d["action"] == "degraded"]
    assert len(degraded) == 1 and degraded[0]["clock"] == "mid" and "crashed" in degraded[0]["trigger"]
    assert degraded[0]["train_step"] >= run.killed_at_step
    keepers = json.loads((run.run_dir / "keepers.json").read_text())
    assert keepers["mid"]["restarts"] == 1 and keepers["mid"]["pid"] != run.killed_pid
    assert keepers["mid"]["paused_ticks"] == 1  # its clock skipped the tick that found it dead
    assert keepers["fast"]["restarts"] == keepers["slow"]["restarts"] == 0
    audit = [json.loads(line) for line in (run.run_dir / "chrono_audit.jsonl").read_text().splitlines()]
    assert [r["data"]["component"] for r in audit if r["kind"] == "keeper.degraded"] == ["keeper.mid"]


def test_audit_verify_passes_with_the_key_outside_the_run(run: KilledKeeperRun) -> None:
    assert not [p for p in run.run_dir.rglob("*") if p.name.endswith(".key")]
    assert (Path(run.env["MOSAIC_KEY_DIR"]) / "audit.key").is_file()
    result = run.mosaic("audit", "verify", str(run.run_dir / "chrono_audit.jsonl"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checkpoint signature verified" in result.stdout


def test_chrono_report_lists_identity_section_and_geometry_per_layer(run: KilledKeeperRun) -> None:
    result = run.mosaic("chrono", "report", str(run.run_dir))
    assert result.returncode == 0, result.stderr
    assert "identity events (kernel audit log)" in result.stdout
    assert "Degraded at step" in result.stdout and "keeper.mid crashed" in result.stdout
    rows = result.stdout.split("geodesic dim  signatures\n")[1].splitlines()[:2]
    assert [int(r.split()[0]) for r in rows] == [0, 1]
    assert all(float(r.split()[3]) >= 1.0 and int(r.split()[4]) == 20 for r in rows)
