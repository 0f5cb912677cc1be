"""Idle-time consolidation that acts on the live session.

:func:`consolidate` works on ``state.copy()`` and returns the consolidated copy; the caller swaps it
in (:func:`consolidate_session` does, and records the report on the session), so a consolidation
that fails leaves the live state exactly as it was. On the copy it

1. reads the memory back: the model's ``memory_cells(state)`` gives every layer's cells (stored
   keys and values, occupancy, age) and each cell's ``utility``, what the model's own
   ``write_utility`` head said when the cell was written (kept in the state at write time);
2. prunes: occupied cells whose utility is below ``prune_below`` are cleared through the model's
   ``forget_memory_cells(state, cells, select)``;
3. refreshes: occupied cells whose utility is at least ``refresh_above`` are re-written as their
   buckets' newest writes through ``refresh_memory_cells(state, cells, select)``, so the ring
   overwrites every other cell before them (the cleared ones first);
4. replays: up to ``replay_samples`` occupied cells, drawn in proportion to their utility, are turned
   back into next-token predictions by ``replay_memory(state, cells, select)`` (the memory's
   contribution through the final norm and head; the deeper blocks are skipped);
5. optionally (an online learner attached and ``online_step``) takes one adapter step on the
   replayed tokens, labelled IDLE: the model learns to stay silent while it consolidates.

The report (:class:`ConsolidationReport`) says what changed. The model is used by duck typing (this
package never imports mosaic-layers); a model without the memory read-back methods, or whose state
keeps no per-cell utility, is refused with a :class:`RuntimeStateError`.
"""

from __future__ import annotations

import random
import time
from typing import Any

import attrs
import torch

from mosaic.core.contract.protocols import MemoryReadBack, missing_members, protocol_members
from mosaic.core.errors import RuntimeStateError
from mosaic.runtime.agent.config import ConsolidationConfig
from mosaic.runtime.agent.metrics import OCCUPIED_AT, memory_occupancy

CONSOLIDATION_EVENT_TYPE = "Consolidation"
MEMORY_API = protocol_members(MemoryReadBack)


