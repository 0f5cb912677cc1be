"""ChronoMoE phase 8 (seed 003): five routing configurations on the same data, model and budget.

The ``phase8_moe`` preset — character-level tiny Shakespeare, MOSAIC LM with 2 layers whose
local-mixer MLP is ``layer.moe`` (8 experts, top-2) — is trained once per experiment:

- ``topk``: router.topk (Switch load-balance loss 0.01, z-loss 0.001);
- ``loss_free``: router.loss_free (DeepSeek-V3 selection bias, no aux loss);
- ``chrono``: router.chrono, no lifecycle;
- ``chrono_lifecycle``: router.chrono + ``layer.chrono_lifecycle`` (edits only when F_l drops);
- ``chrono_adhoc``: router.chrono + the lifecycle with the original's fixed thresholds.

Per configuration: validation cross-entropy (``lm_ce`` on the held-out tail of the file), active
experts and MaxVio at the end of training (train window of the last log step, mean over layers),
live experts after the lifecycle's edits, and the decisions taken (counted by action). The closing
``comparison`` says whether the F_l lifecycle matched or beat ``chrono`` without lifecycle on
validation loss (within ``MATCH_TOLERANCE`` nats) and with how many live experts.

The text is the tiny Shakespeare corpus shipped with mosaic-data. Full: 300 steps each;
``--quick``: 40 steps.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import main

EXPERIMENTS = ("topk", "loss_free", "chrono", "chrono_lifecycle", "chrono_adhoc")
EDITS = {"prune": -1, "merge": -1, "split": 1, "spawn": 1}
MATCH_TOLERANCE = 0.02
N_EXPERTS, N_LAYERS = 8, 2
EVAL_SAMPLES = 256  # held-out windows per validation loss (the preset's own default is 64)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_one(experiment: str, steps: int, out: Path) -> dict[str, Any]:
    from mosaic.runtime.training.run import run_preset

    overrides = [f"vars.steps={steps}", "vars.warmup=10", f"eval.samples={EVAL_SAMPLES}",
                 "eval.batch_size=64"]
    started = time.perf_counter()
    summary = run_preset("phase8_moe", experiment=experiment, out=out, overrides=overrides,
                         show_progress=False)
    seconds = time.perf_counter() - started
    run = Path(summary["run_dir"])
    decisions = read_jsonl(run / "decisions.jsonl")
    live = [N_EXPERTS] * N_LAYERS
    for record in decisions:
        live[record["layer"]] += EDITS.get(record["action"], 0)
    final = summary["final"]
    return {
        "val_loss": round(summary["eval"]["metrics"]["lm_ce"], 4),
        "val_token_accuracy": round(summary["eval"]["token_accuracy"], 4),
        "train_loss_final": round(final["lm_ce"], 4),
        "active_experts": round(final["moe_active_experts"], 3),
        "active_experts_per_layer": [round(final[f"moe_active_experts_l{i}"], 3) for i in range(N_LAYERS)],
        "max_vio": round(final["moe_max_vio"], 4),
        "max_vio_per_layer": [round(final[f"moe_max_vio_l{i}"], 4) for i in range(N_LAYERS)],
        "psi_per_layer": [round(final[f"moe_psi_l{i}"], 4) for i in range(N_LAYERS)] if "moe_psi" in final else None,
        "live_experts_per_layer": live,
        "decisions": dict(sorted(Counter(record["action"] for record in decisions).items())),
        "edits": [{k: record[k] for k in ("train_step", "layer", "action", "expert", "trigger")}
                  for record in decisions if record["action"] in EDITS],
        "wall_seconds": round(seconds, 1),
        "steps": summary["steps"],
    }


def run(quick: bool) -> dict[str, Any]:
    steps = 40 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        configs = {name: train_one(name, steps, Path(tmp)) for name in EXPERIMENTS}
    with_lc, without = configs["chrono_lifecycle"], configs["chrono"]
    delta = with_lc["val_loss"] - without["val_loss"]
    verdict = "beat" if delta < -MATCH_TOLERANCE else ("matched" if delta <= MATCH_TOLERANCE else "lost to")
    return {
        "setup": {"data": "tinyshakespeare", "steps": steps, "n_experts": N_EXPERTS, "n_layers": N_LAYERS, "top_k": 2,
                  "preset": "phase8_moe", "eval_samples": EVAL_SAMPLES},
        "configs": configs,
        "comparison": {
            "lifecycle_minus_no_lifecycle_val_loss": round(delta, 4),
            "verdict": f"the F_l lifecycle {verdict} router.chrono without lifecycle on validation loss "
                       f"({with_lc['val_loss']} vs {without['val_loss']}) with "
                       f"{with_lc['live_experts_per_layer']} live experts per layer "
                       f"(tolerance {MATCH_TOLERANCE} nats)",
            "adhoc_minus_f_l_val_loss": round(configs["chrono_adhoc"]["val_loss"] - with_lc["val_loss"], 4),
        },
    }


if __name__ == "__main__":
    main(run, "phase8")
