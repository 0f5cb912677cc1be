"""The MQAR grid (Zoology's multi-query associative recall): MOSAIC, the Transformer baseline and the
gated delta-rule baseline at (64, 4), (128, 8), (256, 16) and (512, 64), V 8192, d 64, 2 layers.

Per point and model, as Zoology runs it within a CPU budget:

1. a short learning-rate sweep (``--lrs``, ``--sweep-steps`` steps each, the preset's schedule
   shortened to that many steps); the rate with the best held-out accuracy goes on;
2. the full budget at that rate (the preset's batch × steps), for each seed of ``--seeds``;
   held-out accuracy over the label positions of 512 fixed samples, every ``eval_every`` steps,
   and the steps and wall time to first reach 0.99, where the run stops (``--stop-at``, 0 runs on);
3. with ``--ablations`` (MOSAIC only): the memory off (``memory.off``) and a memory too small for
   the pairs (an eighth of the rule's slots per bucket: half the pairs fit), on the same budget and
   rate;
4. with ``--variants heads_H`` (delta only): the delta baseline with H heads, whose state per layer
   is ``d_model² / H`` plus its convolution tail (1 head: the most state d 64 allows), to compare
   MOSAIC and the delta rule at equal or larger delta state.

Every row carries the run's ``state_floats`` (from its ``summary.json``: recurrent state per layer
at the point's context length, a Transformer's KV cache counted the same way), the machine and the
command. Rows are merged into ``--out`` (default ``docs/results/mqar.json``) by (point, model,
variant, seed), so partial runs accumulate; the recall-vs-state plot is redrawn from the whole JSON
(``--plot``), and ``docs/regenerate.py`` renders docs/mqar.md's table from it. ``--resume RUN_DIR``
continues a run cut short (its time limit or a signal; kept with ``--keep-runs``) from its checkpoint
to its budget; its row says so and counts both parts' steps and seconds.

    python benchmarks/bench_mqar.py --point 128,8 --model mosaic,transformer,delta
    python benchmarks/bench_mqar.py --point 256,16 --seeds 0,1 --ablations
    python benchmarks/bench_mqar.py --resume runs/mqar_mosaic_256_16/20261206-190359 --max-seconds 3600
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mqar_report import load, merge_rows, merge_sweep, plot

from mosaic.runtime.presets.mqar_grid import BUDGETS, MODELS, SMALL_POINT, memory_geometry
from mosaic.runtime.training.divergence import DivergedError
from mosaic.runtime.training.run import run_preset
from mosaic.runtime.training.run_dir import LATEST, RunDir

TARGET = 0.99
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "results" / "mqar.json"
DEFAULT_PLOT = ROOT / "docs" / "results" / "mqar.png"
DEFAULT_LRS = (0.002, 0.006, 0.012)
VARIANTS = ("full", "memory_off", "memory_small")
#: ``--variants ring_advance_<g>`` (not part of ``--ablations``): MOSAIC trained with a soft write
#: moving its bucket's ring pointer only where its gate is above g (``mem_ring_advance_at``), so that
#: weak stray writes stop overwriting stored pairs
RING_ADVANCE = "ring_advance_"
#: ``--variants heads_<h>`` (delta baseline only): the delta rule with h heads, so a state of
#: ``d_model² / h`` floats per layer (fewer heads, more state), to compare models at equal state
DELTA_HEADS = "heads_"
#: the MOSAIC presets' teacher forcing runs from step 100 to 1,000: scaled to a shorter run
TF_WARMUP_SHARE, TF_COOLDOWN_SHARE = 100 / 1500, 900 / 1500
#: --micro: a few steps on tiny batches, to test the JSON, plot and docs path (not a measurement)
MICRO = ["trainer.batch_size=4", "eval.samples=8", "eval.batch_size=8", "trainer.warmup_steps=1"]


def preset_name(model: str, point: tuple[int, int]) -> str:
    """(64, 4) keeps its original presets, mqar_mosaic and mqar_transformer; the rest are the grid's."""
    if point == SMALL_POINT and model != "delta":
        return f"mqar_{model}"
    return f"mqar_{model}_{point[0]}_{point[1]}"


