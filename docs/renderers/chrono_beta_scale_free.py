"""docs/chronomoe.md's scale-free-β table (flip-rate spread across logit scales, veto on and off), from
``docs/results/chrono_beta_scale_free.json`` (``python -m experiments.chrono_beta scale_free``)."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "chrono_beta_scale_free.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    scales = ", ".join(f"{s:g}" for s in setup["scales"])
    lines = [
        f"Logits of a trained `router.chrono` layer scaled by {scales}; |k| = {setup['k']} (alternating signs), "
        f"seeds {', '.join(str(s) for s in setup['seeds'])}. Spread = max − min top-1 flip rate across the "
        "scales, for β = k · logit std (the router's rule) and, as the contrast, a raw bias of fixed size.",
        "",
        "| veto | per-seed flip rates across scales (β in logit std) | mean spread | mean spread, raw bias |",
        "|---|---|---|---|",
    ]
    for veto in ("on", "off"):
        runs = data["runs"][veto]
        rates = "; ".join(" / ".join(f"{r:.3f}" for r in run["flip_rate"]) for run in runs)
        row = data["summary"][veto]
        lines.append(f"| {veto} | {rates} | {row['mean_spread']:.3f} | {row['mean_raw_bias_spread']:.3f} |")
    return "\n".join(lines) + "\n"
