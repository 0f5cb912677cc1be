"""docs/chronomoe.md's remote-experts table, from ``docs/results/remote_experts.json``
(``python -m experiments.remote_experts``)."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "remote_experts.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    lines = [
        f"{setup['router']}, {setup['n_experts']} experts (e2, e3 remote), top-{setup['top_k']}, d {setup['d_model']}; "
        f"torch {setup['torch']}, {setup['machine']}.",
        "",
        "| phase | steps | masked experts (mean) | remote share of assignments (mean → last) | loss first → last "
        "| step ms median / max |",
        "|---|---|---|---|---|---|",
    ]
    for phase, row in data["phases"].items():
        lines.append(
            f"| {phase} | {row['steps']} | {row['unreachable_mean']:.2f} | {row['remote_share_mean']:.3f} → "
            f"{row['remote_share_last']:.3f} | {row['loss_first']:.3f} → {row['loss_last']:.3f} | "
            f"{row['step_ms_median']:.1f} / {row['step_ms_max']:.1f} |"
        )
    lines += ["", "Events the layer emitted:", ""]
    for event in data["events"]:
        reason = f" ({event['reason']})" if event["reason"] else ""
        lines.append(f'- step {event["step"]}: `{event["type"]}` "{event["message"]}"{reason}')
    return "\n".join(lines) + "\n"
