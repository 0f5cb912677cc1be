"""Idle-time consolidation, always on a copy of the live state.

The original replayed into the live session and wiped its memory. Here :func:`consolidate` takes
``state.copy()`` and never writes the live state: on the copy it

1. samples memory contents — every real cell's occupancy (strength), all layers and hashes;
2. prunes low-utility entries — cells whose strength is above 0 and at most ``prune_below`` are
   cleared in the copy;
3. rehearses without gradients — up to ``replay_samples`` recent event patterns of the session are
   run forward from the unpruned copy and from the pruned copy, and their next-byte losses compared,

and reports what changed (cells pruned, occupancy and strength before/after, rehearsal losses) as a
:class:`ConsolidationReport`. The consolidated copy is returned alongside for inspection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from mosaic.runtime.agent.config import ConsolidationConfig
from mosaic.runtime.agent.metrics import memory_occupancy, memory_strength, memory_tables, occupancy

CONSOLIDATION_EVENT_TYPE = "Consolidation"


@attrs.frozen
class ConsolidationReport:
    cells: int
    pruned_cells: int
    occupancy_before: float
    occupancy_after: float
    strength_before: float
    strength_after: float
    replayed: int
    rehearsal_loss_before: float | None  # mean next-byte loss of the replayed patterns, unpruned copy
    rehearsal_loss_after: float | None  # the same from the pruned copy
    seconds: float

    def to_payload(self) -> dict[str, Any]:
        return attrs.asdict(self)


def prune_cells(state: Any, below: float) -> tuple[int, int]:
    """Clear (in place) every memory cell of ``state`` with ``0 < strength <= below``; (pruned, cells)."""
    pruned = cells = 0
    for table in memory_tables(state):
        strength = occupancy(table)  # (B, H, cells)
        weak = (strength > 0) & (strength <= below)
        table[:, :, :-1][weak] = 0.0
        pruned += int(weak.sum())
        cells += strength.numel()
    return pruned, cells


def rehearsal_loss(model: torch.nn.Module, state: Any, patterns: Sequence[torch.Tensor]) -> float | None:
    """Mean next-byte cross-entropy of ``patterns`` (each ``(L,)``) fed from ``state`` (not modified)."""
    if not patterns:
        return None
    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for pattern in patterns:
            ids = pattern.to(device)
            out = model.prefill(ids[None, :-1], state.copy(), chunk_tokens=max(1, ids.shape[0] - 1))
            losses.append(float(F.cross_entropy(out.logits[0].float(), ids[1:])))
    return sum(losses) / len(losses)


def consolidate(model: torch.nn.Module, live_state: Any, patterns: Sequence[torch.Tensor],
                config: ConsolidationConfig, rng: random.Random) -> tuple[Any, ConsolidationReport]:
    """One consolidation pass on a copy of ``live_state``; ``live_state`` is only read."""
    started = time.perf_counter()
    working = live_state.copy()
    occupancy_before, strength_before = memory_occupancy(working), memory_strength(working)
    usable = [pattern for pattern in patterns if pattern.shape[0] >= 2]
    replay = rng.sample(usable, min(config.replay_samples, len(usable)))
    loss_before = rehearsal_loss(model, working, replay)
    pruned, cells = prune_cells(working, config.prune_below)
    loss_after = rehearsal_loss(model, working, replay)
    report = ConsolidationReport(
        cells=cells, pruned_cells=pruned, occupancy_before=occupancy_before,
        occupancy_after=memory_occupancy(working), strength_before=strength_before,
        strength_after=memory_strength(working), replayed=len(replay), rehearsal_loss_before=loss_before,
        rehearsal_loss_after=loss_after, seconds=time.perf_counter() - started,
    )
    return working, report
