"""Important-fact recall under memory pressure: the consolidation A/B (tests and ``bench_idle.py``).

A small ``model.mosaic_lm`` (built through the registry: this package never imports mosaic-layers)
with a deliberately small hashed memory (``buckets x assoc`` cells, one hash, ring slots, no
registers, so memory is the only store that can hold a fact) is trained here on a tiny protocol:

    fact      SET k IS v    (an ordinary fact)     SET k IMP v   (an important fact)
    query     GET k Q IS v

Teacher labels: on the value token ``v`` a write (gate 1, bucket ``k mod buckets``, opcode WRITE_MEM)
whose utility target is 1 for an important fact and 0 for an ordinary one (the model's
``write_utility`` head learns to tell them apart from the ``IMP`` marker just before ``v``); on the
``IS`` of a query a read of bucket ``k mod buckets`` (READ_MEM). Training samples hold at most
``assoc - 1`` facts per bucket, so nothing is overwritten in training.

The live stream (:func:`fact_stream`) is a list of ``Fact`` events ``{"key": k, "value": v}`` whose
envelope ``priority`` (>= 1) marks the important ones; :class:`FactSession` feeds each event's tokens
(``IMP`` for priority >= 1) into one streaming state, with an idle period (optionally a consolidation
through :func:`~mosaic.runtime.agent.consolidation.consolidate_session`, the same call the autonomous
runtime makes) every ``idle_every`` facts. The stream holds more facts than the memory has cells, so
the ring overwrites old facts; afterwards each important fact is queried from a copy of the state.
"""

from __future__ import annotations

import random
import time
from typing import Any

import attrs
import torch

from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS
from mosaic.core.errors import ConfigError, ConfigProblem
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import ConsolidationConfig
from mosaic.runtime.agent.consolidation import consolidate_session

PAD, SET, IS, GET, Q, IMP = 0, 1, 2, 3, 4, 5
FIRST_KEY = 8
FACT_EVENT_TYPE = "Fact"
WRITE_MEM, READ_MEM, NOP = V0_OPCODE_IDS["WRITE_MEM"], V0_OPCODE_IDS["READ_MEM"], V0_OPCODE_IDS["NOP"]


@attrs.frozen
class FactRecallConfig:
    vocab_size: int = 64
    buckets: int = 4
    assoc: int = 4
    d_model: int = 64
    n_layers: int = 1
    facts_per_sample: int = 8
    important_fraction: float = 0.5
    block_size: int = 80
    steps: int = 400
    batch_size: int = 16
    lr: float = 0.006
    seed: int = 0

    @property
    def keys(self) -> range:
        return range(FIRST_KEY, self.vocab_size)


def model_config(config: FactRecallConfig) -> dict[str, Any]:
    return {
        "vocab_size": config.vocab_size,
        "n_layers": config.n_layers,
        "block": {
            "d_model": config.d_model,
            "state_k": 4,
            "state_dim": 8,
            "mem_buckets": config.buckets,
            "mem_hashes": 1,
            "mem_assoc": config.assoc,
            "mem_key_dim": 16,
            "mem_dim": 32,
            "reg_slots": 0,
            "mem_route_by_key": False,
            "opcodes_enabled": True,
            "opcodes_control_enabled": True,
            "commitment_head_enabled": False,
            "chunk_size": 16,
        },
    }


OBJECTIVE = {
    "lm_weight": 1.0,
    "aux_opcode_weight": 0.1,
    "aux_gate_weight": 0.1,
    "aux_bits_weight": 1.0,
    "aux_utility_weight": 0.5,
    "aux_state_decay_weight": 0.01,
}


