"""Idle-time consolidation, always on a copy of the live state.

The original replayed into the live session and wiped its memory. Here :func:`consolidate` takes
``state.copy()`` and never writes the live state: on the copy it

1. reads the memory back — the model's ``memory_cells(state)`` gives every layer's cells (stored
   keys and values, occupancy, age) and a per-cell ``utility``;
2. replays samples drawn from the memory contents — up to ``replay_samples`` occupied cells per pass,
   drawn with probability proportional to their utility, are turned back into next-byte predictions
   by the model's ``replay_memory(state, cells, select)``;
3. rehearses without gradients — the bytes the replayed cells predict, oldest cell first, form one
   rehearsal sequence that is run forward from the copy before and after pruning, and its next-byte
   losses compared;
4. prunes low-utility entries — occupied cells whose utility is at most ``prune_below`` are cleared in
   the copy through the model's ``forget_memory_cells(state, cells, select)``;

and reports what changed (cells replayed and pruned, occupancy, strength and mean utility of the
occupied cells before/after, rehearsal losses) as a :class:`ConsolidationReport`. The consolidated
copy is returned alongside for inspection. The model is used by duck typing (this package never
imports mosaic-layers); a model without the three memory methods is refused with a
:class:`RuntimeStateError`.
"""

from __future__ import annotations

import random
import time
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from mosaic.core.contract.protocols import MemoryReadBack, missing_members, protocol_members
from mosaic.core.errors import RuntimeStateError
from mosaic.runtime.agent.config import ConsolidationConfig
from mosaic.runtime.agent.metrics import OCCUPIED_AT, memory_occupancy, memory_strength

CONSOLIDATION_EVENT_TYPE = "Consolidation"
MEMORY_API = protocol_members(MemoryReadBack)


@attrs.frozen
class ConsolidationReport:
    cells: int
    pruned_cells: int
    occupancy_before: float
    occupancy_after: float
    strength_before: float
    strength_after: float
    utility_before: float  # mean utility of the cells occupied before pruning
    utility_after: float  # mean utility of the cells still occupied after pruning (0 when none are)
    replayed: int  # memory cells replayed
    replayed_bytes: list[int]  # the byte each replayed cell predicts most, in rehearsal order
    rehearsal_loss_before: float | None  # next-byte loss of the replayed sequence from the unpruned copy
    rehearsal_loss_after: float | None  # the same from the pruned copy
    seconds: float

    def to_payload(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_memory_api(model: Any) -> None:
    if not isinstance(model, MemoryReadBack):
        missing = missing_members(model, MemoryReadBack)
        raise RuntimeStateError(
            f"{type(model).__name__} cannot be consolidated: it lacks {', '.join(missing)} (consolidation reads "
            "memory back with memory_cells(state), replays cells with replay_memory(state, cells, select) and "
            "prunes with forget_memory_cells(state, cells, select); see docs/runtime.md)"
        )


def mean_utility(model: Any, state: Any) -> float:
    """Mean utility of the occupied cells of ``state`` (0.0 when none is occupied)."""
    total = count = 0.0
    for cells in model.memory_cells(state):
        used = cells.occupancy >= OCCUPIED_AT
        total += float(cells.utility[used].sum())
        count += int(used.sum())
    return total / count if count else 0.0


def replay_from_memory(model: Any, state: Any, samples: int, rng: random.Random) -> list[int]:
    """Draw up to ``samples`` occupied cells (all layers; probability proportional to utility, without
    replacement) and replay them; the byte each predicts most, oldest cell first."""
    candidates = []  # (layer cells, flat index, utility, age)
    for cells in model.memory_cells(state):
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


def rehearsal_loss(model: Any, state: Any, sequence: list[int]) -> float | None:
    """Next-byte cross-entropy of ``sequence`` fed from a copy of ``state`` (``state`` is not modified)."""
    if len(sequence) < 2:
        return None
    device = next(model.parameters()).device
    ids = torch.tensor(sequence, dtype=torch.int64, device=device)
    with torch.no_grad():
        out = model.prefill(ids[None, :-1], state.copy(), chunk_tokens=ids.shape[0] - 1)
        return float(F.cross_entropy(out.logits[0].float(), ids[1:]))


def prune_cells(model: Any, state: Any, below: float) -> tuple[int, int]:
    """Clear (in place) every occupied cell of ``state`` with utility ``<= below``; (pruned, cells)."""
    pruned = total = 0
    for cells in model.memory_cells(state):
        weak = (cells.occupancy > 0) & (cells.utility <= below)
        pruned += model.forget_memory_cells(state, cells, weak)
        total += cells.occupancy.numel()
    return pruned, total


def consolidate(model: Any, live_state: Any, config: ConsolidationConfig,
                rng: random.Random) -> tuple[Any, ConsolidationReport]:
    """One consolidation pass on a copy of ``live_state``; ``live_state`` is only read."""
    check_memory_api(model)
    started = time.perf_counter()
    working = live_state.copy()
    occupancy_before, strength_before = memory_occupancy(model, working), memory_strength(model, working)
    utility_before = mean_utility(model, working)
    replayed = replay_from_memory(model, working, config.replay_samples, rng)
    loss_before = rehearsal_loss(model, working, replayed)
    pruned, cells = prune_cells(model, working, config.prune_below)
    loss_after = rehearsal_loss(model, working, replayed)
    report = ConsolidationReport(
        cells=cells, pruned_cells=pruned, occupancy_before=occupancy_before,
        occupancy_after=memory_occupancy(model, working), strength_before=strength_before,
        strength_after=memory_strength(model, working), utility_before=utility_before,
        utility_after=mean_utility(model, working), replayed=len(replayed), replayed_bytes=replayed,
        rehearsal_loss_before=loss_before, rehearsal_loss_after=loss_after,
        seconds=time.perf_counter() - started,
    )
    return working, report
