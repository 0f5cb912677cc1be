"""The idle-time table (consolidation A/B, online learning, tool building), rendered from
``docs/results/idle.json`` (written by ``benchmarks/bench_idle.py``): one row per figure; a part the
JSON does not hold is listed as not measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _number(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _consolidation(part: dict[str, Any]) -> list[tuple[str, object, str]]:
    recall, ordinary, stream = part["important_recall"], part["ordinary_recall"], part["stream"]
    setting = (
        f"{stream['facts']} facts ({stream['important']} with priority 1), {stream['memory_cells']} memory "
        f"cells, idle every {stream['idle_every']} facts, {stream['streams']} streams"
    )
    return [
        ("consolidation.important_recall.with", recall["with"], setting),
        ("consolidation.important_recall.without", recall["without"], "the same streams, no consolidation"),
        ("consolidation.important_recall.prune_only", recall["prune_only"], "ablation: prune, no refresh"),
        (
            "consolidation.important_recall.refresh_only",
            recall["refresh_only"],
            "ablation: refresh, no prune",
        ),
        ("consolidation.ordinary_recall.with", ordinary["with"], "priority-0 facts (pruned on purpose)"),
        ("consolidation.ordinary_recall.without", ordinary["without"], "priority-0 facts"),
        ("consolidation.met", part["met"], f"goal: with {part['goal']['with']}, drop {part['goal']['drop']}"),
    ]


def _online(part: dict[str, Any]) -> list[tuple[str, object, str]]:
    pattern, heldout = part["pattern_loss"], part["heldout_loss"]
    return [
        (
            "online.pattern_loss_drop",
            part["pattern_loss_drop"],
            f"Weather LM loss {pattern['before']:.4f} -> {pattern['after']:.4f} (nats/byte)",
        ),
        (
            "online.heldout_loss_rise",
            part["heldout_loss_rise"],
            f"held-out trace loss {heldout['before']:.4f} -> {heldout['after']:.4f}",
        ),
        (
            "online.updates",
            part["updates"],
            f"kept adapter updates ({part['rollbacks']} rolled back by the guard)",
        ),
        *_interference(part),
        (
            "online.met",
            part["met"],
            f"goal: drop {part['goal']['pattern_loss_drop']}, rise {part['goal']['heldout_loss_rise']}",
        ),
    ]


def _interference(part: dict[str, Any]) -> list[tuple[str, object, str]]:
    """The diagnosis: unguarded steps on Weather alone, per adapter target set (absent in older JSON)."""
    if "interference" not in part:
        return []
    diagnosis = part["interference"]
    return [
        (
            f"online.interference.{name}.heldout_loss_rise",
            figures["heldout_loss_rise"],
            f"{diagnosis['steps']} unguarded steps on Weather alone; pattern loss drop "
            f"{figures['pattern_loss_drop']:.4f}",
        )
        for name, figures in diagnosis["variants"].items()
    ]


def render(results: Path) -> str:
    data = json.loads((results / "idle.json").read_text())
    rows: list[tuple[str, object, str]] = []
    for name, rows_of in (("consolidation", _consolidation), ("online", _online)):
        if name in data:
            part = data[name]
            rows += rows_of(part)
            load = part.get("load_average")
            during = (
                f", 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end"
                if load
                else ""
            )
            rows.append(
                (
                    f"{name}.wall_seconds",
                    part["wall_seconds"],
                    ("quick run" if part["quick"] else "full run") + during,
                )
            )
        else:
            rows.append((name, "not measured", ""))
    if "tools" in data:
        rows.append(("tools.success_rate", data["tools"]["success_rate"], ""))
    else:
        rows.append(("tools.success_rate", "not measured", ""))
    lines = ["| key | value | setting |", "|---|---|---|"]
    lines += [f"| `{key}` | {_number(value)} | {setting} |" for key, value, setting in rows]
    lines += ["", f"Machine: {data['machine']['note']}."]
    return "\n".join(lines) + "\n"
