"""ChronoMoE phase 8 (seed 003): does the lifecycle earn its keep? Paired over seeds.

The ``phase8_moe`` preset — character-level tiny Shakespeare, MOSAIC LM with 2 layers whose
local-mixer MLP is ``layer.moe`` (8 columns, top-2) — is trained per seed in these arms:

- ``chrono``: router.chrono without lifecycle, a fixed MoE at the lifecycle arms' starting live
  count (``n_live``, 6);
- ``chrono_static``: the lifecycle arms' network (8 columns, 6 live, capacity over the live ones)
  with ``trigger: none`` — the same initialisation without any edit, the tightest paired control;
- ``chrono_lifecycle``: router.chrono + ``layer.chrono_lifecycle`` starting with ``n_live`` of 8
  columns live (room to grow); edits ranked by predicted ΔF and decided on held-out evidence (the
  trainer's probe: the edited and the unedited model relaxed on the same batches, compared on a
  probe batch); no edit in the last 25 % of training;
- ``chrono_adhoc``: the same start with the original's fixed thresholds;
- ``fixed_k``: router.chrono without lifecycle at every other live-expert count k the F_l lifecycle
  ends at in some layer, and at its rounded time-mean live count;
- ``topk`` and ``loss_free`` (reference routers, 8 experts) on every seed, unless ``--no-routers``;
  ``--only-routers`` runs just these (router.loss_free's MaxVio at the final step).

Two partial runs pair with a committed full run's controls (the same seed gives the same data
stream): ``--only-fixed 4,8`` trains fixed MoEs at those live counts (the loss-vs-live-experts
curve), and ``--only-lifecycle --lifecycle-set KEY=VALUE ...`` trains a lifecycle variant.

Lifecycle clocks scale with the budget (slow interval = steps // 8), so ``--quick`` (80 steps, one
seed) exercises the lifecycle. Per arm and seed: validation ``lm_ce`` on the held-out tail, the
time-mean and final live experts per layer, MaxVio, decisions. Across seeds: paired differences
(arm − ``chrono``) with a two-sided 95 % t interval; the Spearman rank correlation between predicted
ΔF (the trial's probe-set Δloss plus the price of the experts, chronomoe.evidence) and realised Δloss
(the same trial's Δloss on the check set, disjoint data) pooled over every scored edit of the F_l
runs, and, as the ablation, the coherence model's ΔF against the same realised Δloss. The verdict never says
"matched" when no edit happened.

One command for the issue's full protocol: ``python benchmarks/bench_phase8.py --steps 2000 --seeds 0,1,2``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from harness import main
from phase8_stats import N_LIVE, by_kind, paired, spearman, verdict

LIFECYCLE_ARMS = ("chrono_lifecycle", "chrono_adhoc")
ROUTER_ARMS = ("topk", "loss_free")
N_COLUMNS, N_LAYERS = 8, 2
EVAL_SAMPLES = 256  # held-out windows per validation loss (the preset's own default is 64)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def clocks(steps: int) -> dict[str, int]:
    slow = max(5, steps // 8)
    return {"slow_interval": slow, "mid_interval": max(2, slow // 5), "relaxation": max(2, slow // 2)}


def live_trajectory(
    decisions: list[dict[str, Any]], start: int, steps: int
) -> tuple[list[float], list[int], set[int]]:
    """Per layer: time-mean live experts over the run, final live experts; every count reached."""
    means, finals, reached = [], [], {start}
    for layer in range(N_LAYERS):
        live, last, area = start, 0, 0.0
        for record in sorted(
            (r for r in decisions if r["layer"] == layer and r.get("edit")), key=lambda r: r["train_step"]
        ):
            area += live * (record["train_step"] - last)
            last = record["train_step"]
            live += record["expert_delta"]
            reached.add(live)
        area += live * (steps - last)
        means.append(round(area / steps, 3))
        finals.append(live)
    return means, finals, reached


def train_one(
    experiment: str, steps: int, seed: int, out: Path, n_live: int = N_LIVE, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    from mosaic.runtime.training.run import run_preset

    static = experiment == "chrono_static"  # the lifecycle arm's network, its registry only, no edits
    if static:
        experiment = "chrono_lifecycle"
    overrides = ["targets[3].model.lifecycle.trigger=none"] if static else []
    overrides += [
        f"vars.steps={steps}",
        "vars.warmup=10",
        f"vars.seed={seed}",
        f"vars.n_live={n_live}",
        f"eval.samples={EVAL_SAMPLES}",
        "eval.batch_size=64",
    ]
    overrides += [f"vars.{name}={value}" for name, value in clocks(steps).items()]
    overrides += list(extra)
    started = time.perf_counter()
    summary = run_preset(
        "phase8_moe", experiment=experiment, out=out, overrides=overrides, show_progress=False
    )
    seconds = time.perf_counter() - started
    decisions = read_jsonl(Path(summary["run_dir"]) / "decisions.jsonl")
    start = n_live if experiment in LIFECYCLE_ARMS or experiment == "chrono" else N_COLUMNS
    means, finals, reached = live_trajectory(decisions, start, steps)
    final = summary["final"]
    return {
        "seed": seed,
        "val_loss": round(summary["eval"]["metrics"]["lm_ce"], 4),
        "train_loss_final": round(final["lm_ce"], 4),
        "max_vio": round(final["moe_max_vio"], 4),
        "live_mean_per_layer": means,
        "live_mean": round(sum(means) / len(means), 3),
        "live_final_per_layer": finals,
        "live_reached": sorted(reached),
        "decisions": dict(sorted(Counter(r["action"] for r in decisions).items())),
        "edits": [
            {k: r[k] for k in ("train_step", "layer", "action", "expert", "other", "trigger")}
            for r in decisions
            if r.get("edit")
        ],
        "scored": [
            {
                "train_step": r["train_step"],
                "layer": r["layer"],
                "action": r["trigger"].removeprefix("trial of "),
                **r["evidence"],
            }
            for r in decisions
            if r["action"] == "scored"
        ],
        "train_lm_ce_by_window": train_loss_windows(read_jsonl(Path(summary["run_dir"]) / "metrics.jsonl"), steps),
        "wall_seconds": round(seconds, 1),
    }


def train_loss_windows(metrics: list[dict[str, Any]], steps: int) -> list[float | None]:
    """Mean logged training ``lm_ce`` in each window of ``steps // 40`` steps (window i holds steps
    i·w+1 .. (i+1)·w): paired per seed across arms, it shows when an edit costs and when it pays."""
    width = max(1, steps // 40)
    sums, counts = [0.0] * 40, [0] * 40
    for record in metrics:
        if record.get("split") == "train" and "lm_ce" in record and 1 <= record.get("step", 0) <= width * 40:
            window = (record["step"] - 1) // width
            sums[window] += record["lm_ce"]
            counts[window] += 1
    return [round(total / n, 4) if n else None for total, n in zip(sums, counts, strict=True)]


def one_torch_thread() -> None:
    """A worker's torch threads: ``MOSAIC_BENCH_THREADS`` (default 1), so that workers share the cores
    instead of each taking all of them."""
    import torch

    torch.set_num_threads(int(os.environ.get("MOSAIC_BENCH_THREADS", "1")))


def train_job(job: tuple[str, int, int, int] | tuple[str, int, int, int, tuple[str, ...]]) -> dict[str, Any]:
    """One ``(experiment, seed, n_live, steps[, overrides])`` run in its own temporary directory.
    The overrides travel in the job: a spawned worker does not see this process's options."""
    experiment, seed, n_live, steps, *extra = job
    with tempfile.TemporaryDirectory() as tmp:
        return train_one(experiment, steps, seed, Path(tmp), n_live=n_live, extra=tuple(extra[0]) if extra else ())


