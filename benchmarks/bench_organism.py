"""The organism table: for each event/VM preset, its held-out metrics and their ablations.

Each preset of :data:`PRESETS` is trained with its CPU defaults (plus the listed overrides), and every
number under ``eval`` that the table knows (:data:`METRICS`) becomes one row ``{preset, metric,
ablation, value}``: ``ablation`` is ``none``, ``memory_off`` or ``opcode_off.<OPCODE>`` (that opcode
forced to NOP at the positions the data labels it). Rows also carry the run's steps and wall
seconds, so a reader can see the budget behind a number.

Adding a preset's rows: add an entry to :data:`PRESETS` (its label: the preset, the overrides every
run of it gets, and those a ``--quick`` smoke run adds) and, for a new kind of metric, a
``(key, metric)`` pair to :data:`METRICS`. ``--from-runs DIR...`` builds the table from finished
runs' ``summary.json`` instead of training.

:data:`HEADLINES` names, for each of the nine v0 opcodes other than NOP, the rows that show its
effect: the label whose run teaches it and the metric it serves. The JSON's ``opcodes`` list holds,
per opcode, that metric with the opcode and with it forced to NOP, the drop and whether it meets
issue 16's bar (a drop of >= 0.3 absolute or >= 50 % relative); ``None`` where the label has no such
rows yet; ``--headlines-only`` recomputes that list from the rows already in the JSON (after rows are
merged in, or :data:`HEADLINES` changes). ``docs/organism.md`` shows both tables; ``docs/regenerate.py`` rewrites them from
``docs/results/organism.json`` through ``docs/renderers/organism.py`` and ``organism_opcodes.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One configuration the benchmark trains: ``preset`` with ``overrides``; ``quick`` is added for
    ``--quick`` smoke runs (the full run uses the preset's CPU defaults plus ``overrides``)."""

    preset: str
    overrides: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


VM_QUICK = ("vars.steps=60", "curriculum.warmup_steps=5", "curriculum.cooldown_steps=10")
#: label (the rows' ``preset`` column) -> what is trained under it
PRESETS: dict[str, Entry] = {
    "mosaic_vm": Entry("mosaic_vm", quick=VM_QUICK),
    # CLEAR_MEM is taught by forget events: FORGET k, then a query for k must answer UNKNOWN
    "mosaic_vm, forget_per_sample=1": Entry("mosaic_vm", ("dataset.forget_per_sample=1",), VM_QUICK),
    "mosaic_gates": Entry("mosaic_gates", quick=VM_QUICK),
    "mosaic_event_native": Entry(
        "mosaic_event_native",
        quick=("vars.steps=20", "curriculum.warmup_steps=2", "curriculum.cooldown_steps=4"),
    ),
    "mosaic_commitment": Entry(
        "mosaic_commitment",
        quick=("vars.steps=20", "curriculum.warmup_steps=2", "curriculum.cooldown_steps=4"),
    ),
}
#: (dotted key under a summary's ``eval`` whose value is a number, metric name)
METRICS: tuple[tuple[str, str], ...] = (
    ("answer_exact", "answer_exact"),
    ("answer_accuracy", "answer_accuracy"),
    ("forget_exact", "forget_exact"),
    ("priority_exact", "priority_exact"),
    ("scan_exact", "scan_exact"),
    ("turns.silence", "silence"),
    ("turns.onset", "onset"),
    ("commitment.heldout_templates.per_class_accuracy", "commitment.heldout"),
    ("commitment.ledger_exact", "ledger_exact"),
)
#: opcodes whose per-class accuracy (from ``eval.opcode_accuracy_per_class``) becomes a row
OPCODES_SHOWN = (
    "READ_MEM",
    "WRITE_MEM",
    "CLEAR_MEM",
    "IDLE",
    "GATE_UP",
    "GATE_DOWN",
    "SCAN",
    "COMMIT",
    "RESPOND",
)
#: (opcode, the label whose rows show its effect, the metric it serves), one per v0 opcode but NOP
HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("READ_MEM", "mosaic_vm", "answer_exact"),
    ("WRITE_MEM", "mosaic_vm", "answer_exact"),
    ("CLEAR_MEM", "mosaic_vm, forget_per_sample=1", "forget_exact"),
    ("IDLE", "mosaic_event_native, aux_opcode_balanced, recall_weight 0.5", "silence"),
    ("GATE_UP", "mosaic_gates", "priority_exact"),
    ("GATE_DOWN", "mosaic_gates", "priority_exact"),
    ("SCAN", "mosaic_gates", "scan_exact"),
    # the preset's default run at seed 000's structure, ending on its own COMMIT (teacher forcing 0)
    (
        "COMMIT",
        "mosaic_commitment (preset default: event_native's memory recipe, routing supervision x3, 700 steps of batch 2)",
        "ledger_exact",
    ),
    ("RESPOND", "mosaic_event_native, aux_opcode_balanced, recall_weight 0.5", "onset"),
)
#: issue 16's bar for "moves the metric it serves": the metric with the opcode forced to NOP is lower by this
#: much (absolute), or by this share of its value
MOVED_ABSOLUTE, MOVED_RELATIVE = 0.3, 0.5
DEFAULT_OUT = Path(__file__).parent.parent / "docs" / "results" / "organism.json"