def training_item(
    config: FactRecallConfig, rng: random.Random, teacher_forcing: float
) -> dict[str, torch.Tensor]:
    """One sample: facts (at most ``assoc - 1`` per bucket), then a query of each fact, shuffled."""
    per_bucket: dict[int, int] = {}
    facts: list[tuple[int, int, bool]] = []
    for key in rng.sample(list(config.keys), len(config.keys)):
        bucket = key % config.buckets
        if per_bucket.get(bucket, 0) < config.assoc - 1:
            per_bucket[bucket] = per_bucket.get(bucket, 0) + 1
            facts.append(
                (key, rng.randrange(FIRST_KEY, config.vocab_size), rng.random() < config.important_fraction)
            )
        if len(facts) == config.facts_per_sample:
            break
    tokens: list[int] = []
    writes: list[tuple[int, int, float]] = []  # (position, bucket, utility)
    reads: list[tuple[int, int]] = []
    for key, value, important in facts:
        tokens += [SET, key, IMP if important else IS]
        writes.append((len(tokens), key % config.buckets, 1.0 if important else 0.0))
        tokens.append(value)
    queries = facts[:]
    rng.shuffle(queries)
    for key, value, _ in queries:
        tokens += [GET, key, Q, IS]
        reads.append((len(tokens) - 1, key % config.buckets))
        tokens.append(value)
    length = config.block_size
    if len(tokens) > length + 1:
        raise ConfigError(
            [
                ConfigProblem(
                    "facts_per_sample",
                    f"{len(facts)} facts need {len(tokens)} tokens, more than block_size + 1 = {length + 1}",
                )
            ]
        )
    seq = torch.full((length + 1,), PAD, dtype=torch.int64)
    seq[: len(tokens)] = torch.tensor(tokens)
    real = torch.arange(length) < len(tokens) - 1
    targets = seq[1:].clone()
    targets[~real] = keys.IGNORE_INDEX
    gate, utility = torch.zeros(length), torch.zeros(length)
    write_bucket = torch.full((length, 1), keys.IGNORE_INDEX, dtype=torch.int64)
    read_bucket = torch.full((length, 1), keys.IGNORE_INDEX, dtype=torch.int64)
    opcode = torch.where(real, NOP, keys.IGNORE_INDEX)
    utility_mask = torch.zeros(length, dtype=torch.bool)
    for position, bucket, worth in writes:
        gate[position], utility[position], utility_mask[position] = 1.0, worth, True
        write_bucket[position, 0], opcode[position] = bucket, WRITE_MEM
    for position, bucket in reads:
        read_bucket[position, 0], opcode[position] = bucket, READ_MEM
    return {
        keys.INPUT_IDS.name: seq[:-1],
        keys.TARGET_IDS.name: targets,
        keys.TEACHER_WRITE_GATE.name: gate,
        keys.TEACHER_WRITE_GATE.name + keys.MASK_SUFFIX: real.clone(),
        keys.TEACHER_WRITE_UTILITY.name: utility,
        keys.TEACHER_WRITE_UTILITY.name + keys.MASK_SUFFIX: utility_mask,
        keys.TEACHER_WRITE_BUCKET.name: write_bucket,
        keys.TEACHER_READ_BUCKET.name: read_bucket,
        keys.TEACHER_OPCODE.name: opcode,
        keys.TEACHER_FORCING.name: torch.tensor(float(teacher_forcing)),
    }


def build(config: FactRecallConfig, registry: Any = None) -> tuple[Any, Any]:
    """(model, objective) from the registry (the plugin registry by default)."""
    if registry is None:
        from mosaic.core.plugins.host import get_registry

        registry = get_registry()
    torch.manual_seed(config.seed)
    return (
        registry.build("model.mosaic_lm", model_config(config)),
        registry.build("objective.mosaic_event_prediction", OBJECTIVE),
    )