def variant_overrides(variant: str, point: tuple[int, int]) -> list[str]:
    if variant == "full":
        return []
    heads = delta_heads(variant)
    if heads is not None:  # the delta baseline's grid presets (all points) read vars.delta_heads
        return [f"vars.delta_heads={heads}"]
    if point == SMALL_POINT:
        raise SystemExit(f"--ablations: {variant} needs a grid preset's vars; (64, 4) runs mqar_mosaic")
    if variant == "memory_off":
        return ["vars.memory=memory.off", "vars.aux_gate_weight=0", "vars.aux_bits_weight=0"]
    if variant == "memory_small":  # an eighth of memory_geometry's slots per bucket: room for half the pairs
        return [f"vars.mem_assoc={max(1, memory_geometry(point[1])[1] // 8)}"]
    threshold = ring_threshold(variant)
    if threshold is not None:
        return [f"targets[0].model.block.mem_ring_advance_at={threshold}"]
    raise ValueError(variant)


def ring_threshold(variant: str) -> float | None:
    """G of a ``ring_advance_G`` variant with 0 <= G < 1; None for any other name."""
    if not variant.startswith(RING_ADVANCE):
        return None
    try:
        threshold = float(variant.removeprefix(RING_ADVANCE))
    except ValueError:
        return None
    return threshold if 0.0 <= threshold < 1.0 else None


def delta_heads(variant: str) -> int | None:
    """h of a ``heads_h`` variant with h >= 1; None for any other name."""
    if not variant.startswith(DELTA_HEADS) or not variant.removeprefix(DELTA_HEADS).isdigit():
        return None
    heads = int(variant.removeprefix(DELTA_HEADS))
    return heads if heads >= 1 else None


def model_variants(model: str, variants: list[str]) -> list[str]:
    """The requested variants that apply to ``model``: MOSAIC's ablations and ring thresholds, the
    delta baseline's head counts, and ``full`` for every model."""
    if model == "mosaic":
        return [v for v in variants if delta_heads(v) is None]
    if model == "delta":
        return [v for v in variants if v == "full" or delta_heads(v) is not None]
    return [v for v in variants if v == "full"]


def schedule_overrides(model: str, steps: int) -> list[str]:
    if model != "mosaic":
        return []
    return [f"vars.tf_warmup={int(TF_WARMUP_SHARE * steps)}", f"vars.tf_cooldown={int(TF_COOLDOWN_SHARE * steps)}"]


def train(preset: str, overrides: list[str], *, steps: int, eval_every: int, root: Path) -> dict[str, Any]:
    overrides = [f"trainer.steps={steps}", f"trainer.eval_every={eval_every}", "trainer.checkpoint_every=0",
                 *overrides]
    try:
        summary = run_preset(preset, out=root, show_progress=False, overrides=overrides)
    except DivergedError:  # a rate too high for the point is a result: the row says diverged, and where
        summary = diverged_summary(root / preset)
    return result_of(summary)


def diverged_summary(preset_root: Path) -> dict[str, Any]:
    """The summary the run that just diverged wrote before raising (``<preset>/latest`` points at it)."""
    summary_path = preset_root / LATEST / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    if summary.get("status") != "diverged":
        raise SystemExit(f"a run under {preset_root} diverged and left no summary.json saying so")
    return summary


