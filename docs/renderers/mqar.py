"""The MQAR grid table (point x model x state floats x accuracy x time to 0.99), rendered from
``docs/results/mqar.json`` (written by ``benchmarks/bench_mqar.py``): one row per run, the
learning-rate sweeps, the machines the times come from, the grid points and models not run yet
with the command that runs them, and the published reference values the plot marks."""

from __future__ import annotations

import json
from pathlib import Path

#: the grid (point -> batch x steps) and its models, as benchmarks/bench_mqar.py runs them
POINTS = {"64,4": "64 x 1500", "128,8": "64 x 2000", "256,16": "32 x 3000", "512,64": "16 x 3000"}
MODELS = ("mosaic", "transformer", "delta")
COLUMNS = ("point", "model", "variant", "seed", "state floats / layer", "state total", "lr", "budget",
           "accuracy", "steps to 0.99", "s to 0.99", "machine")


#: a row or sweep trained before commit 0bc9b62, when the memory routers also took the
#: straight-through gradient at teacher-forced tokens (``mosaic.layers.memory_routing.route``)
FORCED_STE = "teacher_forced_too"
FORCED_STE_NOTE = ("† trained before commit 0bc9b62, when the memory routers also took the straight-through "
                   "gradient at teacher-forced tokens (see \"Straight-through gradient only where the router "
                   "chose\" above).")


def _trained_before_fix(record: dict) -> bool:
    return record.get("straight_through") == FORCED_STE


def _marked(record: dict, text: str) -> str:
    return f"{text} †" if _trained_before_fix(record) else text


def _lr(row: dict) -> str:
    return f"{row['lr']}" if row.get("lr_sweep") else f"{row['lr']} (no sweep)"


def _budget(row: dict) -> str:
    """batch x steps run; a run stopped at its target (``--stop-at``) names the budget it had."""
    ran = f"{row['batch_size']} x {row['steps']}"
    resumed = f", resumed at step {row['resumed']['from_step']}" if row.get("resumed") else ""
    if row["status"] == "target_reached":  # rows before budget_steps was recorded ran the point's budget
        budget = row.get("budget_steps") or POINTS[row["point"]].split(" x ")[1]
        return (f"{ran} of {row['batch_size']} x {budget} "
                f"(stopped at {row['stop_at_accuracy']}{resumed})")
    return f"{ran}{f' ({resumed[2:]})' if resumed else ''}" if row["status"] == "completed" else f"{ran} ({row['status']}{resumed})"


def _tried(sweep: dict) -> str:
    return ", ".join(f"{run['lr']}: {run['accuracy']:.4f}" for run in sweep["runs"])


#: probe columns per layer (benchmarks/mqar_probe.py); the look-alike ones only in later probes
PROBE_COLUMNS = {"read_route_acc": "read route acc (queries)", "write_route_acc": "write route acc (values)",
                 "gate_at_values": "gate at values", "gate_elsewhere": "gate elsewhere (mean)",
                 "gate_elsewhere_p99": "gate elsewhere (p99)", "gate_at_lookalikes": "gate at look-alike values",
                 "strong_stray_lookalike_share": "look-alike share of strong stray writes"}


