"""The organism table: for each event/VM preset, its held-out metrics and their ablations.

Each preset of :data:`PRESETS` is trained with its CPU defaults (plus the listed overrides), and every
number under ``eval`` that the table knows (:data:`METRICS`) becomes one row ``{preset, metric,
ablation, value}``: ``ablation`` is ``none``, ``memory_off`` or ``opcode_off.<OPCODE>`` (that opcode
forced to NOP at the positions the data labels it). Rows also carry the run's steps and wall
seconds, so a reader can see the budget behind a number.

Adding a preset's rows: add an entry to :data:`PRESETS` (its ``--quick`` overrides) and, for a new
kind of metric, a ``(key, metric)`` pair to :data:`METRICS`. ``--from-runs DIR...`` builds the table
from finished runs' ``summary.json`` instead of training. ``docs/organism.md`` shows the table, and
``docs/regenerate.py`` rewrites it from ``docs/results/organism.json`` through
``docs/renderers/organism.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

#: preset -> overrides for --quick smoke runs (the full run uses the preset's CPU defaults)
PRESETS: dict[str, list[str]] = {
    "mosaic_vm": ["vars.steps=60", "curriculum.warmup_steps=5", "curriculum.cooldown_steps=10"],
    "mosaic_gates": ["vars.steps=60", "curriculum.warmup_steps=5", "curriculum.cooldown_steps=10"],
    "mosaic_event_native": ["vars.steps=20", "curriculum.warmup_steps=2", "curriculum.cooldown_steps=4"],
    "mosaic_commitment": ["vars.steps=20", "curriculum.warmup_steps=2", "curriculum.cooldown_steps=4"],
}
#: (dotted key under a summary's ``eval`` whose value is {metric: number} or a number, metric name)
METRICS: tuple[tuple[str, str], ...] = (
    ("answer_exact", "answer_exact"),
    ("answer_accuracy", "answer_accuracy"),
    ("forget_exact", "forget_exact"),
    ("priority_exact", "priority_exact"),
    ("scan_exact", "scan_exact"),
    ("commitment.heldout_templates.per_class_accuracy", "commitment.heldout"),
    ("commitment.ledger_exact", "ledger_exact"),
)
#: opcodes whose per-class accuracy (from ``eval.opcode_accuracy_per_class``) becomes a row
OPCODES_SHOWN = ("READ_MEM", "WRITE_MEM", "GATE_UP", "GATE_DOWN", "SCAN")
DEFAULT_OUT = Path(__file__).parent.parent / "docs" / "results" / "organism.json"


def _at(evaluation: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key under ``eval``, or None where any part is missing."""
    value: Any = evaluation
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rows_of(preset: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one finished run's summary."""
    evaluation = summary.get("eval") or {}
    budget = {"steps": summary.get("steps"), "wall_seconds": round(float(summary.get("wall_seconds", 0.0)), 1)}
    rows = []
    for key, metric in METRICS:
        value = _at(evaluation, key)
        if isinstance(value, dict):  # {name: number}: one row per name, e.g. commitment.heldout.close
            rows += [{"preset": preset, "metric": f"{metric}.{name}", "ablation": "none", "value": number, **budget}
                     for name, number in sorted(value.items()) if number is not None]
        elif value is not None:
            rows.append({"preset": preset, "metric": metric, "ablation": "none", "value": value, **budget})
    # whether the VM fires the taught opcodes at their positions (teacher forcing 0), per opcode
    for opcode, value in sorted((evaluation.get("opcode_accuracy_per_class") or {}).items()):
        if opcode in OPCODES_SHOWN and value is not None:
            rows.append({"preset": preset, "metric": f"opcode_accuracy.{opcode}", "ablation": "none", "value": value,
                         **budget})
    ablations = evaluation.get("ablations") or {}
    for metric, value in (ablations.get("memory_off") or {}).items():
        rows.append({"preset": preset, "metric": metric, "ablation": "memory_off", "value": value, **budget})
    for opcode, metrics in sorted((ablations.get("opcode_off") or {}).items()):
        for metric, value in metrics.items():
            rows.append({"preset": preset, "metric": metric, "ablation": f"opcode_off.{opcode}", "value": value,
                         **budget})
    return rows


def train(preset: str, overrides: list[str], root: Path) -> dict[str, Any]:
    from mosaic.runtime.training.run import run_preset

    return run_preset(preset, out=root, overrides=["trainer.checkpoint_every=0", *overrides], show_progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark: the organism table (preset x metric x ablation)")
    parser.add_argument("--quick", action="store_true", help="a few steps per preset, for smoke runs")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="only these presets")
    parser.add_argument("--from-runs", nargs="+", metavar="[LABEL=]RUN_DIR",
                        help="finished run directories instead of training (LABEL names the row's preset)")
    parser.add_argument("--note", default="", help="how the machine was loaded while the runs took their time")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --out, except those of the presets (labels) measured now")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    if args.from_runs:
        for spec in args.from_runs:
            label, _, path = spec.rpartition("=")
            summary = json.loads((Path(path) / "summary.json").read_text())
            rows += rows_of(label or Path(summary["run_dir"]).parent.name, summary)
    else:
        with tempfile.TemporaryDirectory() as root:
            for preset in args.preset or sorted(PRESETS):
                summary = train(preset, PRESETS[preset] if args.quick else [], Path(root))
                rows += rows_of(preset, summary)
    if args.append and args.out.exists():
        # rows measured earlier (other presets, other machines' loads) stay; a label measured now replaces its rows
        measured = {row["preset"] for row in rows}
        rows = [row for row in json.loads(args.out.read_text())["rows"] if row["preset"] not in measured] + rows
    table = {"benchmark": "organism", "quick": args.quick, "note": args.note, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    json.dump(table, sys.stdout, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