def result_of(summary: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """A row's figures from a run's ``summary``. ``before``: the summary the run had when it stopped
    and was resumed; its steps and seconds count, and the resumed part's times are shifted by them."""
    offset_step, offset_s = (before["steps"], before["wall_seconds"]) if before else (None, 0.0)
    curve, seen = [], set()
    for r in RunDir(Path(summary["run_dir"])).read_metrics():
        if r.get("split") != "eval" or r["step"] in seen:  # a run cut short evaluates its last step twice
            continue
        seen.add(r["step"])
        late = offset_step is not None and r["step"] > offset_step
        curve.append((r["step"], round(r["elapsed_s"] + (offset_s if late else 0.0), 1), round(r["token_accuracy"], 4)))
    reached = next(((step, seconds) for step, seconds, accuracy in curve if accuracy >= TARGET), None)
    state = summary["state_floats"]
    wall = summary["wall_seconds"] + offset_s
    tokens = summary["tokens_per_s"] * summary["wall_seconds"] + (before["tokens_per_s"] * offset_s if before else 0)
    # a diverged run has no final evaluation: its accuracy is the last one it reached (0 before any)
    accuracy = summary["eval"]["token_accuracy"] if summary.get("eval") else (curve[-1][2] if curve else 0.0)
    return {
        "accuracy": round(accuracy, 4),
        "steps": summary["steps"],
        "status": summary["status"],
        "wall_seconds": round(wall, 1),
        "tokens_per_s": round(tokens / max(wall, 1e-9), 1),
        "parameters": summary["parameters"],
        "state_floats": {"per_layer": state["per_layer"], "total": state["total"]},
        "steps_to_0.99": reached[0] if reached else None,
        "seconds_to_0.99": reached[1] if reached else None,
        "curve_step_seconds_accuracy": curve,
        **({"error": summary["error"]} if summary.get("error") else {}),
    }


def sweep(model: str, point: tuple[int, int], lrs: list[float], steps: int, extra: list[str],
          root: Path) -> list[dict[str, Any]]:
    """One short run per learning rate: ``[{lr, accuracy}]``."""
    results = []
    for lr in lrs:
        run = train(preset_name(model, point), [f"trainer.lr={lr}", *schedule_overrides(model, steps), *extra],
                    steps=steps, eval_every=steps, root=root)
        results.append({"lr": lr, "accuracy": run["accuracy"], "wall_seconds": run["wall_seconds"]})
        print(f"  sweep {model} {point} lr {lr}: {run['accuracy']}", flush=True)
    return results


def machine(note: str) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{note} ({os.cpu_count()} cores, load average {load:.1f} at start, one torch thread per run)"


def run_point(args: argparse.Namespace, point: tuple[int, int], model: str, root: Path) -> list[dict[str, Any]]:
    batch, budget = BUDGETS[point]
    steps = args.steps or budget
    extra = [*(MICRO if args.micro else []), *args.set]
    eval_every = args.eval_every or (50 if point == SMALL_POINT else 100)
    if args.lr is not None:  # a sweep recorded earlier for this point and model that chose this rate goes with it
        recorded = [s for s in load(args.out).get("sweeps", []) if s["point"] == f"{point[0]},{point[1]}"
                    and s["model"] == model and s.get("micro", False) == args.micro and s["best_lr"] == args.lr]
        sweep_rows, best = (recorded[0]["runs"] if recorded else []), args.lr
        sweep_steps = recorded[0]["steps"] if recorded else None
    else:
        started = machine(args.machine)
        sweep_rows, sweep_steps = sweep(model, point, args.lrs, args.sweep_steps, extra, root), args.sweep_steps
        best = max(sweep_rows, key=lambda r: r["accuracy"])["lr"]
        merge_sweep(args.out, {"point": f"{point[0]},{point[1]}", "model": model, "steps": args.sweep_steps,
                               "batch_size": 4 if args.micro else batch, "runs": sweep_rows, "best_lr": best,
                               "machine": started, "micro": args.micro, "command": args.command})
    if args.sweep_only:
        return []
    variants = args.variants or (list(VARIANTS) if args.ablations else ["full"])
    variants = model_variants(model, variants)
    rows = []
    for variant in variants:
        for seed in args.seeds:
            started = machine(args.machine)
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            limit = [f"trainer.max_seconds={args.max_seconds}"] if args.max_seconds else []
            limit += [f"trainer.stop_at_accuracy={args.stop_at}"] if args.stop_at else []
            overrides = [f"trainer.lr={best}", f"trainer.seed={seed}", *limit, *variant_overrides(variant, point),
                         *schedule_overrides(model, steps), *extra]
            result = train(preset_name(model, point), overrides, steps=steps, eval_every=eval_every, root=root)
            row = {"point": f"{point[0]},{point[1]}", "seq_len": point[0], "num_kv_pairs": point[1],
                   "model": model, "variant": variant, "seed": seed, "preset": preset_name(model, point),
                   "lr": best, "lr_sweep": sweep_rows, "stop_at_accuracy": args.stop_at or None,
                   "sweep_steps": sweep_steps,
                   "batch_size": 4 if args.micro else batch, "budget_steps": steps, "machine": started, "date": stamp,
                   "micro": args.micro, "command": args.command, **result}
            print(f"{point} {model} {variant} seed {seed}: acc {row['accuracy']} state {row['state_floats']} "
                  f"to 0.99 {row['steps_to_0.99']} steps / {row['seconds_to_0.99']} s", flush=True)
            rows.append(row)
    return rows


#: statuses of a run cut short with a checkpoint to go on from
RESUMABLE = ("time_limit", "interrupted")


def grid_cell(preset: str) -> tuple[tuple[int, int], str]:
    """The (point, model) whose preset is ``preset``."""
    for point in BUDGETS:
        for model in MODELS:
            if preset_name(model, point) == preset:
                return point, model
    raise SystemExit(f"--resume: the run's preset {preset!r} is none of the MQAR grid's")


def resume_row(args: argparse.Namespace, run_path: Path) -> dict[str, Any]:
    """Continue the run in ``run_path`` (cut short by its time limit or a signal) from its checkpoint
    to its budget (or ``--steps``), bitwise as if never stopped; the row counts both parts' steps and seconds
    and says it was resumed, and from where."""
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.training.manifest import parse_manifest

    run = RunDir.existing(run_path)
    record = json.loads(run.record_path.read_text()) if run.record_path.is_file() else {}
    if "preset" not in record:
        raise SystemExit(f"--resume {run_path}: its run.json names no preset")
    point, model = grid_cell(record["preset"])
    if (args.point and args.point != [point]) or (args.model != list(MODELS) and args.model != [model]):
        raise SystemExit(f"--resume {run_path}: that run is {model} at {point}, not what --point/--model say")
    before = run.read_summary()
    if before.get("status") not in RESUMABLE:
        raise SystemExit(f"--resume {run_path}: its status is {before.get('status')!r}; only a run stopped "
                         f"by {' or '.join(RESUMABLE)} goes on")
    trainer = parse_manifest(run.config_text(), get_registry(), source=str(run.config_path),
                             overrides=[]).experiment(run.experiment_for(None)).trainer
    if args.lr is not None and args.lr != trainer.lr:
        raise SystemExit(f"--resume {run_path}: it trains at lr {trainer.lr}, not --lr {args.lr}")
    variants = args.variants or ["full"]
    if len(variants) != 1:
        raise SystemExit("--resume continues one run: give at most one --variants")
    key = {"point": f"{point[0]},{point[1]}", "model": model, "variant": variants[0], "seed": trainer.seed}
    earlier = next((r for r in load(args.out)["rows"] if all(r.get(k) == v for k, v in key.items())
                    and r.get("micro", False) == args.micro and r["steps"] == before["steps"]
                    and r["lr"] == trainer.lr), {})  # this run's own row, written when it stopped
    started = machine(args.machine)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    overrides = [f"trainer.steps={args.steps or trainer.steps}"]  # the run's own budget
    overrides += [f"trainer.max_seconds={args.max_seconds}"] if args.max_seconds else []
    overrides += [f"trainer.stop_at_accuracy={args.stop_at}"] if args.stop_at else []
    summary = run_preset(None, resume=run.path, show_progress=False, overrides=overrides)
    result = result_of(summary, before)
    first_part = {"steps": before["steps"], "wall_seconds": round(before["wall_seconds"], 1),
                  "status": before["status"], "accuracy": round(before["eval"]["token_accuracy"], 4),
                  **{k: earlier.get(k) for k in ("command", "machine", "date")}}
    row = {**key, "seq_len": point[0], "num_kv_pairs": point[1], "preset": record["preset"], "lr": trainer.lr,
           "lr_sweep": earlier.get("lr_sweep", []), "sweep_steps": earlier.get("sweep_steps"),
           "stop_at_accuracy": args.stop_at or None, "batch_size": trainer.batch_size, "machine": started,
           "date": stamp, "micro": args.micro, "command": args.command,
           "resumed": {"run_dir": str(run.path), "from_step": before["steps"], "first_part": first_part,
                       "resumed_part_seconds": round(summary["wall_seconds"], 1)}, **result}
    print(f"{point} {model} resumed from step {before['steps']}: acc {row['accuracy']} at step {row['steps']}, "
          f"{row['wall_seconds']} s in all; to 0.99 {row['steps_to_0.99']} steps / {row['seconds_to_0.99']} s",
          flush=True)
    return row


def parse_point(text: str) -> tuple[int, int]:
    try:
        seq_len, pairs = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point takes L,KV (e.g. 256,16), got {text!r}") from None
    if (seq_len, pairs) not in BUDGETS:
        raise argparse.ArgumentTypeError(f"--point {text}: the grid is {', '.join(f'{a},{b}' for a, b in BUDGETS)}")
    return seq_len, pairs


def parse_list(kind: type, text: str) -> list[Any]:
    return [kind(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark: the MQAR grid (point x model), JSON rows")
    parser.add_argument("--point", type=parse_point, action="append", help="L,KV (repeatable); default (64, 4)")
    parser.add_argument("--model", type=lambda t: parse_list(str, t), default=list(MODELS),
                        help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--lrs", type=lambda t: parse_list(float, t), default=list(DEFAULT_LRS))
    parser.add_argument("--sweep-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, help="skip the sweep and train at this rate")
    parser.add_argument("--sweep-only", action="store_true", help="record the sweep, skip the full budget")
    parser.add_argument("--seeds", type=lambda t: parse_list(int, t), default=[0])
    parser.add_argument("--steps", type=int, help="override the point's budget (recorded in the row)")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--max-seconds", type=float,
                        help="stop each full-budget run after this long (its row says time_limit and its steps)")
    parser.add_argument("--stop-at", type=float, default=TARGET,
                        help="stop each full-budget run at the first held-out evaluation reaching this accuracy "
                             "(status target_reached; 0: run the whole budget)")
    parser.add_argument("--ablations", action="store_true", help="MOSAIC with the memory off and too small")
    parser.add_argument("--variants", type=lambda t: parse_list(str, t),
                        help=f"comma-separated, of {', '.join(VARIANTS)} or {RING_ADVANCE}G (MOSAIC only), or "
                             f"{DELTA_HEADS}H (delta only); default full, or all with --ablations")
    parser.add_argument("--micro", action="store_true", help="tiny batches and a few steps: tests the JSON path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a preset override for every run (repeatable; the row's command records it)")
    parser.add_argument("--machine", default="2-core CPU dev machine, shared")
    parser.add_argument("--keep-runs", type=Path, help="keep the run directories here (default: a temporary one)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue a run cut short (time limit or signal) from its checkpoint to its budget "
                             "(or --steps); its row counts both parts' steps and seconds and says it was resumed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out and exit")
    args = parser.parse_args(argv)
    for variant in args.variants or []:
        if variant not in VARIANTS and ring_threshold(variant) is None and delta_heads(variant) is None:
            parser.error(f"--variants {variant}: one of {', '.join(VARIANTS)}, or {RING_ADVANCE}G with 0 <= G < 1 "
                         f"(MOSAIC), or {DELTA_HEADS}H with H >= 1 (delta)")
    for model in args.model:
        if model not in MODELS:
            parser.error(f"--model {model}: one of {', '.join(MODELS)}")
    if args.micro and args.out.resolve() == DEFAULT_OUT.resolve():
        parser.error("--micro needs --out elsewhere than docs/results/mqar.json (micro rows are not measurements)")
    args.command = "python benchmarks/bench_mqar.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.resume is not None and not args.plot_only:
        merge_rows(args.out, [resume_row(args, args.resume)], platform_name=platform.platform())
    elif not args.plot_only:
        points = args.point or [SMALL_POINT]
        with tempfile.TemporaryDirectory() as temporary:
            root = str(args.keep_runs or temporary)
            for point in points:
                for model in args.model:
                    started = time.perf_counter()
                    rows = run_point(args, point, model, Path(root))
                    if rows:
                            merge_rows(args.out, rows, platform_name=platform.platform())  # each: partial runs keep
                    print(f"{point} {model}: {time.perf_counter() - started:.0f} s in all", flush=True)
    plot(args.out, args.plot)


if __name__ == "__main__":
    main()
