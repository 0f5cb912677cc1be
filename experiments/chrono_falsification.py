"""Falsification test of ChronoMoE's coherence signal: damage one expert of a trained MoE and ask
whether its coherence φ reacts before its utilisation and the loss do.

Trains the ``chrono`` experiment of the ``phase8_moe`` preset (router.chrono, no lifecycle) for
``--pretrain`` steps, replaces the output projection of the most used expert of layer 0 with noise of
the same norm (the expert now returns something unrelated to the mixture), and keeps training.
Three per-step signals of that expert/model are recorded before and after the damage:

- ``phi_fast``: the expert's fast-clock coherence (what ChronoSystem sees);
- ``load``: its share of routing assignments in that step's batch;
- ``lm_ce``: the training loss of the step.

A signal "reacts" at the first post-damage step whose value leaves the pre-damage window's
mean ± ``Z`` standard deviations (φ downwards, loss upwards, load either way). The JSON reports each
signal's lag in steps (1 = the first step after the damage; null = never within ``--after``) and
whether φ reacted strictly before both others. Run: ``python -m experiments.chrono_falsification``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

Z = 3.0
WINDOW = 30


def reaction_step(before: list[float], after: list[float], direction: str) -> int | None:
    mean = statistics.fmean(before)
    spread = max(statistics.pstdev(before), 1e-6)
    for index, value in enumerate(after, start=1):
        z = (value - mean) / spread
        if (direction == "down" and z < -Z) or (direction == "up" and z > Z) or (direction == "any" and abs(z) > Z):
            return index
    return None


def train_step_signals(trainer: Any, expert: int) -> dict[str, float]:
    metrics, _ = trainer.train_step()
    moe = trainer.model.ffn_layers()[0]
    snapshot = moe.router.coherence.snapshot()
    load = moe.aux_outputs()["moe_expert_load"]
    return {"phi_fast": snapshot.experts[expert].phi_fast, "load": float(load[expert]), "lm_ce": metrics["lm_ce"]}


def run(pretrain: int, after: int, seed: int, data: Path | None) -> dict[str, Any]:
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.training.manifest import load_manifest
    from mosaic.runtime.training.trainer import Trainer

    registry = get_registry()
    overrides = [f"vars.data={data if data is not None else 'null'}", f"vars.steps={pretrain + after}", f"vars.seed={seed}", "vars.warmup=10"]
    experiment = load_manifest("phase8_moe", registry, overrides=overrides).experiment("chrono")
    trainer = Trainer(experiment, registry, None, fingerprint="falsification", show_progress=False)
    for _ in range(pretrain):
        trainer.train_step()
    moe = trainer.model.ffn_layers()[0]
    load = moe.router.coherence.snapshot().routing_share
    expert = max(range(len(load)), key=lambda e: load[e])
    before = [train_step_signals(trainer, expert) for _ in range(WINDOW)]
    with torch.no_grad():
        weight = moe.experts.w_down[expert]
        noise = torch.randn_like(weight)
        weight.copy_(noise * weight.norm() / noise.norm())
    post = [train_step_signals(trainer, expert) for _ in range(after)]
    directions = {"phi_fast": "down", "load": "any", "lm_ce": "up"}
    lags = {name: reaction_step([s[name] for s in before], [s[name] for s in post], d)
            for name, d in directions.items()}
    phi_lag = lags["phi_fast"]
    others = [lag for name, lag in lags.items() if name != "phi_fast"]
    first = phi_lag is not None and all(lag is None or phi_lag < lag for lag in others)
    return {
        "setup": {"preset": "phase8_moe", "experiment": "chrono", "pretrain_steps": pretrain + WINDOW,
                  "after_steps": after, "seed": seed, "layer": 0, "expert": expert, "z_threshold": Z,
                  "baseline_window": WINDOW, "damage": "w_down replaced by noise of equal norm"},
        "lags_steps": lags,
        "phi_reacted_first": first,
        "before_mean": {name: round(statistics.fmean(s[name] for s in before), 4) for name in directions},
        "after_first_5": {name: [round(s[name], 4) for s in post[:5]] for name in directions},
        "after_last": {name: round(post[-1][name], 4) for name in directions},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="ChronoMoE falsification: does φ react first?")
    parser.add_argument("--pretrain", type=int, default=200)
    parser.add_argument("--after", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file (default: the tiny Shakespeare corpus shipped with mosaic-data)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/chrono_falsification.json"))
    args = parser.parse_args()
    result = run(args.pretrain, args.after, args.seed, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
