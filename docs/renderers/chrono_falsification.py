"""docs/chronomoe.md's falsification table, from ``docs/results/chrono_falsification.json``
(``python -m experiments.chrono_falsification``)."""

from __future__ import annotations

import json
from pathlib import Path

SIGNALS = {"phi_fast": "φ_fast of the damaged expert", "lm_ce": "training loss `lm_ce`", "load": "load share of the expert"}


def render(results: Path) -> str:
    data = json.loads((results / "chrono_falsification.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    lines = [
        f"Seed {setup['seed']}: {setup['pretrain_steps']} steps, then expert {setup['expert']} of layer "
        f"{setup['layer']} damaged ({setup['damage']}), {setup['after_steps']} more steps; a signal reacts at "
        f"the first step outside the {setup['baseline_window']}-step baseline mean ± {setup['z_threshold']}σ.",
        "",
        "| signal | baseline mean | first 5 steps after the damage | lag (steps) | after the last step |",
        "|---|---|---|---|---|",
    ]
    for key, label in SIGNALS.items():
        lag = data["lags_steps"][key]
        lines.append(
            f"| {label} | {data['before_mean'][key]} | {', '.join(str(v) for v in data['after_first_5'][key])} | "
            f"{'none' if lag is None else lag} | {data['after_last'][key]} |"
        )
    verdict = "φ reacted **before** loss and load" if data["phi_reacted_first"] else \
        "φ did **not** react before the other signals (`phi_reacted_first: false`)"
    lines += ["", f"**Result:** {verdict}."]
    return "\n".join(lines) + "\n"
