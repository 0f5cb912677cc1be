"""docs/chronomoe.md's lifecycle variant with warm growth trials (``evidence_warm_trial``), from
``docs/results/phase8_warm_trial.json`` (``benchmarks/bench_phase8.py --only-lifecycle``), paired
per seed with the controls of the Phase 8 run of the same steps and seeds (``docs/results/phase8_320.json``
where it exists, else ``phase8.json``; the control arms never run a trial, so they do not depend on the
variant)."""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path


def render(results: Path) -> str:
    variant = json.loads((results / "phase8_warm_trial.json").read_text(encoding="utf-8"))["results"]
    reduced = results / "phase8_320.json"
    base_path = reduced if reduced.is_file() else results / "phase8.json"
    base = json.loads(base_path.read_text(encoding="utf-8"))["results"]
    setup = variant["setup"]
    if setup["steps"] != base["setup"]["steps"] or setup["seeds"] != base["setup"]["seeds"]:
        raise ValueError(f"phase8_warm_trial.json and {base_path.name} differ in steps or seeds: cannot pair them")
    runs = variant["chrono_lifecycle"]
    static = {r["seed"]: r for r in base["arms"]["chrono_static"]}
    chrono = {r["seed"]: r for r in base["arms"]["chrono"]}
    lines = [
        f"`python benchmarks/bench_phase8.py --only-lifecycle --steps {setup['steps']} --seeds "
        f"{','.join(str(s) for s in setup['seeds'])} --lifecycle-set {' '.join(shlex.quote(o) for o in setup['overrides'])}`, paired with "
        "the controls above.",
        "",
        "| seed | val loss | − `chrono_static` | − `chrono` | time-mean live | edits |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        edits = ", ".join(f"{e['action']}@{e['train_step']} (L{e['layer']})" for e in r["edits"]) or "none"
        lines.append(
            f"| {r['seed']} | {r['val_loss']:.4f} | {r['val_loss'] - static[r['seed']]['val_loss']:+.4f} | "
            f"{r['val_loss'] - chrono[r['seed']]['val_loss']:+.4f} | {r['live_mean']:.2f} | {edits} |"
        )
    mean = statistics.fmean
    rho = variant["spearman_predicted_df_vs_realised_dloss"]
    lines += [
        "",
        f"Mean − `chrono_static`: {mean(r['val_loss'] - static[r['seed']]['val_loss'] for r in runs):+.4f}; "
        f"mean − `chrono`: {mean(r['val_loss'] - chrono[r['seed']]['val_loss'] for r in runs):+.4f}; "
        f"Spearman(predicted ΔF, realised Δloss) over the variant's scored edits: "
        f"{'—' if rho is None else f'{rho:+.3f}'}.",
    ]
    return "\n".join(lines) + "\n"
