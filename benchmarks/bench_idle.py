"""Idle time that changes the model: the consolidation A/B, online learning, tool building.

``--part`` picks what runs (``consolidation``, ``online``, ``tools``; default all) and the results
merge into the existing JSON at ``--out`` (default ``benchmarks/results/idle.json``), so parts can be
run and re-run separately. Keys:

- ``consolidation.important_recall.with`` / ``.without``: the A/B of
  ``mosaic.runtime.testing.fact_recall`` (a fact model trained here, 16 memory cells, a stream of more
  facts than that with idle periods; the same streams with and without consolidation), plus the
  ablations ``prune_only`` / ``refresh_only``;
- ``online.pattern_loss_drop`` / ``online.heldout_loss_rise`` (fractions): a byte-level model
  trained here on ``dataset.mosaic_event_traces`` with the ``mosaic_event_native`` objective (at a
  reduced size: shorter traces, fewer steps), then a live session (``EventSession`` with an
  ``OnlineLearner`` on its token hook, guarded by held-out traces) fed traces of its training
  distribution mixed with ``Weather`` events it never saw; pattern loss is the LM loss on fresh
  Weather events, held-out loss that on other held-out traces (neither set is in the stream). Every
  update rehearses 8 of the base's own training traces (``OnlineConfig``'s default rehearsal);
  ``online.interference`` is the diagnosis: unguarded steps on Weather alone per adapter target set,
  with and without rehearsal. ``--base-cache PATH`` loads the base from PATH (trained and saved there
  when absent), for re-runs of the online part;
- ``tools.success_rate``: ``benchmarks/bench_tools.py``'s ``tool_building_benchmark(quick)``, when
  that file exists (``--tools-from-run RUN_DIR``: on a finished ``mosaic_tools`` run, not a new one).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from mosaic.core.contract import keys
from mosaic.core.events.codec import EVENT_DELIMITER, decode_event_bytes
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import ConsolidationConfig, GenerationConfig, OnlineConfig
from mosaic.runtime.agent.online import OnlineLearner, mean_loss
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.testing.fact_recall import FactRecallConfig, consolidation_ab, train

PARTS = ("consolidation", "online", "tools")
MACHINE_NOTE = "2-core CPU dev machine, shared with other engineers' jobs"


# --- consolidation ------------------------------------------------------------------------------


def consolidation_part(quick: bool) -> dict[str, Any]:
    config = FactRecallConfig(steps=300 if quick else 400)
    model, info = train(config)
    seeds = list(range(3 if quick else 10))
    shape = {"facts": 32, "important": 8, "idle_every": 2}
    full = consolidation_ab(model, config, seeds=seeds, **shape)
    prune_only = consolidation_ab(
        model,
        config,
        seeds=seeds,
        **shape,
        consolidation=ConsolidationConfig(prune_below=0.5, refresh_above=None, replay_samples=0),
    )
    refresh_only = consolidation_ab(
        model,
        config,
        seeds=seeds,
        **shape,
        consolidation=ConsolidationConfig(prune_below=0.0, refresh_above=0.5, replay_samples=0),
    )
    return {
        "important_recall": {
            "with": full["with"],
            "without": full["without"],
            "prune_only": prune_only["with"],
            "refresh_only": refresh_only["with"],
        },
        "ordinary_recall": {"with": full["ordinary_with"], "without": full["ordinary_without"]},
        "stream": {key: full[key] for key in ("facts", "important", "idle_every", "memory_cells", "streams")},
        "pruned_per_stream": full["pruned_per_stream"],
        "refreshed_per_stream": full["refreshed_per_stream"],
        "train": info,
        "goal": {"with": ">= 0.9", "drop": ">= 0.2"},
        "met": full["with"] >= 0.9 and full["with"] - full["without"] >= 0.2,
    }


# --- online learning ----------------------------------------------------------------------------

BASE_MODEL = {
    "vocab_size": 256,
    "n_layers": 2,
    "block": {
        "d_model": 64,
        "state_k": 8,
        "state_dim": 8,
        "mem_buckets": 16,
        "mem_hashes": 1,
        "mem_assoc": 4,
        "mem_key_dim": 16,
        "mem_dim": 32,
        "reg_slots": 0,
        "conv_kernel": 13,
        "mem_route_by_key": False,
        "opcodes_control_enabled": True,
        "commitment_head_enabled": False,
        "chunk_size": 64,
    },
}
BASE_OBJECTIVE = {
    "aux_opcode_weight": 5.0,
    "aux_gate_weight": 0.5,
    "aux_bits_weight": 1.0,
    "aux_utility_weight": 0.05,
}
CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Nuuk", "Baku")
SKIES = ("rain", "clear", "snow", "fog")


def traces(registry: Any, split: str, seed: int, block: int) -> Any:
    return registry.build(
        "dataset.mosaic_event_traces",
        {
            "block_size": block,
            "n_pairs": 2,
            "distractor_events": 2,
            "negotiation_pairs": 0,
            "value_digits": 2,
            "drop_local_on_query": False,
            "mem_buckets": 16,
            "mem_hashes": 1,
            "split": split,
            "seed": seed,
        },
    )


def trace_bytes(item: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = item[keys.INPUT_IDS.name]
    real = int((item[keys.TARGET_IDS.name] != keys.IGNORE_INDEX).sum()) + 1
    return ids[:real]


def weather(rng: random.Random, index: int) -> EventEnvelope:
    payload = {"city": rng.choice(CITIES), "sky": rng.choice(SKIES), "temp_c": rng.randrange(-20, 40)}
    return EventEnvelope("Weather", payload, "station", id=f"w{index}", ts=float(1000 + index))


def event_ids(event: EventEnvelope) -> torch.Tensor:
    return torch.tensor(list(event.to_bytes()) + [EVENT_DELIMITER], dtype=torch.int64)


def train_base(registry: Any, steps: int, block: int) -> tuple[Any, dict[str, float]]:
    torch.manual_seed(0)
    model = registry.build("model.mosaic_lm", BASE_MODEL)
    objective = registry.build("objective.mosaic_event_prediction", BASE_OBJECTIVE)
    dataset = traces(registry, "train", 0, block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.006, weight_decay=0.0)
    started = time.perf_counter()
    loss = torch.zeros(())
    model.train()
    for step in range(steps):
        dataset.set_teacher_forcing(max(0.0, 1.0 - step / (0.7 * steps)))
        items = [dataset[step * 4 + i] for i in range(4)]
        batch = {name: torch.stack([item[name] for item in items]) for name in items[0]}
        loss, _ = objective(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    return model, {
        "steps": float(steps),
        "final_loss": float(loss.detach()),
        "train_seconds": time.perf_counter() - started,
    }


#: ``online.interference``: adapter target sets, each stepped on Weather events alone (no guard) from
#: the same base, to see which projections carry the damage to the training distribution
INTERFERENCE = {
    "head": ("head",),
    "mixers": ("blocks.*.mixer.up", "blocks.*.mixer.down"),
    "memory_routers_keys": ("blocks.*.memory.query", "blocks.*.memory.write_key", "blocks.*.memory.*_router"),
    # layers no memory router or opcode head reads from: the last block's state bank, memory
    # values and read-out, and the head
    "downstream_of_routing": (
        "head",
        "blocks.1.bank.inp",
        "blocks.1.bank.out",
        "blocks.1.memory.write_value",
        "blocks.1.memory.out",
    ),
}


def interference(
    model: Any,
    config: OnlineConfig,
    rehearsal: list[torch.Tensor],
    probe: list[torch.Tensor],
    heldout: list[torch.Tensor],
    steps: int,
) -> dict[str, Any]:
    """Pattern-loss drop and held-out rise after ``steps`` unguarded updates on fresh Weather events
    alone, per target set of :data:`INTERFERENCE` without rehearsal, and for ``config``'s targets
    with and without it."""
    device = next(model.parameters()).device
    rng = random.Random(1)
    pool = [event_ids(weather(rng, 20_000 + i)) for i in range(64)]
    pattern_before = mean_loss(model, probe, device)
    heldout_before = mean_loss(model, heldout, device)
    variants = {f"{name}.no_rehearsal": (targets, 0.0) for name, targets in INTERFERENCE.items()}
    variants["default_targets.no_rehearsal"] = (config.targets, 0.0)
    variants["default_targets.rehearsal"] = (config.targets, config.anchor_weight)
    results: dict[str, Any] = {}
    for name, (targets, anchor_weight) in variants.items():
        net = copy.deepcopy(model)
        learner = OnlineLearner(net, attrs.evolve(config, targets=targets, anchor_weight=anchor_weight))
        learner.rehearse_with(rehearsal)
        learner.buffer.extend(pool[: config.buffer_size])
        learner.scored.extend(ids.shape[0] for ids in pool[: config.buffer_size])
        for _ in range(steps):
            learner.update()
        results[name] = {
            "pattern_loss_drop": (pattern_before - mean_loss(net, probe, device)) / pattern_before,
            "heldout_loss_rise": (mean_loss(net, heldout, device) - heldout_before) / heldout_before,
        }
    return {"steps": steps, "variants": results}


def online_part(quick: bool) -> dict[str, Any]:
    from mosaic.core.plugins.host import get_registry

    registry = get_registry()
    block = 1920
    steps = 120 if quick else 300
    cache = BASE_CACHE[0] if BASE_CACHE else None
    if cache is not None and cache.is_file():  # the same recipe's model, trained earlier
        model = registry.build("model.mosaic_lm", BASE_MODEL)
        model.load_state_dict(torch.load(cache, weights_only=True))
        model.eval()
        info = {"steps": float(steps), "loaded_from": str(cache)}
    else:
        model, info = train_base(registry, steps, block)
        if cache is not None:
            torch.save(model.state_dict(), cache)
    # rehearsal: traces the base was trained on, replayed in every update (OnlineConfig.anchor_weight)
    training = traces(registry, "train", 0, block)
    rehearsal = [trace_bytes(training[i]) for i in range(8)]
    evaluation = traces(registry, "eval", 1, block)
    heldout = [trace_bytes(evaluation[i]) for i in range(8)]  # reported, never streamed or guarded with
    # the guard's own held-out traces, disjoint from the reported ones (16 in the full run: the fewer
    # they are, the likelier an update that spares them but hurts the distribution passes)
    guard = [trace_bytes(evaluation[100 + i]) for i in range(4 if quick else 16)]
    rng = random.Random(0)
    probe = [event_ids(weather(rng, 10_000 + i)) for i in range(12)]  # fresh Weather events, never streamed
    device = next(model.parameters()).device
    config = OnlineConfig()  # the runtime's defaults, as `mosaic events --online-every 384` runs them
    diagnosis = interference(model, config, rehearsal, probe, heldout, 10 if quick else 30)
    learner = OnlineLearner(model, config)
    pattern_before = mean_loss(model, probe, device)
    heldout_before = mean_loss(model, heldout, device)
    learner.guard_with(guard)
    learner.rehearse_with(rehearsal)
    session = EventSession(
        model, config=GenerationConfig(commitment_source="event"), on_tokens=learner.observe
    )
    stream = traces(registry, "eval", 7, block)
    started = time.perf_counter()
    traces_fed = 0
    weather_fed = 0
    for index in range(12 if quick else 30):
        data = bytes(trace_bytes(stream[index]).tolist())
        for line in data.split(bytes([EVENT_DELIMITER])):
            if line.strip():
                session.observe(decode_event_bytes(line))
        traces_fed += 1
        for _ in range(4):
            session.observe(weather(rng, weather_fed))
            weather_fed += 1
    pattern_after = mean_loss(model, probe, device)
    heldout_after = mean_loss(model, heldout, device)
    drop = (pattern_before - pattern_after) / pattern_before
    rise = (heldout_after - heldout_before) / heldout_before
    return {
        "pattern_loss_drop": drop,
        "heldout_loss_rise": rise,
        "pattern_loss": {"before": pattern_before, "after": pattern_after},
        "heldout_loss": {"before": heldout_before, "after": heldout_after},
        "updates": learner.updates,
        "rollbacks": learner.rollbacks,
        "traces_fed": traces_fed,
        "weather_events_fed": weather_fed,
        "tokens_fed": session.tokens_seen,
        "live_seconds": time.perf_counter() - started,
        "base": info,
        "adapters": {
            "targets": list(config.targets),
            "rank": config.rank,
            "update_every": config.update_every,
            "anchor_weight": config.anchor_weight,
            "rehearse": config.rehearse,
            "rehearsal_traces": len(rehearsal),
        },
        "interference": diagnosis,
        "goal": {"pattern_loss_drop": ">= 0.3", "heldout_loss_rise": "<= 0.05"},
        "met": drop >= 0.3 and rise <= 0.05,
    }


# --- tools (provided by benchmarks/bench_tools.py) ------------------------------------------------


#: ``--tools-from-run``: a finished ``mosaic_tools`` run the tools part plays instead of training one.
TOOLS_RUN: list[Path] = []
#: ``--base-cache``: the online part's base model is loaded from this file when it exists (trained
#: and saved there otherwise): the same recipe and seed, for re-runs of the online part alone.
BASE_CACHE: list[Path] = []


def tools_part(quick: bool) -> dict[str, Any] | None:
    path = Path(__file__).with_name("bench_tools.py")
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("bench_tools", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, Any] = module.tool_building_benchmark(
        quick, run_dir=TOOLS_RUN[0] if TOOLS_RUN else None
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark: idle (consolidation, online learning, tools)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--part", choices=PARTS, action="append", help="run only this part (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "idle.json")
    parser.add_argument("--tools-from-run", type=Path, help="a finished mosaic_tools run for the tools part")
    parser.add_argument(
        "--base-cache", type=Path, help="online part: load (or train and save) its base model here"
    )
    args = parser.parse_args()
    if args.base_cache is not None:
        BASE_CACHE.append(args.base_cache)
    if args.tools_from_run is not None:
        TOOLS_RUN.append(args.tools_from_run)
    torch.set_num_threads(int(os.environ.get("MOSAIC_BENCH_THREADS", "1")))
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.update(
        {
            "benchmark": "idle",
            "machine": {
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "note": MACHINE_NOTE,
            },
        }
    )
    runners = {"consolidation": consolidation_part, "online": online_part, "tools": tools_part}
    for part in args.part or PARTS:
        started, load_before = time.perf_counter(), os.getloadavg()[0]
        value = runners[part](args.quick)
        if value is None:
            continue
        results[part] = {
            **value,
            "quick": args.quick,
            "wall_seconds": time.perf_counter() - started,
            "load_average": [load_before, os.getloadavg()[0]],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(json.dumps({part: results[part]}, indent=2, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
