"""docs/chronomoe.md's trial-length study: the F_l lifecycle arm of the full Phase 8 protocol
(``docs/results/phase8.json``, the preset's evidence settings) beside ``--only-lifecycle`` variants
with longer trials and a lower bar (``docs/results/phase8_trial<N>.json``), each paired per seed with
the full protocol's controls (the control arms never run a trial, so they do not depend on the
variant). One row per configuration: how well the trial's prediction ranks the edits' realised
effect, how many edits it took, and what they did to validation loss."""

from __future__ import annotations

import json
import re
import shlex
import statistics
from pathlib import Path
from typing import Any

VARIANT_FILE = re.compile(r"phase8_trial(\d+)\.json")
KINDS = ("spawn", "split", "prune", "merge")
#: --only-lifecycle runs made before the benchmark recorded ``workers`` (phase8_trial16/40) used 2
WORKERS_BEFORE_RECORDED = 2


def _kind(by_kind: dict[str, Any], kind: str) -> str:
    """Mean realised Δloss of a kind's trials and how many of them lowered the check loss."""
    if kind not in by_kind:
        return "—"
    k = by_kind[kind]
    return f"{k['mean_realised_dloss']:+.4f} ({k['realised_lower']}/{k['scored']})"


def _row(name: str, runs: list[dict[str, Any]], rho: float | None, by_kind: dict[str, Any],
         chrono: dict[int, float], static: dict[int, float]) -> str:
    mean = statistics.fmean
    edits = sum(len(r["edits"]) for r in runs)
    taken = ", ".join(
        f"{e['action']}@{e['train_step']} L{e['layer']} (seed {r['seed']})" for r in runs for e in r["edits"]
    ) or "none"
    scored = sum(k["scored"] for k in by_kind.values())
    return (
        f"| {name} | {scored} | {'—' if rho is None else f'{rho:+.3f}'} | "
        f"{' | '.join(_kind(by_kind, kind) for kind in KINDS)} | {edits}: {taken} | "
        f"{mean(r['val_loss'] for r in runs):.4f} | "
        f"{mean(r['val_loss'] - static[r['seed']] for r in runs):+.4f} | "
        f"{mean(r['val_loss'] - chrono[r['seed']] for r in runs):+.4f} | "
        f"{mean(r['live_mean'] for r in runs):.2f} |"
    )


def render(results: Path) -> str:
    protocol = json.loads((results / "phase8.json").read_text(encoding="utf-8"))["results"]
    setup = protocol["setup"]
    chrono = {r["seed"]: r["val_loss"] for r in protocol["arms"]["chrono"]}
    static = {r["seed"]: r["val_loss"] for r in protocol["arms"]["chrono_static"]}
    evidence = protocol["evidence"]
    lines = [
        "| configuration | edits scored | Spearman (predicted ΔF, realised Δloss) "
        f"| {' | '.join(f'{kind}: mean realised Δloss (lowered/scored)' for kind in KINDS)} | edits taken "
        "| mean val loss | − `chrono_static` | − `chrono` | mean live |",
        "|---|---|---|" + "---|" * len(KINDS) + "---|---|---|---|---|",
        _row("the preset's settings (the full protocol above)", protocol["arms"]["chrono_lifecycle"],
             evidence["spearman_predicted_df_vs_realised_dloss"], evidence["by_kind"], chrono, static),
    ]
    commands = []
    variants = {int(match.group(1)): path for path in results.iterdir() if (match := VARIANT_FILE.fullmatch(path.name))}
    for path in (variants[relax] for relax in sorted(variants)):
        variant = json.loads(path.read_text(encoding="utf-8"))["results"]
        vsetup = variant["setup"]
        if vsetup["steps"] != setup["steps"] or vsetup["seeds"] != setup["seeds"]:
            raise ValueError(f"{path.name} and phase8.json differ in steps or seeds: cannot pair them")
        runs = variant["chrono_lifecycle"]
        settings = ", ".join(
            f"{key.rsplit('.', 1)[-1]}={value}" for key, value in (o.split("=", 1) for o in vsetup["overrides"])
        )
        lines.append(_row(settings, runs, variant["spearman_predicted_df_vs_realised_dloss"], variant["by_kind"],
                          chrono, static))
        commands.append(
            f"- `{path.name}`: `python benchmarks/bench_phase8.py --only-lifecycle --steps {vsetup['steps']} --seeds "
            f"{','.join(str(s) for s in vsetup['seeds'])} --workers {vsetup.get('workers', WORKERS_BEFORE_RECORDED)} "
            f"{' '.join('--lifecycle-set ' + shlex.quote(o) for o in vsetup['overrides'])}`"
        )
    if commands:
        lines += ["", "Variants (paired with the full protocol's controls, same steps and seeds):", "", *commands]
    return "\n".join(lines) + "\n"
