"""``benchmarks/bench_organism.py --from-runs``: every metric of a finished run becomes a row (the
turn-taking and ledger metrics included), ``--append`` keeps other labels' rows and the earlier note,
and the ``opcodes`` list gives each v0 opcode's metric with it and with it forced to NOP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_organism.py"
LABEL = "mosaic_event_native, aux_opcode_balanced, recall_weight 0.5"  # the IDLE / RESPOND headline label


#: the label bench_organism's HEADLINES reads COMMIT's effect from (the preset's default run)
COMMIT_LABEL = "mosaic_commitment (preset default: event_native's memory recipe, routing supervision x3, 700 steps of batch 2)"


def finished_run(path: Path, evaluation: dict) -> Path:
    path.mkdir()
    (path / "summary.json").write_text(
        json.dumps({"run_dir": str(path), "steps": 48, "wall_seconds": 12.34, "eval": evaluation})
    )
    return path


def bench(*args: str) -> None:
    subprocess.run([sys.executable, str(BENCH), *args], check=True, capture_output=True, timeout=120)


def test_rows_headlines_and_append(tmp_path: Path) -> None:
    out = tmp_path / "organism.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "organism",
                "note": "earlier load",
                "rows": [
                    {"preset": "mosaic_vm", "metric": "answer_exact", "ablation": "none", "value": 1.0},
                    {
                        "preset": "mosaic_vm",
                        "metric": "answer_exact",
                        "ablation": "opcode_off.READ_MEM",
                        "value": 0.9,
                    },
                    {
                        "preset": LABEL,
                        "metric": "silence",
                        "ablation": "none",
                        "value": 0.0,
                    },  # replaced below
                ],
            }
        )
    )
    run = finished_run(
        tmp_path / "run",
        {
            "answer_exact": 0.5,
            "turns": {"silence": 1.0, "onset": 0.75, "boundaries": {"idle": 4, "respond": 4}},
            "opcode_accuracy_per_class": {"IDLE": 1.0, "NOP": 0.9},
            "ablations": {"opcode_off": {"IDLE": {"silence": 0.0}, "RESPOND": {"onset": 0.5}}},
        },
    )
    bench("--from-runs", f"{LABEL}={run}", "--append", "--out", str(out), "--note", "this load")
    table = json.loads(out.read_text())
    assert table["note"] == "earlier load this load"
    rows = {(row["preset"], row["metric"], row["ablation"]): row["value"] for row in table["rows"]}
    assert rows[(LABEL, "silence", "none")] == 1.0 and rows[(LABEL, "onset", "none")] == 0.75
    assert (
        rows[(LABEL, "opcode_accuracy.IDLE", "none")] == 1.0
        and (LABEL, "opcode_accuracy.NOP", "none") not in rows
    )
    assert rows[("mosaic_vm", "answer_exact", "none")] == 1.0  # another label's rows stay
    effects = {effect["opcode"]: effect for effect in table["opcodes"]}
    assert len(effects) == 9 and "NOP" not in effects
    assert effects["IDLE"]["drop"] == 1.0 and effects["IDLE"]["meets"] is True
    assert (
        effects["RESPOND"]["drop"] == 0.25 and effects["RESPOND"]["meets"] is False
    )  # 0.25 < 0.3 and < 50 %
    assert effects["READ_MEM"]["meets"] is False  # a drop of 0.1 of 1.0
    assert effects["COMMIT"]["on"] is None and effects["COMMIT"]["meets"] is None  # no rows: not measured

    # rows merged in by hand (e.g. another branch's): --headlines-only recomputes the list from them
    table["rows"] += [
        {"preset": COMMIT_LABEL, "metric": "ledger_exact", "ablation": ablation, "value": value}
        for ablation, value in (("none", 0.96), ("opcode_off.COMMIT", 0.5))
    ]
    out.write_text(json.dumps(table))
    bench("--headlines-only", "--out", str(out))
    commit = {effect["opcode"]: effect for effect in json.loads(out.read_text())["opcodes"]}["COMMIT"]
    assert commit["on"] == 0.96 and commit["off"] == 0.5 and commit["meets"] is True
