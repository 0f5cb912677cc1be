"""docs/chronomoe.md's loss-vs-live-experts curve of Phase 8: fixed MoEs (router.chrono, no
lifecycle) at several live-expert counts, from every ``docs/results/phase8_fixed*.json``
(``benchmarks/bench_phase8.py --only-fixed``, one file per run) and ``phase8.json`` (its ``chrono``
arm is the fixed MoE at the starting count, its ``fixed`` rows the counts the lifecycle reached).
All must have the same steps and seeds: the same seed gives the same data stream, so the
differences are paired. A count trained twice must give the same losses (the runs are seeded)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def _add(runs: dict[int, list[dict[str, Any]]], count: int, rows: list[dict[str, Any]], source: str) -> None:
    losses = [(r["seed"], r["val_loss"]) for r in rows]
    if count in runs and [(r["seed"], r["val_loss"]) for r in runs[count]] != losses:
        raise ValueError(f"{source} trained {count} live experts again with other losses: seeded runs must agree")
    runs[count] = rows


def render(results: Path) -> str:
    protocol = json.loads((results / "phase8.json").read_text(encoding="utf-8"))["results"]
    base_setup = protocol["setup"]
    start = base_setup["n_live_start"]
    runs = {start: protocol["arms"]["chrono"]}
    for k, v in protocol["fixed"].items():
        _add(runs, int(k), v, "phase8.json")
    commands = []
    for path in sorted(results.glob("phase8_fixed*.json")):
        curve = json.loads(path.read_text(encoding="utf-8"))["results"]
        setup = curve["setup"]
        if setup["steps"] != base_setup["steps"] or setup["seeds"] != base_setup["seeds"]:
            raise ValueError(f"{path.name} and phase8.json differ in steps or seeds: cannot pair them")
        for k, v in curve["fixed"].items():
            _add(runs, int(k), v, path.name)
        seeds = ",".join(str(s) for s in setup["seeds"])
        workers = f" --workers {setup['workers']}" if setup.get("workers", 1) > 1 else ""
        commands.append(f"`python benchmarks/bench_phase8.py --only-fixed {','.join(str(k) for k in setup['counts'])} "
                        f"--steps {setup['steps']} --seeds {seeds}{workers}`")
    base = {r["seed"]: r["val_loss"] for r in runs[start]}
    lines = [
        f"{' and '.join(commands)}, with the {start}-expert `chrono` arm and the fixed rows of "
        "the full protocol above (same steps and seeds, so the differences are paired by seed).",
        "",
        f"| live experts | mean val loss | per seed | − {start} experts, per seed (mean) |",
        "|---|---|---|---|",
    ]
    for count in sorted(runs):
        rows = runs[count]
        per_seed = " / ".join(f"{r['val_loss']:.4f}" for r in rows)
        differences = [r["val_loss"] - base[r["seed"]] for r in rows]
        paired = " / ".join(f"{d:+.4f}" for d in differences) + f" ({statistics.fmean(differences):+.4f})"
        lines.append(
            f"| {count} | {statistics.fmean(r['val_loss'] for r in rows):.4f} | {per_seed} | "
            f"{'—' if count == start else paired} |"
        )
    lines.append("")
    for count in sorted(k for k in runs if k != start):
        better = sum(r["val_loss"] < base[r["seed"]] for r in runs[count])
        lines.append(
            f"- {count} experts: lower validation loss than {start} on {better} of {len(runs[count])} seeds."
        )
    return "\n".join(lines) + "\n"
