"""docs/chronomoe.md's capacity-whiplash table as seed 003 specifies it (top-4 → top-1 → top-4), from
``docs/results/chrono_beta_whiplash.json`` (``python -m experiments.chrono_beta whiplash``)."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "chrono_beta_whiplash.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    lines = [
        f"One `layer.moe` ({setup['experts']} experts, `router.chrono`, synthetic cluster task), seeds "
        f"{', '.join(str(s) for s in setup['seeds'])}: {setup['before']} steps at top-4, {setup['shock']} at top-1, "
        f"{setup['recover']} at top-4 (control: top-4 throughout); earned β after {setup['earn']} steps on "
        "differently biased inputs. Divergence = TV distance between the two systems' probe loads; excess "
        "hysteresis = a system's before-vs-after TV minus the same in its no-shock control.",
        "",
        "| pair | divergence before | at shock end | after recovery | control after | mean excess hysteresis |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in data["summary"].items():
        d = row["mean_divergence"]
        lines.append(
            f"| {kind} | {d['before']:.3f} | {d['shock_end']:.3f} | {d['after']:.3f} | "
            f"{row['mean_control_divergence_after']:.3f} | {row['mean_excess_hysteresis']:+.3f} |"
        )
    return "\n".join(lines) + "\n"
