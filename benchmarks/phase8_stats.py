"""Statistics of ``bench_phase8`` (torch-free, importable by tests): paired differences with a t
interval, Spearman rank correlation, and the verdict, which never calls a comparison "matched" — it
says so when no edit happened, and otherwise states the goal as met or not."""

from __future__ import annotations

import math
import statistics
from typing import Any

N_LIVE = 6  # live experts at the start of the lifecycle arms, and of the `chrono` arm
#: two-sided 95 % quantiles of Student's t by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def paired(diffs: list[float]) -> dict[str, Any]:
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"n": n, "mean": round(mean, 4), "ci95": None}
    half = T95.get(n - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(n)
    return {"n": n, "mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)]}


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2
        i = j + 1
    return result


def spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else round(sxy / math.sqrt(sxx * syy), 4)


def verdict(arms: dict[str, list[dict[str, Any]]], fixed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """The issue's goal, computed: lifecycle mean val loss ≤ no-lifecycle's at ≤ its live experts, or
    ≤ the fixed MoE at the lifecycle's (rounded) mean live count. Never "matched" without an edit."""
    runs, base = arms["chrono_lifecycle"], arms["chrono"]
    n_edits = sum(len(r["edits"]) for r in runs)
    lc_loss = statistics.fmean(r["val_loss"] for r in runs)
    base_loss = statistics.fmean(r["val_loss"] for r in base)
    lc_live = statistics.fmean(r["live_mean"] for r in runs)
    k = round(lc_live)
    fixed_runs = base if k == N_LIVE else fixed.get(k, [])
    fixed_loss = statistics.fmean(r["val_loss"] for r in fixed_runs) if fixed_runs else None
    beats_base = lc_loss <= base_loss and lc_live <= N_LIVE
    beats_fixed = fixed_loss is not None and lc_loss <= fixed_loss
    if n_edits == 0:
        text = (
            f"no edit happened in the F_l lifecycle runs: the comparison is vacuous "
            f"({lc_loss:.4f} vs {base_loss:.4f} without lifecycle)"
        )
    else:
        text = (
            f"F_l lifecycle mean val loss {lc_loss:.4f} at {lc_live:.2f} mean live experts vs no lifecycle "
            f"{base_loss:.4f} at {N_LIVE}"
            + (f", fixed MoE at {k}: {fixed_loss:.4f}" if fixed_loss is not None else "")
            + f" ({n_edits} edits): goal {'met' if beats_base or beats_fixed else 'NOT met'}"
        )
    return {
        "edits": n_edits,
        "lifecycle_val_loss": round(lc_loss, 4),
        "no_lifecycle_val_loss": round(base_loss, 4),
        "lifecycle_live_mean": round(lc_live, 3),
        "fixed_at_lifecycle_live": k,
        "fixed_val_loss": None if fixed_loss is None else round(fixed_loss, 4),
        "goal_vs_no_lifecycle": n_edits > 0 and beats_base,
        "goal_vs_fixed": n_edits > 0 and beats_fixed,
        "verdict": text,
    }


def by_kind(scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per edit kind: how many scored edits, mean predicted ΔF and realised Δloss, how many realised
    a lower loss, and the rank correlation within the kind (are the edits of one kind told apart, not
    only the kinds from each other?)."""
    result = {}
    for kind in sorted({s["action"] for s in scored}):
        rows = [s for s in scored if s["action"] == kind]
        predicted, realised = [s["delta_f_predicted"] for s in rows], [s["delta_loss_realised"] for s in rows]
        result[kind] = {
            "scored": len(rows),
            "mean_predicted_df": round(statistics.fmean(predicted), 4),
            "mean_realised_dloss": round(statistics.fmean(realised), 4),
            "realised_lower": sum(r < 0 for r in realised),
            "spearman": spearman(predicted, realised),
        }
    return result
