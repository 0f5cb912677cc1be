"""MQAR(64, 4, V 8192), d 64, 2 layers: MOSAIC (mqar_mosaic) against the Transformer baseline
(mqar_transformer) on the same data, optimiser and step budget, one after the other in the same run.

Reports held-out MQAR accuracy (accuracy over query positions) at each evaluation, the final
accuracy, and the wall time to first reach 0.99; the goal is MOSAIC >= 0.99 and faster.

A model that does not reach 0.99 within the shared budget is trained again, from scratch, with
twice the steps (``extended``), so that its time to 0.99 is measured rather than left unknown. The
extension only ever helps the model that gets it, so a comparison against an extended baseline is
conservative. If even the extended run falls short, its whole wall time is a lower bound on its
time to 0.99 and the ratio is reported as a bound.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness import goal, main

from mosaic.runtime.training.run import run_preset
from mosaic.runtime.training.run_dir import RunDir

TARGET = 0.99
#: --quick runs too few steps for mqar_mosaic's teacher-forcing schedule (100 + 900 steps): shorten it
QUICK_OVERRIDES = {"mqar_mosaic": ["vars.tf_warmup=5", "vars.tf_cooldown=10"], "mqar_transformer": []}


def train(preset: str, *, steps: int | None, eval_every: int, root: Path, quick: bool) -> dict[str, Any]:
    overrides = [f"trainer.eval_every={eval_every}", "trainer.checkpoint_every=0", "eval.samples=512"]
    if steps is not None:
        overrides.append(f"trainer.steps={steps}")
    if quick:
        overrides += QUICK_OVERRIDES[preset]
    summary = run_preset(preset, out=root, show_progress=False, overrides=overrides)
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


def train_until_reached(preset: str, *, steps: int | None, eval_every: int, root: Path,
                        quick: bool) -> dict[str, Any]:
    """The run on the shared budget and, when it falls short of 0.99, one from scratch on twice the steps."""
    result = train(preset, steps=steps, eval_every=eval_every, root=root, quick=quick)
    if result["seconds_to_0.99"] is None:
        result["extended"] = train(preset, steps=2 * result["steps"], eval_every=eval_every, root=root,
                                   quick=quick)
    return result


def time_to_target(result: dict[str, Any]) -> tuple[float, str]:
    """Seconds to 0.99 and which run measured it (``budget``, ``extended``, or a ``lower bound``)."""
    if result["seconds_to_0.99"] is not None:
        return result["seconds_to_0.99"], "within the shared budget"
    extended = result.get("extended")
    if extended is not None and extended["seconds_to_0.99"] is not None:
        return extended["seconds_to_0.99"], f"with an extended budget of {extended['steps']} steps"
    longest = extended if extended is not None else result
    return longest["wall_seconds"], f"lower bound: not reached in {longest['steps']} steps"


def run(quick: bool) -> dict[str, Any]:
    steps, eval_every = (60, 20) if quick else (None, 50)  # None: each preset's default budget (the same)
    with tempfile.TemporaryDirectory() as root:
        mosaic = train_until_reached("mqar_mosaic", steps=steps, eval_every=eval_every, root=Path(root),
                                     quick=quick)
        transformer = train_until_reached("mqar_transformer", steps=steps, eval_every=eval_every,
                                          root=Path(root), quick=quick)
    if mosaic["steps"] != transformer["steps"]:
        raise RuntimeError(f"the presets' budgets differ: {mosaic['steps']} vs {transformer['steps']} steps")
    results: dict[str, Any] = {"mosaic": mosaic, "transformer": transformer,
                               "mosaic_accuracy": goal(mosaic["final_accuracy"], TARGET, at_least=True)}
    mosaic_seconds, mosaic_how = time_to_target(mosaic)
    transformer_seconds, transformer_how = time_to_target(transformer)
    ratio = goal(mosaic_seconds / transformer_seconds, 1.0, at_least=False)
    ratio["mosaic"] = f"{mosaic_seconds} s, {mosaic_how}"
    ratio["transformer"] = f"{transformer_seconds} s, {transformer_how}"
    if mosaic_how.startswith("lower bound"):
        ratio["met"] = False
        ratio["note"] = "MOSAIC did not reach 0.99"
    elif transformer_how.startswith("lower bound"):
        ratio["note"] = "the Transformer never reached 0.99: the ratio is an upper bound"
    results["time_to_0.99_mosaic_over_transformer"] = ratio
    return results


if __name__ == "__main__":
    main(run, "mqar")