def train(config: FactRecallConfig, registry: Any = None) -> tuple[Any, dict[str, float]]:
    """Train the fact model (teacher forcing decays from 1 to 0 over the first 70 % of the steps)."""
    model, objective = build(config, registry)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    rng = random.Random(config.seed)
    started = time.perf_counter()
    loss = torch.zeros(())
    model.train()
    for step in range(config.steps):
        forcing = max(0.0, 1.0 - step / (0.7 * config.steps))
        items = [training_item(config, rng, forcing) for _ in range(config.batch_size)]
        batch = {name: torch.stack([item[name] for item in items]) for name in items[0]}
        loss, _ = objective(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    return model, {
        "steps": float(config.steps),
        "final_loss": float(loss.detach()),
        "train_seconds": time.perf_counter() - started,
    }


def fact_stream(config: FactRecallConfig, facts: int, important: int, seed: int) -> list[EventEnvelope]:
    """``facts`` Fact events with distinct keys; ``important`` of them (spread evenly over the buckets,
    at random places in the stream) carry ``priority`` 1, the rest 0."""
    rng = random.Random(seed)
    chosen = rng.sample(list(config.keys), facts)
    by_bucket: dict[int, list[int]] = {}
    for key in chosen:
        by_bucket.setdefault(key % config.buckets, []).append(key)
    marked: set[int] = set()
    while len(marked) < important:
        before = len(marked)
        for bucket in sorted(by_bucket):
            left = [key for key in by_bucket[bucket] if key not in marked]
            if left and len(marked) < important:
                marked.add(rng.choice(left))
        if len(marked) == before:
            break
    return [
        EventEnvelope(
            FACT_EVENT_TYPE,
            {"key": key, "value": rng.randrange(FIRST_KEY, config.vocab_size)},
            "user",
            priority=1 if key in marked else 0,
            id=f"fact{i}",
            ts=float(i),
        )
        for i, key in enumerate(chosen)
    ]


class FactSession:
    """A live session over the fact model: one streaming state, the consolidation record."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.state = model.init_state(1)
        self.consolidations: list[dict[str, Any]] = []

    def observe(self, event: EventEnvelope) -> None:
        payload = event.payload
        marker = IMP if event.priority >= 1 else IS
        ids = torch.tensor([[SET, payload["key"], marker, payload["value"]]])
        with torch.no_grad():
            self.state = self.model.prefill(ids, self.state).state

    def recall(self, key: int) -> int:
        with torch.no_grad():
            out = self.model.prefill(torch.tensor([[GET, key, Q, IS]]), self.state.copy())
        return int(out.logits[0, -1].argmax())


def run_stream(
    model: Any, stream: list[EventEnvelope], *, consolidation: ConsolidationConfig | None, idle_every: int
) -> dict[str, Any]:
    """Feed ``stream`` with an idle period every ``idle_every`` facts (consolidating when
    ``consolidation`` is given); recall of the important and the ordinary facts afterwards."""
    session = FactSession(model)
    rng = random.Random(0 if consolidation is None else consolidation.seed)
    for index, event in enumerate(stream, start=1):
        session.observe(event)
        if consolidation is not None and index % idle_every == 0:
            consolidate_session(session, consolidation, rng)
    important = [event for event in stream if event.priority >= 1]
    ordinary = [event for event in stream if event.priority < 1]

    def rate(events: list[EventEnvelope]) -> float:
        hits = sum(session.recall(event.payload["key"]) == event.payload["value"] for event in events)
        return hits / len(events) if events else 0.0

    return {
        "important_recall": rate(important),
        "ordinary_recall": rate(ordinary),
        "consolidations": len(session.consolidations),
        "pruned": sum(report["pruned_cells"] for report in session.consolidations),
        "refreshed": sum(report["refreshed_cells"] for report in session.consolidations),
    }


def consolidation_ab(
    model: Any,
    config: FactRecallConfig,
    *,
    facts: int,
    important: int,
    idle_every: int,
    seeds: list[int],
    consolidation: ConsolidationConfig | None = None,
) -> dict[str, Any]:
    """The A/B over ``seeds`` streams: the same stream with and without consolidation."""
    consolidation = consolidation or ConsolidationConfig(prune_below=0.5, refresh_above=0.5, replay_samples=0)
    with_, without = [], []
    for seed in seeds:
        stream = fact_stream(config, facts, important, seed)
        with_.append(run_stream(model, stream, consolidation=consolidation, idle_every=idle_every))
        without.append(run_stream(model, stream, consolidation=None, idle_every=idle_every))

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(float(row[key]) for row in rows) / len(rows)

    return {
        "with": mean(with_, "important_recall"),
        "without": mean(without, "important_recall"),
        "ordinary_with": mean(with_, "ordinary_recall"),
        "ordinary_without": mean(without, "ordinary_recall"),
        "pruned_per_stream": mean(with_, "pruned"),
        "refreshed_per_stream": mean(with_, "refreshed"),
        "streams": len(seeds),
        "facts": facts,
        "important": important,
        "idle_every": idle_every,
        "memory_cells": config.buckets * config.assoc,
    }
