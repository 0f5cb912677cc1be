"""The README's sentence on the main job (``mosaic run mosaic_vm``): its steps, its held-out recall and
how long it took, from the organism benchmark's committed rows (``docs/results/organism.json``)."""

from __future__ import annotations

import json
from pathlib import Path

PRESET = "mosaic_vm"


def render(results: Path) -> str:
    table = json.loads((results / "organism.json").read_text(encoding="utf-8"))
    rows = [row for row in table["rows"] if row.get("preset") == PRESET and row.get("ablation") == "none"
            and row.get("metric") == "answer_exact"]
    if not rows:
        raise ValueError(f"docs/results/organism.json has no {PRESET} answer_exact row")
    row = rows[-1]
    memory_off = [r["value"] for r in table["rows"] if r.get("preset") == PRESET and r.get("ablation") == "memory_off"
                  and r.get("metric") == "answer_exact" and r.get("steps") == row["steps"]]
    off = f", {memory_off[-1]:.2f} with the memory read switched off" if memory_off else ""
    machine = table.get("machine", "the project's 2-core development machine (see docs/organism.md for its load)")
    return (f"It trains {row['steps']} steps and reaches held-out whole-answer recall {row['value']:.2f}{off}; "
            f"one run took {row['wall_seconds']:.0f} s on {machine}.\n")
