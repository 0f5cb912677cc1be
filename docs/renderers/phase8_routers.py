"""docs/chronomoe.md's router reference rows (``topk``, ``loss_free``, 8 experts) from
``docs/results/phase8_routers.json`` (``benchmarks/bench_phase8.py --only-routers``): per seed the
validation loss and the MaxVio of the final step; the goal for router.loss_free is MaxVio ≤ 0.3 by
step 300."""

from __future__ import annotations

import json
import statistics
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
    seeds = ",".join(str(s) for s in setup["seeds"])
    lines = [
        f"Router reference rows: `python benchmarks/bench_phase8.py --only-routers --steps {setup['steps']} "
        f"--seeds {seeds}`; {setup['n_experts']} experts top-{setup['top_k']}, validation `lm_ce` on "
        f"{setup['eval_samples']} held-out windows; MaxVio of the last training step. " + machine_line(data),
        "",
        "| router | mean val loss | per seed | MaxVio per seed | wall s (mean) |",
        "|---|---|---|---|---|",
    ]
    for name in ROUTERS:
        runs = result["routers"][name]
        losses = " / ".join(f"{r['val_loss']:.4f}" for r in runs)
        vio = " / ".join(f"{r['max_vio']:.3f}" for r in runs)
        lines.append(
            f"| `{name}` | {statistics.fmean(r['val_loss'] for r in runs):.4f} | {losses} | {vio} | "
            f"{statistics.fmean(r['wall_seconds'] for r in runs):.0f} |"
        )
    met = "met" if result["loss_free_max_vio_met"] else "NOT met"
    lines += ["", f"`router.loss_free` MaxVio goal ({result['loss_free_max_vio_goal']}, every seed): {met}."]
    return "\n".join(lines) + "\n"