def train_all(jobs: list[Any]) -> list[dict[str, Any]]:
    """``train_job`` over ``jobs``, results in the jobs' order; with ``--workers`` > 1 in that many
    processes (runs are independent: each has its own seed, data stream and directory)."""
    if OWN.workers <= 1:
        return [train_job(job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # no forked torch state
    with ProcessPoolExecutor(max_workers=OWN.workers, mp_context=context, initializer=one_torch_thread) as pool:
        return list(pool.map(train_job, jobs))


def train_per_seed(groups: Sequence[Any], seeds: list[int], job: Callable[[Any, int], tuple[str, int, int, int]]
                   ) -> dict[Any, list[dict[str, Any]]]:
    """``job(group, seed)`` for every group and seed, trained by :func:`train_all` in one pool:
    each group's results in seed order."""
    flat = train_all([job(group, seed) for group in groups for seed in seeds])
    return {group: flat[i * len(seeds):(i + 1) * len(seeds)] for i, group in enumerate(groups)}


def run_protocol(steps: int, seeds: list[int], routers: bool, label: str) -> dict[str, Any]:
    names = (*LIFECYCLE_ARMS, "chrono", "chrono_static", *(ROUTER_ARMS if routers else ()))  # longest first
    runs = train_per_seed(names, seeds, lambda name, seed: (name, seed, N_LIVE, steps))
    arms = {name: runs[name] for name in ("chrono", "chrono_static", *LIFECYCLE_ARMS)}
    references = {name: runs[name] for name in ROUTER_ARMS if name in runs}
    # fixed MoEs at the live counts the F_l lifecycle ends at (per layer) and its rounded mean
    # (intermediate counts held for one slow interval are not trained: CPU budget)
    counts = sorted(
        {k for r in arms["chrono_lifecycle"] for k in (*r["live_final_per_layer"], round(r["live_mean"]))}
        - {N_LIVE}
    )
    fixed = train_per_seed(counts, seeds, lambda k, seed: ("chrono", seed, k, steps))
    differences = {
        name: paired([r["val_loss"] - b["val_loss"] for r, b in zip(arms[name], arms["chrono"], strict=True)])
        for name in ("chrono_static", *LIFECYCLE_ARMS)
    }
    differences.update(
        {
            f"fixed_{k}": paired(
                [r["val_loss"] - b["val_loss"] for r, b in zip(runs, arms["chrono"], strict=True)]
            )
            for k, runs in fixed.items()
        }
    )
    scored = [s for r in arms["chrono_lifecycle"] for s in r["scored"] if "delta_loss_realised" in s]
    realised = [s["delta_loss_realised"] for s in scored]
    return {
        "setup": {
            "data": "tinyshakespeare",
            "steps": steps,
            "seeds": seeds,
            "label": label,
            "n_columns": N_COLUMNS,
            "n_live_start": N_LIVE,
            "n_layers": N_LAYERS,
            "top_k": 2,
            "preset": "phase8_moe",
            "eval_samples": EVAL_SAMPLES,
            "clocks": clocks(steps),
            "workers": OWN.workers,
            "full_protocol_command": "python benchmarks/bench_phase8.py --steps 2000 --seeds 0,1,2",
        },
        "arms": arms,
        "fixed": {str(k): runs for k, runs in fixed.items()},
        "references": references,
        "paired_minus_no_lifecycle": differences,
        "paired_minus_static": {
            name: paired(
                [
                    r["val_loss"] - b["val_loss"]
                    for r, b in zip(arms[name], arms["chrono_static"], strict=True)
                ]
            )
            for name in LIFECYCLE_ARMS
        },
        "evidence": {
            "scored_edits": len(scored),
            # predicted: probe-set dloss + price (the decision's F); realised: check-set dloss
            "spearman_predicted_df_vs_realised_dloss": spearman(
                [s["delta_f_predicted"] for s in scored], realised
            ),
            # the probe dloss alone (without the price of the experts)
            "spearman_probe_dloss_vs_realised_dloss": spearman([s["delta_loss"] for s in scored], realised),
            # ablation: the coherence model's dF (free_energy.py) against the same realised dloss
            "spearman_coherence_df_vs_realised_dloss": spearman(
                [s["delta_f_proxy"] for s in scored], realised
            ),
            "by_kind": by_kind(scored),
            "predicted": "probe-set dloss after the trial's relaxation + evidence_lambda * expert change",
            "realised": "dloss of the same relaxed models on the check set (tail of the eval split), "
            "disjoint from the probe set and from the validation windows",
            "goal": ">= 0.5 over >= 10 edits",
        },
        "comparison": verdict(arms, fixed),
    }


def parse_own(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 2000; --quick: 80)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--no-routers", action="store_true", help="skip the topk / loss_free reference rows")
    parser.add_argument("--only-routers", action="store_true", help="run only the topk / loss_free rows")
    parser.add_argument("--only-lifecycle", action="store_true",
                        help="run only the chrono_lifecycle arm (a variant to pair with a committed run's controls)")
    parser.add_argument("--only-fixed", default=None, metavar="K,K",
                        help="run only fixed MoEs (router.chrono, no lifecycle) with these live-expert counts: "
                        "the loss-vs-live-experts curve, paired with a committed run's `chrono` arm")
    parser.add_argument("--lifecycle-set", action="append", default=[],
                        help="an override for the chrono_lifecycle arm, e.g. "
                        "targets[3].model.block.ffn.router.chrono.lifecycle.evidence_warm_trial=true")
    parser.add_argument("--n-live", type=int, default=N_LIVE,
                        help=f"live experts at the start of an --only-lifecycle variant (default {N_LIVE})")
    parser.add_argument("--label", default="", help="what this run is (e.g. 'reduced steps: shared CPU')")
    parser.add_argument("--workers", type=int, default=1,
                        help="train this many runs at once, one process each (one per core)")
    return parser.parse_known_args(argv)


OWN, REST = parse_own(sys.argv[1:])


def run(quick: bool) -> dict[str, Any]:
    steps = OWN.steps or (80 if quick else 2000)
    seeds = [int(s) for s in (OWN.seeds or ("0" if quick else "0,1,2")).split(",")]
    label = OWN.label or (
        "quick smoke run"
        if quick
        else ("full protocol" if steps >= 2000 and len(seeds) >= 3 else "reduced protocol")
    )
    if OWN.only_routers:
        return run_routers(steps, seeds, label)
    if OWN.only_fixed:
        counts = [int(k) for k in OWN.only_fixed.split(",")]
        fixed = train_per_seed(counts, seeds, lambda k, seed: ("chrono", seed, k, steps))
        return {"setup": {"steps": steps, "seeds": seeds, "label": label, "counts": counts,
                          "eval_samples": EVAL_SAMPLES, "workers": OWN.workers},
                "fixed": {str(k): runs for k, runs in fixed.items()}}
    if OWN.only_lifecycle:
        runs = train_all([("chrono_lifecycle", seed, OWN.n_live, steps, tuple(OWN.lifecycle_set)) for seed in seeds])
        scored = [s for r in runs for s in r["scored"] if "delta_loss_realised" in s]
        return {"setup": {"steps": steps, "seeds": seeds, "label": label, "overrides": OWN.lifecycle_set,
                          "n_live_start": OWN.n_live, "workers": OWN.workers},
                "chrono_lifecycle": runs, "by_kind": by_kind(scored),
                "spearman_predicted_df_vs_realised_dloss": spearman(
                    [s["delta_f_predicted"] for s in scored], [s["delta_loss_realised"] for s in scored])}
    return run_protocol(steps, seeds, routers=not (quick or OWN.no_routers), label=label)


def run_routers(steps: int, seeds: list[int], label: str) -> dict[str, Any]:
    """The reference routers alone: MaxVio of router.loss_free (goal <= 0.3 by step 300)."""
    runs = train_per_seed(ROUTER_ARMS, seeds, lambda name, seed: (name, seed, N_LIVE, steps))
    return {
        "setup": {"data": "tinyshakespeare", "steps": steps, "seeds": seeds, "label": label,
                  "n_experts": N_COLUMNS, "top_k": 2, "preset": "phase8_moe", "eval_samples": EVAL_SAMPLES},
        "routers": runs,
        "max_vio_final": {name: [r["max_vio"] for r in rs] for name, rs in runs.items()},
        "loss_free_max_vio_goal": "<= 0.3 by step 300",
        "loss_free_max_vio_met": all(r["max_vio"] <= 0.3 for r in runs["loss_free"]),
    }


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *REST]
    main(run, "phase8")
