"""MQAR(64, 4, V 8192), d 64, 2 layers: MOSAIC (mqar_mosaic) against the Transformer baseline
(mqar_transformer) on the same data, optimiser and step budget, in the same run.

Reports held-out MQAR accuracy (accuracy over query positions) at each evaluation, the final
accuracy, and the wall time to first reach 0.99; the goal is MOSAIC >= 0.99 and faster.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness import goal, main

from mosaic.runtime.run import run_preset
from mosaic.runtime.run_dir import RunDir

TARGET = 0.99


def train(preset: str, *, steps: int, max_seconds: float, eval_every: int, root: Path) -> dict[str, Any]:
    summary = run_preset(preset, out=root, show_progress=False, overrides=[
        f"trainer.steps={steps}", f"trainer.max_seconds={max_seconds}", f"trainer.eval_every={eval_every}",
        "trainer.checkpoint_every=0", "eval.samples=512",
    ])
    evals = [r for r in RunDir(Path(summary["run_dir"])).read_metrics() if r.get("split") == "eval"]
    curve = [(r["step"], round(r["elapsed_s"], 1), round(r["token_accuracy"], 4)) for r in evals]
    reached = next(((step, seconds) for step, seconds, accuracy in curve if accuracy >= TARGET), None)
    return {
        "final_accuracy": summary["eval"]["token_accuracy"],
        "steps": summary["steps"],
        "status": summary["status"],
        "wall_seconds": round(summary["wall_seconds"], 1),
        "tokens_per_s": round(summary["tokens_per_s"], 1),
        "parameters": summary["parameters"],
        "steps_to_0.99": reached[0] if reached else None,
        "seconds_to_0.99": reached[1] if reached else None,
        "curve_step_seconds_accuracy": curve,
    }


def run(quick: bool) -> dict[str, Any]:
    steps, max_seconds, eval_every = (60, 120.0, 20) if quick else (1500, 480.0, 50)
    with tempfile.TemporaryDirectory() as root:
        mosaic = train("mqar_mosaic", steps=steps, max_seconds=max_seconds, eval_every=eval_every, root=Path(root))
        transformer = train("mqar_transformer", steps=steps, max_seconds=max_seconds, eval_every=eval_every,
                            root=Path(root))
    results: dict[str, Any] = {"mosaic": mosaic, "transformer": transformer,
                               "mosaic_accuracy": goal(mosaic["final_accuracy"], TARGET, at_least=True)}
    if mosaic["seconds_to_0.99"] is not None and transformer["seconds_to_0.99"] is not None:
        results["time_to_0.99_mosaic_over_transformer"] = goal(
            mosaic["seconds_to_0.99"] / transformer["seconds_to_0.99"], 1.0, at_least=False)
    else:
        results["time_to_0.99_mosaic_over_transformer"] = {
            "value": None, "goal": "<= 1.0", "met": False,
            "note": "one model did not reach 0.99 within the budget; see each curve",
        }
    return results


if __name__ == "__main__":
    main(run, "mqar")