@attrs.frozen
class ConsolidationReport:
    cells: int  # memory cells of all layers
    occupied_before: int
    occupied_after: int
    pruned_cells: int  # occupied cells cleared (utility at most prune_below)
    refreshed_cells: int  # occupied cells re-written as the newest (utility at least refresh_above)
    occupancy_before: float  # fraction of cells in use
    occupancy_after: float
    utility_before: float  # mean utility of the cells occupied before
    utility_after: float  # mean utility of the cells occupied after (0 when none are)
    replayed: int  # memory cells replayed
    replayed_tokens: list[int]  # the token each replayed cell predicts most, oldest cell first
    online_loss: float | None  # the loss of the IDLE-labelled online step on the replayed tokens, if one was taken
    seconds: float

    def to_payload(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_memory_api(model: Any) -> None:
    if not isinstance(model, MemoryReadBack):
        missing = missing_members(model, MemoryReadBack)
        raise RuntimeStateError(
            f"{type(model).__name__} cannot be consolidated: it lacks {', '.join(missing)} (consolidation reads "
            "memory back with memory_cells(state), replays cells with replay_memory(state, cells, select), "
            "prunes with forget_memory_cells(state, cells, select) and refreshes with "
            "refresh_memory_cells(state, cells, select); see docs/runtime.md)"
        )


def layer_cells(model: Any, state: Any) -> list[Any]:
    """Every layer's cells; refused when a layer's state keeps no per-cell utility."""
    layers = model.memory_cells(state)
    for cells in layers:
        if cells.utility is None:
            raise RuntimeStateError(
                f"layer {getattr(cells, 'layer', '?')}'s memory keeps no per-cell utility in this state (recorded "
                "before states kept the write_utility head's verdict); consolidation needs it: start a fresh session"
            )
    return layers


def occupied_utility(model: Any, state: Any) -> tuple[int, float]:
    """(occupied cells, their mean utility; 0.0 when none)."""
    total, count = 0.0, 0
    for cells in layer_cells(model, state):
        used = cells.occupancy >= OCCUPIED_AT
        total += float(cells.utility[used].sum())
        count += int(used.sum())
    return count, (total / count if count else 0.0)


def replay_from_memory(model: Any, state: Any, samples: int, rng: random.Random) -> list[int]:
    """Draw up to ``samples`` occupied cells (all layers; probability proportional to utility, without
    replacement) and replay them; the token each predicts most, oldest cell first."""
    candidates = []  # (layer cells, flat index, utility, age)
    for cells in layer_cells(model, state):
        utility, age = cells.utility.flatten(), cells.age.flatten()
        for index in torch.nonzero(cells.occupancy.flatten() >= OCCUPIED_AT)[:, 0].tolist():
            candidates.append((cells, index, float(utility[index]), int(age[index])))
    chosen: list[tuple[Any, int, float, int]] = []
    while candidates and len(chosen) < samples:
        weights = [max(candidate[2], 1e-12) for candidate in candidates]
        chosen.append(candidates.pop(rng.choices(range(len(candidates)), weights=weights)[0]))
    chosen.sort(key=lambda candidate: -candidate[3])  # oldest first
    replayed = []
    for cells, index, _, _ in chosen:
        select = torch.zeros(cells.occupancy.numel(), dtype=torch.bool, device=cells.occupancy.device)
        select[index] = True
        logits = model.replay_memory(state, cells, select.view_as(cells.occupancy))  # (1, V)
        replayed.append(int(logits[0].argmax()))
    return replayed


def prune_and_refresh(model: Any, state: Any, config: ConsolidationConfig) -> tuple[int, int, int]:
    """In place: clear occupied cells with utility at most ``prune_below``, then re-write those with
    utility at least ``refresh_above`` as the newest; (pruned, refreshed, cells)."""
    pruned = refreshed = total = 0
    for cells in layer_cells(model, state):
        used = cells.occupancy >= OCCUPIED_AT
        total += cells.occupancy.numel()
        weak = used & (cells.utility <= config.prune_below)
        if bool(weak.any()):
            pruned += model.forget_memory_cells(state, cells, weak)
    if config.refresh_above is not None:
        for cells in layer_cells(model, state):  # read again: pruning changed the cells
            strong = (cells.occupancy >= OCCUPIED_AT) & (cells.utility >= config.refresh_above)
            if bool(strong.any()):
                refreshed += model.refresh_memory_cells(state, cells, strong)
    return pruned, refreshed, total


def consolidate(model: Any, live_state: Any, config: ConsolidationConfig, rng: random.Random,
                learner: Any = None) -> tuple[Any, ConsolidationReport]:
    """One consolidation pass; returns the consolidated copy of ``live_state`` (only read) and the
    report. ``learner``: an :class:`~mosaic.runtime.agent.online.OnlineLearner` for the online step."""
    check_memory_api(model)
    started = time.perf_counter()
    working = live_state.copy()
    occupancy_before = memory_occupancy(model, working)
    occupied_before, utility_before = occupied_utility(model, working)
    pruned, refreshed, cells = prune_and_refresh(model, working, config)
    replayed = replay_from_memory(model, working, config.replay_samples, rng)
    online_loss = None
    if learner is not None and config.online_step and len(replayed) >= 2:
        online_loss = learner.idle_step(torch.tensor(replayed, dtype=torch.int64))
    occupied_after, utility_after = occupied_utility(model, working)
    report = ConsolidationReport(
        cells=cells, occupied_before=occupied_before, occupied_after=occupied_after, pruned_cells=pruned,
        refreshed_cells=refreshed, occupancy_before=occupancy_before,
        occupancy_after=memory_occupancy(model, working), utility_before=utility_before, utility_after=utility_after,
        replayed=len(replayed), replayed_tokens=replayed, online_loss=online_loss,
        seconds=time.perf_counter() - started,
    )
    return working, report


def consolidate_session(session: Any, config: ConsolidationConfig, rng: random.Random,
                        learner: Any = None) -> ConsolidationReport:
    """Consolidate ``session.state`` and swap the result in (atomically: on any error the live state
    is left as it was); the report is appended to ``session.consolidations``."""
    consolidated, report = consolidate(session.model, session.state, config, rng, learner)
    session.state = consolidated
    session.consolidations.append(report.to_payload())
    return report
