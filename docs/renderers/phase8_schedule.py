"""docs/chronomoe.md's growth-value study, from 4 of 8 columns live: what the growth edit is worth
and when, taken on a schedule (``trigger: schedule``, no decision) and by the lifecycle's ``widen``
kind decided on growth-length trials. Files (``--only-lifecycle --n-live 4`` runs, the same steps and
seeds as ``phase8_growth_static.json``, the paired no-edit control):

- ``phase8_schedule_*.json``: scheduled growth (the override ``grow_at`` names the step);
- ``phase8_growth_widen_*.json``: the F_l lifecycle with ``widen`` and ``evidence_growth_relax_steps``.

The fixed MoEs are every ``phase8_fixed*.json`` (``--only-fixed`` runs: 4, 5, 7 and 8 live) and the
full protocol's ``chrono`` arm (``phase8.json``, 6 live). "Fixed at the same live count" is read two ways: the issue's verdict
(``phase8_stats.verdict``) takes the fixed MoE at the rounded mean live count; the linear
interpolation between the two fixed counts around it is given beside it."""

from __future__ import annotations

import json
import re
import shlex
import statistics
from pathlib import Path
from typing import Any

START = 4
FILES = re.compile(r"phase8_(schedule_.+|growth_widen_.+)\.json")
#: steps after the scheduled growth at which the paired training-loss difference is shown
AFTER = (50, 100, 200, 300, 500, 1000)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))["results"]