def dotted(tree: dict[str, Any], key: str) -> Any:
    """``tree["a"]["b"]`` for ``key`` "a.b"; None where a part is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def headline_effects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per :data:`HEADLINES` entry: the served metric with the opcode (ablation ``none``) and with it
    forced to NOP, the drop from one to the other and whether it meets the bar (None where a row is
    missing)."""

    def value(label: str, metric: str, ablation: str) -> float | None:
        found = [
            row["value"]
            for row in rows
            if row["preset"] == label and row["metric"] == metric and row["ablation"] == ablation
        ]
        return found[-1] if found else None

    effects = []
    for opcode, label, metric in HEADLINES:
        on, off = value(label, metric, "none"), value(label, metric, f"opcode_off.{opcode}")
        drop = None if on is None or off is None else on - off
        meets = None
        if drop is not None and on is not None:
            meets = drop >= MOVED_ABSOLUTE or (on > 0 and drop / on >= MOVED_RELATIVE)
        effects.append(
            {
                "opcode": opcode,
                "preset": label,
                "metric": metric,
                "on": on,
                "off": off,
                "drop": drop,
                "meets": meets,
            }
        )
    return effects


def rows_of(preset: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one finished run's summary."""
    evaluation = summary.get("eval") or {}
    budget = {
        "steps": summary.get("steps"),
        "wall_seconds": round(float(summary.get("wall_seconds", 0.0)), 1),
    }
    rows = []
    for key, metric in METRICS:
        value = dotted(evaluation, key)
        if isinstance(value, dict):  # {name: number}: one row per name, e.g. commitment.heldout.close
            rows += [{"preset": preset, "metric": f"{metric}.{name}", "ablation": "none", "value": number, **budget}
                     for name, number in sorted(value.items()) if number is not None]
        elif value is not None:
            rows.append({"preset": preset, "metric": metric, "ablation": "none", "value": value, **budget})
    # whether the VM fires the taught opcodes at their positions (teacher forcing 0), per opcode
    for opcode, value in sorted((evaluation.get("opcode_accuracy_per_class") or {}).items()):
        if opcode in OPCODES_SHOWN and value is not None:
            rows.append(
                {
                    "preset": preset,
                    "metric": f"opcode_accuracy.{opcode}",
                    "ablation": "none",
                    "value": value,
                    **budget,
                }
            )
    ablations = evaluation.get("ablations") or {}
    for metric, value in (ablations.get("memory_off") or {}).items():
        rows.append({"preset": preset, "metric": metric, "ablation": "memory_off", "value": value, **budget})
    for opcode, metrics in sorted((ablations.get("opcode_off") or {}).items()):
        for metric, value in metrics.items():
            rows.append(
                {
                    "preset": preset,
                    "metric": metric,
                    "ablation": f"opcode_off.{opcode}",
                    "value": value,
                    **budget,
                }
            )
    return rows


def train(entry: Entry, quick: bool, root: Path) -> dict[str, Any]:
    from mosaic.runtime.training.run import run_preset

    overrides = ["trainer.checkpoint_every=0", *entry.overrides, *(entry.quick if quick else ())]
    return run_preset(entry.preset, out=root, overrides=overrides, show_progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark: the organism table (preset x metric x ablation)")
    parser.add_argument("--quick", action="store_true", help="a few steps per preset, for smoke runs")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="only these labels")
    parser.add_argument(
        "--from-runs",
        nargs="+",
        metavar="[LABEL=]RUN_DIR",
        help="finished run directories instead of training (LABEL names the row's preset)",
    )
    parser.add_argument(
        "--note", default="", help="how the machine was loaded while the runs took their time"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in --out, except those of the presets (labels) measured now",
    )
    parser.add_argument(
        "--headlines-only",
        action="store_true",
        help="only recompute the opcodes list from the rows already in --out (after merging rows or editing HEADLINES)",
    )
    args = parser.parse_args(argv)
    if args.headlines_only:
        table = json.loads(args.out.read_text())
        table["opcodes"] = headline_effects(table["rows"])
        args.out.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        return
    rows: list[dict[str, Any]] = []
    if args.from_runs:
        for spec in args.from_runs:
            label, _, path = spec.rpartition("=")
            summary = json.loads((Path(path) / "summary.json").read_text())
            rows += rows_of(label or Path(summary["run_dir"]).parent.name, summary)
    else:
        with tempfile.TemporaryDirectory() as root:
            for label in args.preset or sorted(PRESETS):
                summary = train(PRESETS[label], args.quick, Path(root))
                rows += rows_of(label, summary)
    note = args.note
    if args.append and args.out.exists():
        # rows measured earlier (other presets, other machines' loads) stay; a label measured now replaces its
        # rows; the earlier note stays too, and this run's note is added to it
        earlier = json.loads(args.out.read_text())
        measured = {row["preset"] for row in rows}
        rows = [row for row in earlier["rows"] if row["preset"] not in measured] + rows
        note = " ".join(part for part in (earlier.get("note", ""), args.note) if part)
    table = {
        "benchmark": "organism",
        "quick": args.quick,
        "note": note,
        "rows": rows,
        "opcodes": headline_effects(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    json.dump(table, sys.stdout, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
