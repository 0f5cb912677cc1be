"""The organism table (preset x metric x ablation), rendered from ``docs/results/organism.json``
(written by ``benchmarks/bench_organism.py``): one row per figure, then the JSON's note on how
loaded the machine was when the wall times were taken."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("preset", "metric", "ablation", "value", "steps", "wall_seconds")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def render(results: Path) -> str:
    table = json.loads((results / "organism.json").read_text())
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in COLUMNS) + " |" for row in table["rows"]]
    if table.get("note"):
        lines += ["", f"Note: {table['note']}"]
    return "\n".join(lines) + "\n"
