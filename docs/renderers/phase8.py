"""docs/chronomoe.md's Phase 8 tables, from ``docs/results/phase8.json`` (``benchmarks/bench_phase8.py``):
per-arm means over seeds, paired differences against no lifecycle with 95 % t intervals, the
evidence behind the edits (Spearman of predicted ΔF vs realised Δloss) and the computed verdict;
then, the same for ``phase8_320.json`` where it exists (the earlier reduced run, which the
warm-trial variant of ``phase8_warm_trial.py`` is paired with)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

LABELS = {
    "chrono": "`chrono` (no lifecycle, 6 columns)",
    "chrono_static": "`chrono_static` (8 columns, 6 live, no edits)",
    "chrono_lifecycle": "`chrono_lifecycle` (F_l + evidence)",
    "chrono_adhoc": "`chrono_adhoc` (thresholds)",
}


def machine_line(data: dict[str, Any]) -> str:
    machine = data.get("machine", {})
    load = machine.get("load_average_before")
    where = f"{machine.get('cpu_count', '?')}-core CPU ({machine.get('cpu', 'unknown CPU')})"
    shared = (
        f", load average {load[0]} when it started (shared machine: wall seconds are noisy)" if load else ""
    )
    return f"Measured on a {where}, torch {machine.get('torch', '?')}{shared}."


def _row(label: str, runs: list[dict[str, Any]]) -> str:
    mean = statistics.fmean
    losses = " / ".join(f"{r['val_loss']:.4f}" for r in runs)
    edits = sum(len(r["edits"]) for r in runs)
    finals = "; ".join(" / ".join(str(k) for k in r["live_final_per_layer"]) for r in runs)
    return (
        f"| {label} | {mean(r['val_loss'] for r in runs):.4f} | {losses} | {mean(r['live_mean'] for r in runs):.2f} | "
        f"{finals} | {mean(r['max_vio'] for r in runs):.3f} | {edits} | {mean(r['wall_seconds'] for r in runs):.0f} |"
    )


def _interval(d: dict[str, Any]) -> str:
    ci = d["ci95"]
    return (
        f"{d['mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"
        if ci
        else f"{d['mean']:+.4f} (one seed: no interval)"
    )


#: the earlier reduced-protocol run (320 steps), kept for its evidence and its paired variant
REDUCED = "phase8_320.json"


def render(results: Path) -> str:
    text = render_file(results / "phase8.json")
    if (results / REDUCED).is_file():
        text += ("\nThe earlier reduced run (320 steps per run, before the lifecycle arm ran through the "
                 "sovereign core's kernel), kept for its evidence and for the variant below, which is paired "
                 "with its controls:\n\n" + render_file(results / REDUCED))
    return text


def render_file(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    result = data["results"]
    setup = result["setup"]
    seeds = ", ".join(str(s) for s in setup["seeds"])
    command = (
        f"python benchmarks/bench_phase8.py{' --quick' if data.get('quick') else ''} --steps {setup['steps']} "
        f"--seeds {','.join(str(s) for s in setup['seeds'])}{'' if result.get('references') else ' --no-routers'}"
    )
    lines = [
        f"**{setup['label']}.** `{command}`: {setup['steps']} steps per run, seeds {seeds}; "
        f"{setup['n_columns']} columns, {setup['n_live_start']} live at the start, top-{setup['top_k']}, "
        f"{setup['n_layers']} layers; lifecycle clocks {setup['clocks']}; validation `lm_ce` on "
        f"{setup['eval_samples']} held-out windows. " + machine_line(data),
        "",
        "| arm | mean val loss | per seed | mean live experts (time-mean) | final live per layer (per seed) | MaxVio "
        "| edits | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["arms"].items():
        lines.append(_row(LABELS.get(name, name), runs))
    for k, runs in sorted(result["fixed"].items(), key=lambda kv: int(kv[0])):
        lines.append(_row(f"fixed MoE, {k} experts", runs))
    lines += [
        "",
        "Paired differences in validation loss against no lifecycle (same seed), mean and 95 % t interval "
        "over seeds:",
        "",
    ]
    lines += [
        f"- {LABELS.get(name, name)}: {_interval(d)}"
        for name, d in result["paired_minus_no_lifecycle"].items()
    ]
    if "paired_minus_static" in result:
        lines += ["", "Against `chrono_static` (the same network and initialisation, no edits):", ""]
        lines += [
            f"- {LABELS.get(name, name)}: {_interval(d)}" for name, d in result["paired_minus_static"].items()
        ]
    evidence = result["evidence"]

    def rho(name: str) -> str:
        value = evidence.get(name)
        return "—" if value is None else f"{value:+.3f}"

    lines += [
        "",
        f"Edits scored on held-out evidence in the F_l runs: {evidence['scored_edits']}; Spearman rank "
        f"correlation of predicted ΔF with realised Δloss: {rho('spearman_predicted_df_vs_realised_dloss')} "
        f"(goal {evidence['goal']}).",
    ]
    if "realised" in evidence:
        lines += [
            "",
            f"- predicted ΔF: {evidence['predicted']}; realised Δloss: {evidence['realised']};",
            f"- the probe-set Δloss alone (without the price of the experts): "
            f"{rho('spearman_probe_dloss_vs_realised_dloss')};",
            f"- ablation, the coherence model's ΔF (`free_energy.py`) against the same realised Δloss: "
            f"{rho('spearman_coherence_df_vs_realised_dloss')}.",
        ]
    if "by_kind" in evidence:
        taken = Counter(e["action"] for r in result["arms"]["chrono_lifecycle"] for e in r["edits"])
        lines += [
            "",
            "Scored edits of the F_l runs by kind (negative Δ: an improvement; Spearman within the kind):",
            "",
            "| edit kind | scored | mean predicted ΔF | mean realised Δloss | realised Δloss < 0 | Spearman | taken |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, row in evidence["by_kind"].items():
            rho_kind = "—" if row["spearman"] is None else f"{row['spearman']:+.3f}"
            lines.append(
                f"| {kind} | {row['scored']} | {row['mean_predicted_df']:+.4f} | {row['mean_realised_dloss']:+.4f} | "
                f"{row['realised_lower']} | {rho_kind} | {taken.get(kind, 0)} |"
            )
    comparison = result["comparison"]
    lines += ["", f"**Verdict (computed by the benchmark):** {comparison['verdict']}."]
    return "\n".join(lines) + "\n"
