"""docs/chronomoe.md's capacity-whiplash table, from ``docs/results/chrono_whiplash.json``
(``python -m experiments.chrono_whiplash``)."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "chrono_whiplash.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    lines = [
        f"Seed {setup['seed']}: {setup['pretrain']} steps, a {setup['shock']}-step shock, {setup['recover']} "
        f"recovery steps; routing measured on {setup['probe_windows']} fixed held-out windows.",
        "",
        "| kind | system | displacement | hysteresis | excess over control | probe CE before → shock end → after |",
        "|---|---|---|---|---|---|",
    ]
    for kind, systems in data["results"].items():
        for system, row in systems.items():
            excess = "—" if kind == "control" else f"{data['summary'][kind][f'{system}_excess_hysteresis']:+.3f}"
            ce = row["probe_ce"]
            lines.append(f"| {kind} | {system} | {row['displacement']:.3f} | {row['hysteresis']:.3f} | {excess} | "
                         f"{ce['before']:.3f} → {ce['shock_end']:.3f} → {ce['after']:.3f} |")
    return "\n".join(lines) + "\n"
