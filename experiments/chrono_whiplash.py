"""Capacity whiplash, injected and earned: how far routing is displaced by a shock and how much of
the displacement remains after it (hysteresis), for router.chrono versus router.topk.

Both systems are the ``chrono`` and ``topk`` experiments of the ``phase8_moe`` preset, trained the
same way (same seed, data order and steps). Routing is always measured on the SAME fixed probe — the
first ``PROBE`` held-out windows — in eval mode, so the two systems see identical inputs; training
keeps drawing distinct batches throughout.

- ``injected``: half of every layer's experts are switched off (router columns inactive) for
  ``--shock`` steps, then switched back on;
- ``earned``: for ``--shock`` steps the model trains on the same text reversed character by
  character (same vocabulary, different statistics), so the routers shift load by learning; then
  training returns to the original text.

- ``control``: no shock — the routing drift that the same number of steps causes anyway.

Per system and kind: ``displacement`` = TV distance between the probe's per-layer expert load
before and at the end of the shock, ``hysteresis`` = TV distance before vs ``--recover`` steps after
it (mean over layers), and the probe's cross-entropy before, at the end of the shock and after;
``summary`` gives each system's hysteresis in excess of its control drift.
Run: ``python -m experiments.chrono_whiplash``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from mosaic.data.corpora import corpus_bytes

PROBE = 32
SYSTEMS = ("chrono", "topk")


def probe_measure(trainer: Any, probe: dict[str, torch.Tensor]) -> dict[str, Any]:
    from mosaic.runtime.training.objective import lm_cross_entropy

    model = trainer.model
    model.eval()
    with torch.no_grad():
        out = model(probe)
    model.train()
    return {"load": out.aux["moe_expert_load"].clone(), "lm_ce": float(lm_cross_entropy(out, probe))}


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(0.5 * (a - b).abs().sum(-1).mean())  # (L, E) -> mean over layers


def one_run(system: str, kind: str, args: argparse.Namespace, reversed_path: Path) -> dict[str, Any]:
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.training.batching import collate_for
    from mosaic.runtime.training.manifest import load_manifest
    from mosaic.runtime.training.trainer import Trainer

    registry = get_registry()
    total = args.pretrain + args.shock + args.recover
    overrides = [f"vars.data={args.data if args.data is not None else 'null'}", f"vars.steps={total}", f"vars.seed={args.seed}", "vars.warmup=10"]
    experiment = load_manifest("phase8_moe", registry, overrides=overrides).experiment(system)
    trainer = Trainer(experiment, registry, None, fingerprint="whiplash", show_progress=False)
    eval_data = experiment.eval_dataset.build(registry)
    probe = collate_for(eval_data)([eval_data[i] for i in range(PROBE)])
    for _ in range(args.pretrain):
        trainer.train_step()
    before = probe_measure(trainer, probe)
    layers = trainer.model.ffn_layers()
    original = trainer.dataset
    if kind == "injected":
        for moe in layers:
            moe.router.columns.active[: moe.n_experts // 2] = False
    elif kind == "earned":
        trainer.dataset = registry.build("dataset.text", {"path": str(reversed_path),
                                                          "block_size": original.block_size, "split": "train"})
    for _ in range(args.shock):
        trainer.train_step()
    shocked = probe_measure(trainer, probe)
    if kind == "injected":
        for moe in layers:
            moe.router.columns.active[:] = True
    trainer.dataset = original
    for _ in range(args.recover):
        trainer.train_step()
    after = probe_measure(trainer, probe)
    return {
        "displacement": round(total_variation(shocked["load"], before["load"]), 4),
        "hysteresis": round(total_variation(after["load"], before["load"]), 4),
        "probe_ce": {"before": round(before["lm_ce"], 4), "shock_end": round(shocked["lm_ce"], 4),
                     "after": round(after["lm_ce"], 4)},
        "load_before_layer0": [round(x, 3) for x in before["load"][0].tolist()],
        "load_after_layer0": [round(x, 3) for x in after["load"][0].tolist()],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        reversed_path = Path(tmp) / "reversed.txt"
        text = args.data.read_text(encoding="utf-8") if args.data is not None else corpus_bytes("tinyshakespeare").decode()
        reversed_path.write_text(text[::-1], encoding="utf-8")
        results = {kind: {system: one_run(system, kind, args, reversed_path) for system in SYSTEMS}
                   for kind in ("control", "injected", "earned")}
    control = results["control"]
    summary = {
        kind: {
            # hysteresis beyond the drift that the same steps cause without any shock
            f"{system}_excess_hysteresis": round(r[system]["hysteresis"] - control[system]["hysteresis"], 4)
            for system in SYSTEMS
        }
        for kind, r in results.items() if kind != "control"
    }
    return {"setup": {"preset": "phase8_moe", "pretrain": args.pretrain, "shock": args.shock,
                      "recover": args.recover, "seed": args.seed, "probe_windows": PROBE},
            "results": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description="ChronoMoE capacity whiplash, injected and earned")
    parser.add_argument("--pretrain", type=int, default=150)
    parser.add_argument("--shock", type=int, default=30)
    parser.add_argument("--recover", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file (default: the tiny Shakespeare corpus shipped with mosaic-data)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/chrono_whiplash.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
