"""Issue 22's "Done when" on a real phase-8 run: the lifecycle runs through the kernel with keepers
as processes, a killed keeper degrades and comes back, identity events happen and have effects,
``mosaic chrono report`` lists them with the geometry, and ``mosaic audit verify`` passes.

Not in CI (``nox -s acceptance``): the 300-step ``phase8_moe`` ``chrono_lifecycle`` run takes about
two minutes on the 2-core CPU dev machine (tests/integration/test_chrono_sovereign.py is the fast
version of the plumbing). Thresholds are the preset's (docs/chronomoe.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosaic.runtime.testing.chrono_run import KilledKeeperRun, run_killing_keeper


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> KilledKeeperRun:
    root = tmp_path_factory.mktemp("sovereign")
    return run_killing_keeper(
        root, ["vars.steps=300", "eval.samples=16", "eval.batch_size=16"], clock="mid", kill_after_step=60
    )


def test_the_run_completes_after_its_mid_keeper_is_killed(run: KilledKeeperRun) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.killed_pid is not None
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    degraded = [d for d in _jsonl(run.run_dir / "decisions.jsonl") if d["action"] == "degraded"]
    assert [d["clock"] for d in degraded] == ["mid"] and "crashed" in degraded[0]["trigger"]
    keepers = json.loads((run.run_dir / "keepers.json").read_text())
    assert keepers["mid"]["restarts"] == 1 and keepers["mid"]["pid"] != run.killed_pid
    # the restarted keeper proposes again: mid-clock proposals after the Degraded step
    after = [
        d
        for d in _jsonl(run.run_dir / "decisions.jsonl")
        if d["clock"] == "mid"
        and d["action"].endswith("_epoch")
        and d["train_step"] > degraded[0]["train_step"]
    ]
    assert after, "the restarted mid keeper made no proposal"


def test_identity_events_happen_with_effects(run: KilledKeeperRun) -> None:
    audit = _jsonl(run.run_dir / "chrono_audit.jsonl")
    kinds = {r["kind"] for r in audit}
    assert {"identity.scar", "identity.reflex", "identity.epoch", "keeper.degraded"} <= kinds
    decisions = _jsonl(run.run_dir / "decisions.jsonl")
    # a scar blocks a later proposal of the same edit on the same expert
    scars = {r["data"]["key"]: r["seq"] for r in audit if r["kind"] == "identity.scar"}
    blocks = [r for r in audit if r["kind"] == "kernel.block" and r["data"]["scar"] in scars]
    assert blocks and all(b["seq"] > scars[b["data"]["scar"]] for b in blocks)
    assert any(d["action"] == "blocked_by_scar" for d in decisions)
    for record in (r for r in audit if r["kind"] == "identity.scar"):
        assert record["data"]["payload"]["delta_loss"] > 0.005  # the preset's scar_delta_loss
    # a crystallised reflex's beta stays frozen: k at every later signature equals k at freezing
    signatures = _jsonl(run.run_dir / "chrono_signatures.jsonl")
    frozen = [r["data"] for r in audit if r["kind"] == "identity.reflex.frozen"]
    assert frozen
    for reflex in frozen:
        later = [s["k"][reflex["expert"]] for s in signatures if s["layer"] == reflex["layer"]][-3:]
        assert later and all(k == pytest.approx(reflex["k"], abs=1e-6) for k in later)
    # an epoch boundary has its before and after snapshots
    epochs = [r["data"] for r in audit if r["kind"] == "identity.epoch.snapshots"]
    assert epochs and all(
        e["before"] is not None and e["after"]["step"] > e["before"]["step"] for e in epochs
    )
    assert not any(r["kind"] == "identity.revert" for r in audit)


def test_audit_verify_passes_on_the_runs_log(run: KilledKeeperRun) -> None:
    log = run.run_dir / "chrono_audit.jsonl"
    assert not list(run.run_dir.glob("*.key"))  # the key is outside the run directory
    result = run.mosaic("audit", "verify", str(log))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain intact; checkpoint signature verified" in result.stdout


def test_chrono_report_lists_identity_events_and_geometry(run: KilledKeeperRun) -> None:
    result = run.mosaic("chrono", "report", str(run.run_dir))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for needle in (
        "identity events (kernel audit log)",
        "  scar   scar/layer",
        "  reflex reflex/layer",
        "  epoch  epoch/layer",
        "Degraded at step",
        "geometry per layer",
        "geodesic dim",
    ):
        assert needle in text, needle
    rows = text.split("geodesic dim  signatures\n")[1].splitlines()[:2]
    for layer, row in enumerate(rows):
        cells = row.split()
        assert int(cells[0]) == layer and float(cells[1]) > 0 and 1.0 <= float(cells[3]) <= 8.0
