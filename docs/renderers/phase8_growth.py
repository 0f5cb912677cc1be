"""docs/chronomoe.md's growth study: the F_l lifecycle started with 4 of 8 columns live (where
capacity binds hardest, so growth has the most to gain), from ``--only-lifecycle --n-live 4`` runs:
``docs/results/phase8_growth_static.json`` (the same network with ``trigger: none``, the paired
control), ``docs/results/phase8_growth_trial<N>.json`` (lifecycle variants with N-step trials) and
``docs/results/phase8_growth_preserving_trial<N>.json`` (the same with ``preserving_growth``).
Each row is paired per seed with that control and with the fixed 4-expert MoE of
``phase8_fixed.json`` (``--only-fixed 4,8``, the same seeds and steps)."""

from __future__ import annotations

import json
import re
import shlex
import statistics
from pathlib import Path
from typing import Any

VARIANT_FILE = re.compile(r"phase8_growth_(preserving_)?trial(\d+)\.json")
GROWTH_KINDS = ("spawn", "split")
START = 4


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))["results"]


def _kind(by_kind: dict[str, Any], kind: str) -> str:
    if kind not in by_kind:
        return "—"
    k = by_kind[kind]
    return f"{k['mean_realised_dloss']:+.4f} ({k['realised_lower']}/{k['scored']})"


def _paired(runs: list[dict[str, Any]], control: dict[int, float]) -> str:
    return f"{statistics.fmean(r['val_loss'] - control[r['seed']] for r in runs):+.4f}"


def _command(name: str, setup: dict[str, Any]) -> str:
    overrides = " ".join("--lifecycle-set " + shlex.quote(o) for o in setup["overrides"])
    return (f"- `{name}`: `python benchmarks/bench_phase8.py --only-lifecycle --n-live {setup['n_live_start']} "
            f"--steps {setup['steps']} --seeds {','.join(str(s) for s in setup['seeds'])} "
            f"--workers {setup['workers']} {overrides}`")


def render(results: Path) -> str:
    static_results = _load(results / "phase8_growth_static.json")
    setup = static_results["setup"]
    if setup["n_live_start"] != START:
        raise ValueError(f"phase8_growth_static.json starts with {setup['n_live_start']} live experts, not {START}")
    fixed_results = _load(results / "phase8_fixed.json")
    if (fixed_results["setup"]["steps"], fixed_results["setup"]["seeds"]) != (setup["steps"], setup["seeds"]):
        raise ValueError("phase8_growth_static.json and phase8_fixed.json differ in steps or seeds: cannot pair them")
    static_runs = static_results["chrono_lifecycle"]
    static = {r["seed"]: r["val_loss"] for r in static_runs}
    fixed = {r["seed"]: r["val_loss"] for r in fixed_results["fixed"][str(START)]}
    mean = statistics.fmean
    lines = [
        "| configuration | edits scored | "
        + " | ".join(f"{kind}: mean realised Δloss (lowered/scored)" for kind in GROWTH_KINDS)
        + " | edits taken | mean val loss | − static at 4 | − fixed 4 | mean live |",
        "|---|---|" + "---|" * len(GROWTH_KINDS) + "---|---|---|---|---|",
        f"| no lifecycle (8 columns, 4 live, `trigger: none`) | — | {' | '.join('—' for _ in GROWTH_KINDS)} | — | "
        f"{mean(static.values()):.4f} | — | {_paired(static_runs, fixed)} | "
        f"{mean(r['live_mean'] for r in static_runs):.2f} |",
    ]
    commands = [_command("phase8_growth_static.json", setup)]
    variants = {
        (bool(m.group(1)), int(m.group(2))): path for path in results.iterdir() if (m := VARIANT_FILE.fullmatch(path.name))
    }
    for relax in sorted(variants):
        variant = _load(variants[relax])
        vsetup = variant["setup"]
        if (vsetup["steps"], vsetup["seeds"], vsetup["n_live_start"]) != (setup["steps"], setup["seeds"], START):
            raise ValueError(f"{variants[relax].name} and phase8_growth_static.json differ in steps, seeds or start")
        runs, by_kind = variant["chrono_lifecycle"], variant["by_kind"]
        taken = ", ".join(
            f"{e['action']}@{e['train_step']} L{e['layer']} (seed {r['seed']})" for r in runs for e in r["edits"]
        ) or "none"
        settings = ", ".join(
            f"{key.rsplit('.', 1)[-1]}={value}" for key, value in (o.split("=", 1) for o in vsetup["overrides"])
        )
        lines.append(
            f"| {settings} | {sum(k['scored'] for k in by_kind.values())} | "
            f"{' | '.join(_kind(by_kind, kind) for kind in GROWTH_KINDS)} | "
            f"{sum(len(r['edits']) for r in runs)}: {taken} | {mean(r['val_loss'] for r in runs):.4f} | "
            f"{_paired(runs, static)} | {_paired(runs, fixed)} | {mean(r['live_mean'] for r in runs):.2f} |"
        )
        commands.append(_command(variants[relax].name, vsetup))
    lines += ["", "Runs (the same steps and seeds as the full protocol):", "", *commands]
    return "\n".join(lines) + "\n"
