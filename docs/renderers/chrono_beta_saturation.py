"""docs/chronomoe.md's β-saturation table (top-1 flip rate against |k|, bridge veto on and off), from
``docs/results/chrono_beta_saturation.json`` (``python -m experiments.chrono_beta saturation``)."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "chrono_beta_saturation.json").read_text(encoding="utf-8"))
    setup, mean = data["setup"], data["mean_flip_rate"]
    grid = [str(k) for k in setup["k_grid"]]
    lines = [
        f"Logits of a trained `router.chrono` layer ({setup['experts']} experts, {setup['train_steps']} steps, "
        f"seeds {', '.join(str(s) for s in setup['seeds'])}); k = {setup['k_pattern']}, β = k · logit std; "
        f"mean top-1 flip rate (default k_max = {setup['k_max_default']}).",
        "",
        "| veto | " + " | ".join(f"k = ±{k}" for k in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    for veto in ("on", "off"):
        lines.append(f"| {veto} | " + " | ".join(f"{mean[veto][k]:.3f}" for k in grid) + " |")
    return "\n".join(lines) + "\n"
