"""The MQAR grid's JSON (rows merged by point, model, variant and seed) and its recall-vs-state plot.

Used by ``bench_mqar.py``; the plot needs matplotlib (mosaic-runtime's ``plot`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: published figures, not our runs: the recall-vs-state plot in the Zoology repository's README
#: (HazyResearch/zoology), state as that plot counts it for the sequence mixer
ANCHORS = [
    {"model": "DeltaNet (published)", "state_floats": 3.5e4, "accuracy": 0.96, "relation": "=",
     "source": "Zoology README, recall-vs-state plot (published figure, not our run)"},
    {"model": "Mamba-2 (published)", "state_floats": 1e5, "accuracy": 0.85, "relation": "<=",
     "source": "Zoology README, recall-vs-state plot (published figure, not our run)"},
]
KEY = ("point", "model", "variant", "seed", "micro")


def load(path: Path) -> dict[str, Any]:
    if path.is_file():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {"benchmark": "mqar", "anchors": ANCHORS, "rows": []}


def merge_rows(path: Path, rows: Sequence[dict[str, Any]], *, platform_name: str) -> None:
    """Add ``rows`` to the JSON at ``path``, replacing any row with the same point, model, variant
    and seed; other rows stay, so runs of different points accumulate."""
    data = load(path)
    fresh = {tuple(row.get(k) for k in KEY) for row in rows}
    kept = [row for row in data["rows"] if tuple(row.get(k) for k in KEY) not in fresh]
    data["rows"] = sorted([*kept, *rows], key=lambda r: (r["seq_len"], r["model"], r["variant"], r["seed"]))
    data["anchors"] = ANCHORS
    data["platform"] = platform_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def merge_sweep(path: Path, record: dict[str, Any]) -> None:
    """Keep a learning-rate sweep (``record``: point, model, steps, runs, machine, command) under
    ``sweeps``, replacing an earlier one of the same point and model, as soon as it ends, so that a
    sweep whose full-budget run is cut short is still recorded."""
    data = load(path)
    key = (record["point"], record["model"], record.get("micro", False))
    kept = [s for s in data.get("sweeps", []) if (s["point"], s["model"], s.get("micro", False)) != key]
    data["sweeps"] = sorted([*kept, record], key=lambda s: (int(s["point"].split(",")[0]), s["model"]))
    data["anchors"] = ANCHORS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def plot(path: Path, out: Path) -> None:
    """Held-out accuracy against recurrent state per layer (log scale), our rows and the anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"mosaic": "o", "transformer": "s", "delta": "^"}
    for model, marker in markers.items():
        rows = [r for r in data["rows"] if r["model"] == model and r["variant"] == "full"]
        if rows:
            ax.scatter([max(r["state_floats"]["per_layer"]) for r in rows], [r["accuracy"] for r in rows],
                       marker=marker, label=model)
            for r in rows:
                ax.annotate(f"({r['point']})", (max(r["state_floats"]["per_layer"]), r["accuracy"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    for anchor in ANCHORS:
        ax.scatter([anchor["state_floats"]], [anchor["accuracy"]], marker="x", color="grey")
        label = f"{anchor['model']}: {'<= ' if anchor['relation'] == '<=' else ''}{anchor['accuracy']}"
        ax.annotate(label, (anchor["state_floats"], anchor["accuracy"]), fontsize=7, color="grey",
                    xytext=(-4, -10), textcoords="offset points", ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("recurrent state per layer (floats; a Transformer's KV cache at the context length)")
    ax.set_ylabel("held-out MQAR accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("MQAR recall vs state (grey x: published reference values, not our runs)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
