"""Live model metrics for homeostasis, read from a model's outputs and its streaming state.

Memory metrics read a model's memory back through the contract's ``MemoryReadBack`` protocol
(``model.memory_cells(state)``, one cells record per layer with an ``occupancy`` tensor); the
runtime never reads a model's state layout itself. A model without that protocol is refused with a
:class:`RuntimeStateError` naming what it lacks, never silently reported as zeros. Output metrics
read the contract's aux keys (write gate and opcode logits), per layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.protocols import MemoryReadBack, missing_members
from mosaic.core.errors import RuntimeStateError

#: A cell whose occupancy is at least this counts as in use.
OCCUPIED_AT = 0.05


def cell_occupancy(model: Any, state: Any) -> list[torch.Tensor]:
    """Each layer's cell occupancy (any shape, 0 empty), read back through the model."""
    if not isinstance(model, MemoryReadBack):
        raise RuntimeStateError(
            f"{type(model).__name__} reports no memory: memory metrics read it back with "
            f"{', '.join(missing_members(model, MemoryReadBack))} (mosaic.core.contract.protocols.MemoryReadBack)"
        )
    layers = [cells.occupancy for cells in model.memory_cells(state)]
    if not layers:
        raise RuntimeStateError(f"{type(model).__name__}.memory_cells(state) returned no layers")
    return layers


def memory_occupancy(model: Any, state: Any) -> float:
    """Fraction of memory cells (all layers, hashes, samples) whose occupancy is >= OCCUPIED_AT."""
    used = total = 0
    for cells in cell_occupancy(model, state):
        used += int((cells >= OCCUPIED_AT).sum())
        total += cells.numel()
    return used / total


def memory_strength(model: Any, state: Any) -> float:
    """Mean occupancy of all memory cells (0 empty, 1 every cell fully written)."""
    return float(torch.cat([cells.float().flatten() for cells in cell_occupancy(model, state)]).mean())


def output_aux_metrics(aux: dict[str, torch.Tensor]) -> dict[str, float]:
    """Write rate and routing entropy from one output's aux tensors (absent keys: not reported)."""
    metrics: dict[str, float] = {}
    gate = aux.get(keys.WRITE_GATE_LOGITS.name)
    if gate is not None:
        metrics["memory_write_rate"] = float(torch.sigmoid(gate.float()).mean())
    opcodes = aux.get(keys.OPCODE_LOGITS.name)
    if opcodes is not None and opcodes.shape[-1] > 1:
        probs = torch.softmax(opcodes.float(), dim=-1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        metrics["routing_entropy"] = float(entropy.mean() / math.log(opcodes.shape[-1]))
    return metrics


def confidence(logits: torch.Tensor) -> float:
    """Max softmax probability of one next-byte distribution ``(V,)``."""
    return float(torch.softmax(logits.float(), dim=-1).max())