def _probe(probe: dict) -> list[str]:
    names = [name for name in PROBE_COLUMNS if name in probe["layers"][0]]
    rule = "" if probe.get("ring_advance_at") is None else f", read with mem_ring_advance_at {probe['ring_advance_at']}"
    lines = ["", f"Memory probe (`benchmarks/mqar_probe.py`), {probe['label']}: held-out accuracy "
             f"{probe['accuracy']:.4f} on {probe['samples']} samples, the model's own decisions{rule}:", "",
             "| layer | " + " | ".join(PROBE_COLUMNS[name] for name in names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {i + 1} | " + " | ".join(f"{layer[name]:.4f}" for name in names) + " |"
              for i, layer in enumerate(probe["layers"])]
    if probe.get("accuracy_by_distance"):
        bins = ", ".join(f"≤ {int(edge)}: {accuracy:.4f}" for edge, accuracy in probe["accuracy_by_distance"])
        lines += ["", f"Accuracy by tokens from a pair's value to its query (quartile bins): {bins}."]
    return lines


#: below this held-out accuracy a model recalls nothing (chance is 1 / 4,096 values): two such rows
#: compare nothing, whichever is higher
RECALLS = 0.01


def _equal_state(rows: list[dict]) -> list[str]:
    """Each delta-rule row beside the most accurate MOSAIC row of its point with no more state per
    layer (any variant or seed): the goal "MOSAIC >= the delta rule at equal or smaller state"."""
    deltas = [row for row in rows if row["model"] == "delta"]
    if not deltas:
        return []
    lines = ["", "MOSAIC against the delta rule at equal or smaller state: each delta row beside the most "
             "accurate MOSAIC row of its point with no more state per layer (any variant or seed):", "",
             "| point | delta variant | delta state / layer | delta accuracy | MOSAIC variant, seed | "
             "MOSAIC state / layer | MOSAIC accuracy | MOSAIC >= delta |", "|---|---|---|---|---|---|---|---|"]
    for delta in deltas:
        state = max(delta["state_floats"]["per_layer"])
        smaller = [row for row in rows if row["model"] == "mosaic" and row["point"] == delta["point"]
                   and max(row["state_floats"]["per_layer"]) <= state]
        cells = [f"({delta['point']})", delta["variant"], f"{state:,}", f"{delta['accuracy']:.4f}"]
        if smaller:
            best = max(smaller, key=lambda row: row["accuracy"])
            if max(best["accuracy"], delta["accuracy"]) < RECALLS:
                verdict = f"neither recalls (both below {RECALLS})"
            else:
                verdict = "yes" if best["accuracy"] >= delta["accuracy"] else "no"
            cells += [f"{best['variant']}, {best['seed']}", f"{max(best['state_floats']['per_layer']):,}",
                      f"{best['accuracy']:.4f}", verdict]
        else:
            cells += ["none run at this state", "-", "-", "not established"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(results: Path) -> str:
    data = json.loads((results / "mqar.json").read_text())
    rows, sweeps = data["rows"], data.get("sweeps", [])
    machines: list[str] = []
    firsts = [row["resumed"]["first_part"] for row in rows if row.get("resumed")]
    for record in [*rows, *sweeps, *[first for first in firsts if first.get("machine")]]:
        if record["machine"] not in machines:
            machines.append(record["machine"])

    def machine(record: dict) -> str:
        return f"[m{machines.index(record['machine']) + 1}]"

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        state = row["state_floats"]
        cells = [
            f"({row['point']})", row["model"], _marked(row, row["variant"]), str(row["seed"]),
            " / ".join(f"{n:,}" for n in state["per_layer"]), f"{state['total']:,}", _lr(row),
            _budget(row),
            f"{row['accuracy']:.4f}",
            "-" if row["steps_to_0.99"] is None else str(row["steps_to_0.99"]),
            "not reached" if row["seconds_to_0.99"] is None else f"{row['seconds_to_0.99']:.1f}", machine(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if sweeps:
        lines += ["", "Learning-rate sweeps (held-out accuracy at the end of each short run, its schedule "
                  "shortened to it):", "", "| point | model | batch x steps | lr: accuracy | best | machine |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| ({s['point']}) | {_marked(s, s['model'])} | {s['batch_size']} x {s['steps']} | {_tried(s)} | "
                  f"{s['best_lr'] if len(s['runs']) > 1 else 'one rate: not a sweep'} | {machine(s)} |" for s in sweeps]
    if any(_trained_before_fix(record) for record in [*rows, *sweeps]):
        lines += ["", FORCED_STE_NOTE]
    resumed = [row for row in rows if row.get("resumed")]
    if resumed:
        lines += ["", "Resumed runs (cut short, then continued from their checkpoint with `--resume`; steps, "
                  "seconds and the times to 0.99 count both parts):", ""]
        for row in resumed:
            first = row["resumed"]["first_part"]
            where = f" on {machine(first)}" if first.get("machine") else ""
            lines.append(f"- ({row['point']}) {row['model']} {row['variant']} seed {row['seed']}: stopped by "
                         f"{first['status']} at step {first['steps']} ({first['accuracy']:.4f}, "
                         f"{first['wall_seconds']:.1f} s{where}), resumed for {row['resumed']['resumed_part_seconds']:.1f} s "
                         f"on {machine(row)} to step {row['steps']} ({row['status']})")
    lines += _equal_state(rows)
    noted = [row for row in rows if row.get("note")]
    if noted:
        lines += ["", "Notes on rows:", ""]
        lines += [f"- ({row['point']}) {row['model']} {row['variant']} seed {row['seed']}: {row['note']}"
                  for row in noted]
    for probe in data.get("probes", []):
        lines += _probe(probe)
    lines += ["", "Machines:", ""]
    lines += [f"- [m{i + 1}] {name}" for i, name in enumerate(machines)]
    done = {(row["point"], row["model"]) for row in rows if row["variant"] == "full"}
    pending = [(point, model) for point in POINTS for model in MODELS if (point, model) not in done]
    if pending:
        lines += ["", "Not run yet (each line runs one point and model, sweep included; the larger points "
                  "belong on a lent GPU, with `--machine` naming it):", ""]
        lines += [f"- ({point}) {model}, budget {POINTS[point]}: "
                  f"`python benchmarks/bench_mqar.py --point {point} --model {model}"
                  f"{' --ablations' if model == 'mosaic' and point != '64,4' else ''}"
                  f"{' --seeds 0,1' if point == '256,16' else ''}`" for point, model in pending]
    lines += ["", "Reference values marked on the plot (published figures, not our runs):", ""]
    lines += [f"- {a['model']}: accuracy {'≤ ' if a['relation'] == '<=' else ''}{a['accuracy']} at "
              f"{a['state_floats']:.1e} floats of state ({a['source']})" for a in data["anchors"]]
    return "\n".join(lines) + "\n"
