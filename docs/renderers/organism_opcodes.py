"""Each v0 opcode's effect in a trained model, rendered from the ``opcodes`` list of
``docs/results/organism.json`` (written by ``benchmarks/bench_organism.py`` from its rows): the
metric the opcode serves, with the opcode and with it forced to NOP at its positions, the drop,
and whether the drop meets issue 16's bar (>= 0.3 absolute or >= 50 % relative)."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("opcode", "taught in (row label)", "metric", "with it", "forced to NOP", "drop", "meets the bar")


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "not measured" if value is None else str(value)


def render(results: Path) -> str:
    table = json.loads((results / "organism.json").read_text(encoding="utf-8"))
    if "opcodes" not in table:
        raise ValueError(
            "docs/results/organism.json has no 'opcodes' list: rerun benchmarks/bench_organism.py"
        )
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for effect in table["opcodes"]:
        cells = [
            effect["opcode"],
            effect["preset"],
            effect["metric"],
            effect["on"],
            effect["off"],
            effect["drop"],
            effect["meets"],
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