def _settings(setup: dict[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in (o.split("=", 1) for o in setup["overrides"]))


def _command(name: str, setup: dict[str, Any]) -> str:
    overrides = " ".join("--lifecycle-set " + shlex.quote(o) for o in setup["overrides"])
    return (f"- `{name}`: `python benchmarks/bench_phase8.py --only-lifecycle --n-live {setup['n_live_start']} "
            f"--steps {setup['steps']} --seeds {','.join(str(s) for s in setup['seeds'])} "
            f"--workers {setup['workers']} {overrides}`")


def _fixed_curve(results: Path, seeds: list[int]) -> dict[int, dict[int, float]]:
    """Fixed-MoE validation loss by live count and seed: every count of every phase8_fixed*.json, and
    the full protocol's ``chrono`` arm (6)."""
    curve: dict[int, dict[int, float]] = {}
    for path in sorted(results.glob("phase8_fixed*.json")):
        for k, runs in _load(path)["fixed"].items():
            curve[int(k)] = {r["seed"]: r["val_loss"] for r in runs}
    protocol = _load(results / "phase8.json")
    curve[protocol["setup"]["n_live_start"]] = {r["seed"]: r["val_loss"] for r in protocol["arms"]["chrono"]}
    for k, by_seed in curve.items():
        if sorted(by_seed) != sorted(seeds):
            raise ValueError(f"the fixed MoE at {k} live has seeds {sorted(by_seed)}, not {sorted(seeds)}")
    return curve


def _interpolated(curve: dict[int, dict[int, float]], live: float, seed: int) -> float:
    counts = sorted(curve)
    if not counts[0] <= live <= counts[-1]:
        raise ValueError(f"mean live {live} outside the fixed MoEs' counts {counts}")
    low = max(k for k in counts if k <= live)
    high = min(k for k in counts if k >= live)
    if low == high:
        return curve[low][seed]
    t = (live - low) / (high - low)
    return (1 - t) * curve[low][seed] + t * curve[high][seed]


def _grow_at(setup: dict[str, Any]) -> int | None:
    for override in setup["overrides"]:
        key, value = override.split("=", 1)
        if key.endswith(".grow_at"):
            return int(value)
    return None


def render(results: Path) -> str:
    static_results = _load(results / "phase8_growth_static.json")
    setup = static_results["setup"]
    if setup["n_live_start"] != START:
        raise ValueError(f"phase8_growth_static.json starts with {setup['n_live_start']} live experts, not {START}")
    static = {r["seed"]: r for r in static_results["chrono_lifecycle"]}
    curve = _fixed_curve(results, setup["seeds"])
    mean = statistics.fmean
    lines = [
        "| configuration | edits taken | mean val loss | − static at 4 | mean live | fixed at rounded live "
        "(verdict) | − it | fixed interpolated at mean live | − it |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| no lifecycle (8 columns, 4 live, `trigger: none`) | — | "
        f"{mean(r['val_loss'] for r in static.values()):.4f} | — | {START:.2f} | {START} | "
        f"{mean(r['val_loss'] - curve[START][s] for s, r in static.items()):+.4f} | — | — |",
    ]
    transients, trials = [], []
    commands = [_command("phase8_growth_static.json", setup)]
    paths = sorted((p for p in results.iterdir() if FILES.fullmatch(p.name)),
                   key=lambda p: (not p.name.startswith("phase8_schedule_"), p.name))
    for path in paths:
        variant = _load(path)
        vsetup, runs = variant["setup"], variant["chrono_lifecycle"]
        if (vsetup["steps"], vsetup["seeds"], vsetup["n_live_start"]) != (setup["steps"], setup["seeds"], START):
            raise ValueError(f"{path.name} and phase8_growth_static.json differ in steps, seeds or start")
        live = mean(r["live_mean"] for r in runs)
        rounded = round(live)
        # the verdict's comparison exists only where a fixed MoE with that many experts was trained
        versus_rounded = (f"{mean(r['val_loss'] - curve[rounded][r['seed']] for r in runs):+.4f}"
                          if rounded in curve else "— (not trained)")
        taken = sorted({(e["train_step"], e["action"]) for r in runs for e in r["edits"]})
        summary = f"{sum(len(r['edits']) for r in runs)} in {sum(1 for r in runs if r['edits'])}/{len(runs)} seeds"
        steps = ", ".join(f"{action}@{step}" for step, action in taken[:6]) + (" …" if len(taken) > 6 else "")
        lines.append(
            f"| {_settings(vsetup)} | {summary}: {steps or 'none'} | {mean(r['val_loss'] for r in runs):.4f} | "
            f"{mean(r['val_loss'] - static[r['seed']]['val_loss'] for r in runs):+.4f} | {live:.2f} | {rounded} | "
            f"{versus_rounded} | "
            f"{mean(_interpolated(curve, r['live_mean'], r['seed']) for r in runs):.4f} | "
            f"{mean(r['val_loss'] - _interpolated(curve, r['live_mean'], r['seed']) for r in runs):+.4f} |"
        )
        commands.append(_command(path.name, vsetup))
        grow_at = _grow_at(vsetup)
        if grow_at is not None:
            transients.append((_settings(vsetup), grow_at, runs))
        else:
            trials.append((_settings(vsetup), variant))
    lines += ["", "Runs:", "", *commands]
    if trials:
        lines += ["", "The growth trials of the lifecycle rows: the probe-set prediction (what the decision reads: "
                  "Δloss plus the price of the experts added) against the realised Δloss on the check set "
                  "(disjoint data), per kind:", "",
                  "| configuration | kind | scored | mean predicted ΔF | mean realised Δloss | realised lower | "
                  "Spearman within kind | Spearman over all kinds |", "|---|---|---|---|---|---|---|---|"]
        for settings, variant in trials:
            for kind in ("spawn", "widen"):
                k = variant["by_kind"].get(kind)
                if k is None:
                    continue
                lines.append(f"| {settings} | {kind} | {k['scored']} | {k['mean_predicted_df']:+.4f} | "
                             f"{k['mean_realised_dloss']:+.4f} | {k['realised_lower']} | {k['spearman']:+.3f} | "
                             f"{variant['spearman_predicted_df_vs_realised_dloss']:+.3f} |")
    if transients:
        width = setup["steps"] // 40
        lines += ["", "Training loss after the scheduled growth, minus the no-edit control's, paired per seed "
                  f"(mean over the {width}-step window ending that many steps after it; negative: growth ahead):",
                  "", "| configuration | " + " | ".join(f"+{a}" for a in AFTER) + " | final window |",
                  "|---|" + "---|" * (len(AFTER) + 1)]
        for settings, grow_at, runs in transients:
            cells = []
            for end in [grow_at + a for a in AFTER] + [setup["steps"]]:
                index = end // width - 1
                cells.append(f"{mean(r['train_lm_ce_by_window'][index] - static[r['seed']]['train_lm_ce_by_window'][index] for r in runs):+.4f}")
            lines.append(f"| {settings} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
