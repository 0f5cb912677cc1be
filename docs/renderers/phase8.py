"""docs/chronomoe.md's Phase 8 table, from ``docs/results/phase8.json`` (``benchmarks/bench_phase8.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LABELS = {
    "topk": "`topk`",
    "loss_free": "`loss_free`",
    "chrono": "`chrono` (no lifecycle)",
    "chrono_lifecycle": "`chrono_lifecycle` (F_l)",
    "chrono_adhoc": "`chrono_adhoc` (thresholds)",
}


def machine_line(data: dict[str, Any]) -> str:
    machine = data.get("machine", {})
    load = machine.get("load_average_before")
    where = f"{machine.get('cpu_count', '?')}-core CPU ({machine.get('cpu', 'unknown CPU')})"
    shared = f", load average {load[0]} when it started (shared machine: wall seconds are noisy)" if load else ""
    return f"Measured on a {where}, torch {machine.get('torch', '?')}{shared}."


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return " / ".join(str(v) for v in value)
    return str(value)


def render(results: Path) -> str:
    data = json.loads((results / "phase8.json").read_text(encoding="utf-8"))
    result = data["results"]
    setup = result["setup"]
    lines = [
        f"`python benchmarks/bench_phase8.py{' --quick' if data.get('quick') else ''}`: "
        f"{setup['steps']} steps per configuration, {setup['n_experts']} experts top-{setup['top_k']} in "
        f"{setup['n_layers']} layers, validation loss `lm_ce` on {setup.get('eval_samples', '?')} held-out windows. "
        + machine_line(data),
        "",
        "| configuration | val loss (nats/char) | train loss (last window) | active experts (mean of layers) | MaxVio "
        "| Ψ per layer | live experts per layer | decisions | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["configs"].items():
        decisions = ", ".join(f"{k} {v}" for k, v in row["decisions"].items()) or "—"
        lines.append(
            f"| {LABELS.get(name, name)} | {row['val_loss']:.4f} | {row['train_loss_final']:.4f} | "
            f"{row['active_experts']} | {row['max_vio']:.3f} | {_fmt(row['psi_per_layer'])} | "
            f"{_fmt(row['live_experts_per_layer'])} | {decisions} | {row['wall_seconds']} |"
        )
    edits = result["configs"].get("chrono_lifecycle", {}).get("edits", [])
    if edits:
        lines += ["", "Edits of the F_l lifecycle: " + "; ".join(
            f"{e['action']} of expert {e['expert']} in layer {e['layer']} at step {e['train_step']}" for e in edits) + "."]
    comparison = result["comparison"]
    lines += ["", f"**Verdict (computed by the benchmark):** {comparison['verdict']}; "
                  f"ad-hoc minus F_l validation loss {comparison['adhoc_minus_f_l_val_loss']:+.4f}."]
    return "\n".join(lines) + "\n"
