"""mosaic_commitment at its CPU defaults (seed document 000's trace structure): commitments on the
held-out template set, the ledger built from the model's own COMMIT decisions, turn taking, and
what each of COMMIT / IDLE / RESPOND serves when it is forced to NOP.

Goals (issue 16): held-out answer_exact >= 0.95 and <= 0.1 with the memory read zeroed, per-class
held-out-template accuracy >= 0.95, ledger_exact >= 0.95, each opcode's ablation moving its metric by
>= 0.3 absolute (or >= 50 % relative), within 10 minutes. The machine's load average is recorded
beside the wall time, since a shared CPU inflates it.
``--from-run RUN_DIR`` builds the figures from a finished ``mosaic run mosaic_commitment`` (its
``summary.json``) instead of training, with ``--load-before`` the load average taken when it started
and ``--cpu-seconds`` the run's CPU time (user + system, e.g. from ``/usr/bin/time``) where measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import goal, main

from mosaic.runtime.training.run import run_preset

SERVES = {
    "COMMIT": ("commitment", "ledger_exact"),
    "IDLE": ("turns", "silence"),
    "RESPOND": ("turns", "onset"),
}


def moved(before: float | None, after: float | None) -> bool | None:
    if before is None or after is None:
        return None
    return before - after >= 0.3 or (before > 0 and (before - after) / before >= 0.5)


def run(quick: bool) -> dict[str, Any]:
    overrides = (
        [
            "trainer.steps=20",
            "trainer.warmup_steps=2",
            "eval.samples=8",
            "curriculum.warmup_steps=2",
            "curriculum.cooldown_steps=4",
        ]
        if quick
        else []
    )
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as root:
        summary = run_preset("mosaic_commitment", out=Path(root), show_progress=False, overrides=overrides)
    return figures(summary, load_before)


def figures(
    summary: dict[str, Any], load_before: tuple[float, ...], cpu_seconds: float | None = None
) -> dict[str, Any]:
    """The benchmark's figures from a run's summary (also usable on a run made with ``mosaic run``)."""
    evaluation = summary["eval"]
    commitment = evaluation["commitment"]
    per_class = commitment["heldout_templates"]["per_class_accuracy"]
    off = evaluation.get("ablations", {}).get("opcode_off", {})
    ablations = {}
    for opcode, (section, metric) in SERVES.items():
        before, after = evaluation[section][metric], off.get(opcode, {}).get(metric)
        ablations[opcode] = {
            "metric": metric,
            "on": before,
            "forced_nop": after,
            "moved_enough": moved(before, after),
        }
    answer_exact = evaluation.get("answer_exact")
    memory_off = evaluation.get("ablations", {}).get("memory_off", {}).get("answer_exact")
    recall_goals = {}
    if answer_exact is not None:
        recall_goals["answer_exact"] = goal(answer_exact, 0.95, at_least=True)
    if memory_off is not None:
        recall_goals["memory_off_answer_exact"] = goal(memory_off, 0.1, at_least=False)
    return {
        "steps": summary["steps"],
        "status": summary["status"],
        "wall_seconds": summary["wall_seconds"],
        "cpu_seconds": cpu_seconds,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "per_class_accuracy": per_class,
        "ledger_exact": commitment["ledger_exact"],
        "turns": evaluation["turns"],
        "answer_exact": answer_exact,
        "memory_off_answer_exact": memory_off,
        "opcode_off": ablations,
        "goals": {
            **recall_goals,
            **{f"heldout_{name}": goal(value, 0.95, at_least=True) for name, value in per_class.items()},
            "ledger_exact": goal(commitment["ledger_exact"], 0.95, at_least=True),
            "wall_seconds": goal(summary["wall_seconds"], 600, at_least=False),
        },
    }


def from_run(run_dir: Path, load_before: tuple[float, ...], cpu_seconds: float | None) -> dict[str, Any]:
    return figures(json.loads((run_dir / "summary.json").read_text()), load_before, cpu_seconds)


if __name__ == "__main__":
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--from-run", type=Path, help="a finished mosaic_commitment run directory")
    extra.add_argument(
        "--load-before",
        type=float,
        nargs=3,
        default=(float("nan"),) * 3,
        help="the 1/5/15-minute load averages when that run started",
    )
    extra.add_argument(
        "--cpu-seconds",
        type=float,
        default=None,
        help="that run's CPU time, user + system (e.g. from /usr/bin/time)",
    )
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    if known.from_run is not None:
        main(
            lambda quick: from_run(known.from_run, tuple(known.load_before), known.cpu_seconds),
            "bench_commitment",
        )
    else:
        main(run, "bench_commitment")
