"""docs/chronomoe.md's router reference rows (``topk``, ``loss_free``) from
``docs/results/phase8_routers.json`` (an earlier ``benchmarks/bench_phase8.py`` run: 8 live experts,
300 steps, seed 0)."""

from __future__ import annotations

import json
from pathlib import Path

ROUTERS = ("topk", "loss_free")


def machine_line(data: dict) -> str:
    machine = data.get("machine", {})
    load = machine.get("load_average_before")
    shared = f", load average {load[0]} when it started (shared machine)" if load else ""
    return f"Measured on a {machine.get('cpu_count', '?')}-core CPU ({machine.get('cpu', 'unknown CPU')}){shared}."


def render(results: Path) -> str:
    data = json.loads((results / "phase8_routers.json").read_text(encoding="utf-8"))
    result = data["results"]
    setup = result["setup"]
    lines = [
        f"Router reference rows: {setup['steps']} steps, seed 0, {setup['n_experts']} experts top-{setup['top_k']} in "
        f"{setup['n_layers']} layers, validation `lm_ce` on {setup['eval_samples']} held-out windows. "
        + machine_line(data),
        "",
        "| router | val loss (nats/char) | train loss (last window) | active experts | MaxVio | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name in ROUTERS:
        row = result["configs"][name]
        lines.append(
            f"| `{name}` | {row['val_loss']:.4f} | {row['train_loss_final']:.4f} | {row['active_experts']} | "
            f"{row['max_vio']:.3f} | {row['wall_seconds']} |"
        )
    return "\n".join(lines) + "\n"
